/// A value that travels as its text: `description` out, `init(parsing:)` back in, so a body
/// reads the way an operator writes it and a bad value is refused with the parser's own error.
/// Addresses, prefixes, port ranges and port sets all travel this way; conforming is the whole
/// of their `Codable`, instead of the same `init(from:)`/`encode(to:)` pair on each.
public protocol CodableAsText: Codable, CustomStringConvertible {
    /// Strict parse of the text `description` writes.
    init(parsing text: String) throws
}

extension CodableAsText {
    public init(from decoder: any Decoder) throws {
        self = try Self(parsing: try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
