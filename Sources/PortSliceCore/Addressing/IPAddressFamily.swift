/// One IP address family (IPv4 or IPv6) seen as a fixed-width unsigned integer, so prefixes,
/// lookup tables and hashing are written once for both.
public protocol IPAddressFamily: Hashable, Comparable, Sendable, CustomStringConvertible, LosslessStringConvertible {
    associatedtype Bits: FixedWidthInteger & UnsignedInteger & Sendable
    /// "IPv4" or "IPv6", for messages.
    static var familyName: String { get }
    /// The address as a big-endian-ordered integer: the first octet is the most significant.
    var bits: Bits { get }
    init(bits: Bits)
    /// Strict parse of the whole text.
    init(parsing text: String) throws(AddressParseError)
    /// Strict parse of UTF-8 bytes; `text` is only evaluated for error messages.
    static func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> Result<Self, AddressParseError.Reason>
}

extension IPAddressFamily {
    public static func < (lhs: Self, rhs: Self) -> Bool { lhs.bits < rhs.bits }

    public init?(_ description: String) {
        guard let parsed = try? Self(parsing: description) else { return nil }
        self = parsed
    }

    public init(parsing text: String) throws(AddressParseError) {
        var copy = text
        let result = copy.withUTF8 { Self.parse($0) }
        switch result {
        case .success(let address): self = address
        case .failure(let reason):
            throw AddressParseError(what: "\(Self.familyName) address", text: text, reason: reason)
        }
    }
}
