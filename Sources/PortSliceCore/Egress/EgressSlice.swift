/// A shared IPv4 address and the ports of it that this host owns.
public struct EgressSlice: Hashable, Sendable, CustomStringConvertible {
    public let address: IPv4Address
    public let ports: PortSet

    public init(address: IPv4Address, ports: PortSet) {
        self.address = address
        self.ports = ports
    }

    /// Parses `A.B.C.D:LO-HI`.
    public init(parsing text: String) throws {
        guard let colon = text.lastIndex(of: ":") else {
            throw EndpointParseError(text: text, reason: "write a slice as ADDRESS:LOW-HIGH, such as 203.0.113.10:20000-20999")
        }
        address = try IPv4Address(parsing: String(text[..<colon]))
        ports = PortSet(try PortRange(parsing: String(text[text.index(after: colon)...])))
    }

    public var description: String { "\(address):\(ports)" }
}
