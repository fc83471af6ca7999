import PortSliceCore

/// An EDNS Client Subnet option (RFC 7871): the part of the client's address the upstream
/// resolver may use to pick a nearby answer, and the scope the answer holds for.
///
/// A query carries the client's address cut to the source prefix length, so no more of it
/// leaves the host than needed (RFC 7871 section 11.1 recommends /24 and /56); the answer
/// echoes it with the scope prefix length that decides how widely it may be cached.
public struct ClientSubnet: Hashable, Sendable, CustomStringConvertible {
    /// RFC 7871 section 11.1's privacy defaults.
    public static let defaultIPv4PrefixLength: UInt8 = 24
    public static let defaultIPv6PrefixLength: UInt8 = 56

    /// The address with every bit beyond `sourcePrefixLength` cleared.
    public let address: IPAddress
    public let sourcePrefixLength: UInt8
    /// 0 in a query; in an answer, the leading bits of the address the answer applies to.
    public let scopePrefixLength: UInt8

    /// The client's address cut to the default prefix of its family.
    public init(_ address: IPAddress) {
        switch address {
        case .v4: self.init(validated: address, source: Self.defaultIPv4PrefixLength, scope: 0)
        case .v6: self.init(validated: address, source: Self.defaultIPv6PrefixLength, scope: 0)
        }
    }

    /// The client's address cut to `sourcePrefixLength` bits.
    /// - Throws: `DNSEncodingError.prefixLengthTooLong` beyond 32 (IPv4) or 128 (IPv6).
    public init(_ address: IPAddress, sourcePrefixLength: UInt8) throws(DNSEncodingError) {
        let maximum = address.bitWidth
        guard sourcePrefixLength <= maximum else {
            throw .prefixLengthTooLong(sourcePrefixLength, maximum: maximum)
        }
        // Assigned here rather than through `init(validated:)`: a typed throw from a delegating
        // initialiser crashes code built by Swift 6.3.1 (seen in this module's tests).
        self.address = address.masked(to: sourcePrefixLength)
        self.sourcePrefixLength = sourcePrefixLength
        scopePrefixLength = 0
    }

    init(validated address: IPAddress, source: UInt8, scope: UInt8) {
        self.address = address.masked(to: source)
        sourcePrefixLength = source
        scopePrefixLength = scope
    }

    /// RFC 7871 section 6: FAMILY 1 is IPv4, 2 is IPv6 (IANA address family numbers).
    var family: UInt16 {
        switch address {
        case .v4: 1
        case .v6: 2
        }
    }

    /// ADDRESS is only as many bytes as the source prefix needs.
    var addressByteCount: Int { (Int(sourcePrefixLength) + 7) / 8 }

    public var description: String {
        "\(address)/\(sourcePrefixLength) scope /\(scopePrefixLength)"
    }
}

extension IPAddress {
    var bitWidth: UInt8 {
        switch self {
        case .v4: 32
        case .v6: 128
        }
    }

    /// The address left-aligned in 128 bits, so one mask works for both families.
    var leftAlignedBits: UInt128 {
        switch self {
        case .v4(let address): UInt128(address.bits) << 96
        case .v6(let address): address.bits
        }
    }

    func masked(to length: UInt8) -> IPAddress {
        let bits = leftAlignedBits & leftAlignedMask(length)
        switch self {
        case .v4: return .v4(IPv4Address(bits: UInt32(truncatingIfNeeded: bits >> 96)))
        case .v6: return .v6(IPv6Address(bits: bits))
        }
    }
}

/// The first `length` bits of 128 set.
func leftAlignedMask(_ length: UInt8) -> UInt128 {
    length == 0 ? 0 : ~UInt128(0) << (128 - UInt128(min(length, 128)))
}

/// Why a query could not be encoded.
public enum DNSEncodingError: Error, Hashable, Sendable, CustomStringConvertible {
    case prefixLengthTooLong(UInt8, maximum: UInt8)
    /// TCP frames carry a 16-bit length.
    case messageTooLongForTCP(Int)

    public var description: String {
        switch self {
        case .prefixLengthTooLong(let length, let maximum): "prefix length \(length) is longer than \(maximum)"
        case .messageTooLongForTCP(let length): "a \(length)-byte message does not fit a TCP frame (at most 65535)"
        }
    }
}
