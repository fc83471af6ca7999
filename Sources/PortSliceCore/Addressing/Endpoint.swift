/// An IPv4 address and port.
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    public let address: IPv4Address
    public let port: UInt16

    public init(_ address: IPv4Address, _ port: UInt16) {
        self.address = address
        self.port = port
    }

    /// Parses `A.B.C.D:PORT`.
    public init(parsing text: String) throws {
        guard let colon = text.lastIndex(of: ":") else {
            throw EndpointParseError(text: text, reason: "write it as ADDRESS:PORT, such as 198.51.100.7:443")
        }
        let address = try IPv4Address(parsing: String(text[..<colon]))
        guard let port = UInt16(text[text.index(after: colon)...]), port != 0 else {
            throw EndpointParseError(text: text, reason: "the port must be 1-65535")
        }
        self.init(address, port)
    }

    public var description: String { "\(address):\(port)" }
}

public struct EndpointParseError: Error, Hashable, Sendable, CustomStringConvertible {
    public let text: String
    public let reason: String
    public var description: String { "invalid endpoint '\(text)': \(reason)" }
}
