import PortSliceCore

/// Which destinations the proxy may open flows to. By default nothing internal: loopback,
/// private, link-local, shared address space, multicast, reserved and "this network", nor the
/// host's egress addresses, so the proxy cannot be used to reach inside the network
/// it runs in. An allow list opens prefixes (checked after the deny list); loopback can be
/// opened for a proxy that only listens on loopback (the local demo).
public struct DestinationPolicy: Sendable {
    public var allowLoopback: Bool
    public var allow: [IPv4Prefix]
    public var deny: [IPv4Prefix]

    public init(allowLoopback: Bool = false, allow: [IPv4Prefix] = [], deny: [IPv4Prefix] = []) {
        self.allowLoopback = allowLoopback
        self.allow = allow
        self.deny = deny
    }

    /// Ranges refused unless allowed, with the name used in refusals.
    static let internalRanges: [(name: String, prefix: IPv4Prefix)] = [
        ("loopback", "127.0.0.0/8"), ("private", "10.0.0.0/8"), ("private", "172.16.0.0/12"), ("private", "192.168.0.0/16"),
        ("link-local", "169.254.0.0/16"), ("shared address space", "100.64.0.0/10"), ("multicast", "224.0.0.0/4"),
        ("reserved", "240.0.0.0/4"), ("this network", "0.0.0.0/8"),
    ].map { ($0.0, IPv4Prefix($0.1)!) }

    /// Nil when `destination` may be reached; else why not, for logs and error replies.
    /// `egressAddresses` are the addresses the host sends from now (they change with its leases).
    public func refusal(for destination: IPv4Address, egressAddresses: some Collection<IPv4Address> = EmptyCollection()) -> String? {
        if let prefix = deny.first(where: { $0.contains(destination) }) { return "\(destination) is in the deny list (\(prefix))" }
        if allow.contains(where: { $0.contains(destination) }) { return nil }
        if egressAddresses.contains(destination) { return "\(destination) is one of the proxy's own egress addresses" }
        guard let range = Self.internalRanges.first(where: { $0.prefix.contains(destination) }) else { return nil }
        if range.name == "loopback" && allowLoopback { return nil }
        return "\(destination) is a \(range.name) address (\(range.prefix)); add it to the allow list to permit it"
    }
}
