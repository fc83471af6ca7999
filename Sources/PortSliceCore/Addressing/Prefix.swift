/// A network prefix `ADDRESS/LENGTH` of one address family. Host bits must be zero: a prefix
/// such as `192.0.2.1/24` is rejected rather than silently truncated.
public struct Prefix<Address: IPAddressFamily>: Hashable, Sendable, Comparable, CustomStringConvertible, LosslessStringConvertible {
    public let network: Address
    public let length: UInt8

    public static var maximumLength: Int { Address.Bits.bitWidth }

    /// - Throws: `AddressParseError` with `.hostBitsSet` when `network` has bits past `length`.
    public init(network: Address, length: Int) throws(AddressParseError) {
        precondition((0...Self.maximumLength).contains(length), "prefix length \(length) out of range")
        guard network.bits & ~Self.mask(length) == 0 else {
            let truncated = Prefix(uncheckedNetwork: Address(bits: network.bits & Self.mask(length)), length: length)
            throw AddressParseError(
                what: "\(Address.familyName) prefix", text: "\(network)/\(length)",
                reason: .hostBitsSet(network: truncated.description))
        }
        self.init(uncheckedNetwork: network, length: length)
    }

    init(uncheckedNetwork network: Address, length: Int) {
        self.network = network
        self.length = UInt8(length)
    }

    /// The prefix of `length` bits that contains `address`.
    public init(containing address: Address, length: Int) {
        precondition((0...Self.maximumLength).contains(length), "prefix length \(length) out of range")
        self.init(uncheckedNetwork: Address(bits: address.bits & Self.mask(length)), length: length)
    }

    public init(parsing text: String) throws(AddressParseError) {
        var copy = text
        let result = copy.withUTF8 { Self.parse($0) }
        switch result {
        case .success(let prefix): self = prefix
        case .failure(let reason):
            throw AddressParseError(what: "\(Address.familyName) prefix", text: text, reason: reason)
        }
    }

    public init?(_ description: String) {
        guard let parsed = try? Self(parsing: description) else { return nil }
        self = parsed
    }

    /// Strict parse of `ADDRESS/LENGTH` from UTF-8 bytes.
    public static func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> Result<Self, AddressParseError.Reason> {
        guard let slash = bytes.firstIndex(of: UInt8(ascii: "/")) else {
            if case .failure(let reason) = Address.parse(bytes) { return .failure(reason) }
            return .failure(.missingPrefixLength)
        }
        let address: Address
        switch Address.parse(UnsafeBufferPointer(rebasing: bytes[..<slash])) {
        case .success(let parsed): address = parsed
        case .failure(let reason): return .failure(reason)
        }
        let lengthBytes = UnsafeBufferPointer(rebasing: bytes[(slash + 1)...])
        guard let length = parseLength(lengthBytes) else {
            return .failure(.badPrefixLength(
                length: String(decoding: lengthBytes, as: UTF8.self), maximum: maximumLength))
        }
        guard address.bits & ~mask(length) == 0 else {
            let truncated = Prefix(containing: address, length: length)
            return .failure(.hostBitsSet(network: truncated.description))
        }
        return .success(Prefix(uncheckedNetwork: address, length: length))
    }

    private static func parseLength(_ bytes: UnsafeBufferPointer<UInt8>) -> Int? {
        guard !bytes.isEmpty, bytes.count <= 3, !(bytes.count > 1 && bytes[0] == UInt8(ascii: "0")) else { return nil }
        var value = 0
        for byte in bytes {
            guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return value <= maximumLength ? value : nil
    }

    /// The mask with the top `length` bits set.
    @inlinable
    public static func mask(_ length: Int) -> Address.Bits {
        length == 0 ? 0 : ~Address.Bits(0) << (Address.Bits.bitWidth - length)
    }

    @inlinable public var first: Address { network }
    @inlinable public var last: Address { Address(bits: network.bits | ~Self.mask(Int(length))) }

    @inlinable
    public func contains(_ address: Address) -> Bool {
        address.bits & Self.mask(Int(length)) == network.bits
    }

    /// Number of addresses, saturating at `Int.max` for very short IPv6 prefixes.
    public var addressCount: Int {
        let hostBits = Self.maximumLength - Int(length)
        return hostBits >= Int.bitWidth - 1 ? Int.max : 1 << hostBits
    }

    public static func < (lhs: Self, rhs: Self) -> Bool {
        (lhs.network, lhs.length) < (rhs.network, rhs.length)
    }

    public var description: String { "\(network)/\(length)" }
}

public typealias IPv4Prefix = Prefix<IPv4Address>
public typealias IPv6Prefix = Prefix<IPv6Address>
