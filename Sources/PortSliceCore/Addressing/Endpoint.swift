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

/// An address of either family and a port: where a proxied flow goes and where it left from.
public struct IPEndpoint: Hashable, Sendable, CustomStringConvertible {
    public let address: IPAddress
    public let port: UInt16

    public init(_ address: IPAddress, _ port: UInt16) {
        self.address = address
        self.port = port
    }

    public init(_ endpoint: Endpoint) {
        self.init(.v4(endpoint.address), endpoint.port)
    }

    /// The IPv4 endpoint, when it is one.
    public var ipv4: Endpoint? {
        if case .v4(let address) = address { Endpoint(address, port) } else { nil }
    }

    /// `A.B.C.D:PORT`, or `[IPV6]:PORT` (RFC 3986's form, which keeps the port apart).
    public var description: String {
        switch address {
        case .v4(let v4): "\(v4):\(port)"
        case .v6(let v6): "[\(v6)]:\(port)"
        }
    }
}
