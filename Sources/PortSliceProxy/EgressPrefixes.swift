import Crypto
import Foundation
import PortSliceCore
import Synchronization

/// The IPv6 prefixes flows may leave from, with their traits. IPv6 is not scarce, so a prefix
/// is not cut into port slices: each client leaves from an address of its own inside the
/// prefix its traits choose (`ClientAddresses`).
public final class EgressPrefixes: Sendable {
    /// The prefixes with their traits, and the prefixes alone: the destination check of every
    /// IPv6 dial reads the latter, which is then handed out without being built again.
    private let held: Mutex<(all: [(prefix: IPv6Prefix, traits: Traits)], networks: [IPv6Prefix])>

    public init(_ prefixes: [(prefix: IPv6Prefix, traits: Traits)] = []) {
        held = Mutex((prefixes, prefixes.map(\.prefix)))
    }

    public var all: [(prefix: IPv6Prefix, traits: Traits)] { held.withLock { $0.all } }
    var networks: [IPv6Prefix] { held.withLock { $0.networks } }
    public var isEmpty: Bool { held.withLock { $0.all.isEmpty } }

    /// Replaces the prefixes (as leases come and go); flows already open keep their address.
    public func replace(with prefixes: [(prefix: IPv6Prefix, traits: Traits)]) {
        held.withLock { $0 = (prefixes, prefixes.map(\.prefix)) }
    }

    /// The prefix whose traits are closest to the client's; among equally close ones the
    /// first in the order given, so a client keeps its prefix while the list stays.
    func chosen(traits: Traits) -> IPv6Prefix? {
        held.withLock { held in
            let prefixes = held.all
            var best: (prefix: IPv6Prefix, closeness: Closeness)?
            for candidate in prefixes {
                let closeness = Closeness(of: candidate.traits, to: traits)
                if best == nil || closeness > best!.closeness { best = (candidate.prefix, closeness) }
            }
            return best?.prefix
        }
    }
}

/// Which address of a prefix a client leaves from: the prefix's network with the rest of the
/// bits from HMAC-SHA256 of the client's address under a secret key. The same client keeps its
/// address across connections and restarts (the key is kept in a file), two clients share one
/// only by a 2^-64 chance in a /64, and without the key nobody can tell which address belongs
/// to which client.
public struct ClientAddresses: Sendable {
    private let key: SymmetricKey

    public init(key: [UInt8]) {
        precondition(key.count >= 16, "an address key has at least 128 bits")
        self.key = SymmetricKey(data: key)
    }

    /// The key in `path`, or a new random one written there (readable by its owner only) when
    /// the file does not exist yet.
    /// - Throws: `AddressKeyError` when the file cannot be read or written, or holds too little.
    public static func key(at path: String) throws(AddressKeyError) -> [UInt8] {
        if let data = FileManager.default.contents(atPath: path) {
            guard data.count >= 32 else { throw .tooShort(path: path, bytes: data.count) }
            return Array(data.prefix(32))
        }
        let key = SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty { try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        guard FileManager.default.createFile(atPath: path, contents: Data(key), attributes: [.posixPermissions: 0o600]) else {
            throw .cannotWrite(path: path)
        }
        return key
    }

    /// `client`'s address in `prefix`. Interface identifiers that are not to be used by a host
    /// (all zeros, the subnet-router anycast of RFC 4291; the top 128 of a /64, the reserved
    /// anycast identifiers of RFC 2526) are moved off by flipping bit 8.
    public func address(for client: IPAddress, in prefix: IPv6Prefix) -> IPv6Address {
        var message: [UInt8] = Array("portslice client address".utf8)
        let clientBits: UInt128 = switch client {
        case .v4(let v4): 0xffff_0000_0000 | UInt128(v4.bits)  // IPv4-mapped, so it cannot meet an IPv6 client's
        case .v6(let v6): v6.bits
        }
        for index in 0..<16 { message.append(UInt8(truncatingIfNeeded: clientBits >> (120 - 8 * index))) }
        for index in 0..<16 { message.append(UInt8(truncatingIfNeeded: prefix.network.bits >> (120 - 8 * index))) }
        message.append(UInt8(prefix.length))
        let digest = Array(HMAC<SHA256>.authenticationCode(for: message, using: key))
        let random = digest.prefix(16).reduce(UInt128(0)) { $0 << 8 | UInt128($1) }
        let hostBits = 128 - Int(prefix.length)
        guard hostBits > 0 else { return prefix.network }
        let hostMask: UInt128 = hostBits == 128 ? ~0 : (UInt128(1) << hostBits) - 1
        var identifier = random & hostMask
        if identifier == 0 || (hostBits == 64 && identifier >= hostMask - 127) { identifier ^= 0x100 }
        return IPv6Address(bits: prefix.network.bits | identifier)
    }
}

/// An address key file that cannot serve.
public enum AddressKeyError: Error, Hashable, Sendable, CustomStringConvertible {
    case tooShort(path: String, bytes: Int)
    case cannotWrite(path: String)

    public var description: String {
        switch self {
        case .tooShort(let path, let bytes):
            "the address key \(path) holds \(bytes) bytes, fewer than 32; remove it to have a new one made (clients then get new addresses)"
        case .cannotWrite(let path):
            "cannot write a new address key to \(path); check the directory's permissions, or give --address-key FILE"
        }
    }
}
