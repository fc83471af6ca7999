// IPv6 addresses and prefixes travel as their text (RFC 5952 form), as IPv4 addresses do, so
// a body reads the way an operator writes it.

extension IPv6Address: Codable {
    public init(from decoder: any Decoder) throws {
        self = try IPv6Address(parsing: try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

extension Prefix: Codable {
    public init(from decoder: any Decoder) throws {
        self = try Prefix(parsing: try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
