import PortSliceCore
import PortSliceSockets

/// Which destinations the proxy may open flows to, judged on the address that is dialled
/// (a name's resolved address, not the name). By default nothing that is not an ordinary
/// public unicast address: every range of the IANA special-purpose registries and multicast
/// (`SpecialPurposeRange`), the host's egress addresses (and every address of its IPv6 egress
/// prefixes, which are routed to it) and every address on the host's interfaces, so the proxy
/// cannot be used to reach the host or the network it runs in.
///
/// Order: the deny list refuses first; the allow list then opens what it names (a host or
/// egress address too, so a test or a lab can reach its own services); then the egress
/// addresses and prefixes, the special-purpose ranges (loopback is opened by `allowLoopback`, for a proxy
/// that only listens on loopback: the local demo) and the host's addresses are refused.
///
/// The destination port is judged before the address, by `ports` (`PortPolicy`: 25 refused
/// by default), so a refused port is refused before a name is looked up.
public struct DestinationPolicy: Sendable {
    public var allowLoopback: Bool
    public var allow: [IPPrefix]
    public var deny: [IPPrefix]
    /// The addresses on this host's interfaces, read again at most every second or so.
    public var hostAddresses: InterfaceAddressSnapshot
    public var ports: PortPolicy

    public init(allowLoopback: Bool = false, allow: [IPPrefix] = [], deny: [IPPrefix] = [],
                hostAddresses: InterfaceAddressSnapshot = InterfaceAddressSnapshot(), ports: PortPolicy = PortPolicy()) {
        self.allowLoopback = allowLoopback
        self.allow = allow
        self.deny = deny
        self.hostAddresses = hostAddresses
        self.ports = ports
    }

    /// For callers whose lists are IPv4 (`--allow` and `--deny` take IPv4 prefixes).
    public init(allowLoopback: Bool = false, allow: [IPv4Prefix], deny: [IPv4Prefix] = [],
                hostAddresses: InterfaceAddressSnapshot = InterfaceAddressSnapshot(), ports: PortPolicy = PortPolicy()) {
        self.init(allowLoopback: allowLoopback, allow: allow.map(IPPrefix.v4), deny: deny.map(IPPrefix.v4), hostAddresses: hostAddresses, ports: ports)
    }

    /// Nil when a flow to `destination`:`port` may be opened; else why not: the port first
    /// (`ports`), then the address (`refusal(for:egressAddresses:egressPrefixes:)`).
    public func refusal(for destination: IPAddress, port: UInt16, egressAddresses: some Collection<IPv4Address> = EmptyCollection(),
                        egressPrefixes: some Collection<IPv6Prefix> = EmptyCollection()) -> DestinationRefusal? {
        if let refusal = ports.refusal(for: port) { return .port(refusal) }
        return refusal(for: destination, egressAddresses: egressAddresses, egressPrefixes: egressPrefixes)
    }

    public func refusal(for destination: IPv4Address, port: UInt16, egressAddresses: some Collection<IPv4Address> = EmptyCollection()) -> DestinationRefusal? {
        refusal(for: .v4(destination), port: port, egressAddresses: egressAddresses)
    }

    /// Nil when `destination` may be reached on any port the port policy allows; else why not,
    /// for logs and error replies.
    /// `egressAddresses` are the addresses the host sends from now and `egressPrefixes` the IPv6
    /// prefixes (both change with its leases).
    ///
    /// An IPv4-mapped address (`::ffff:a.b.c.d`) is refused as such unless an IPv6 allow
    /// prefix opens it; the deny list also looks at the IPv4 address inside it (where a socket
    /// would send it), so no form of a denied address is opened by the allow list.
    public func refusal(for destination: IPAddress, egressAddresses: some Collection<IPv4Address> = EmptyCollection(),
                        egressPrefixes: some Collection<IPv6Prefix> = EmptyCollection()) -> DestinationRefusal? {
        let mapped: IPAddress? = if case .v6(let address) = destination, let inside = address.ipv4Mapped { .v4(inside) } else { nil }
        if let prefix = deny.first(where: { prefix in prefix.contains(destination) || mapped.map(prefix.contains) == true }) {
            return .denied(destination, by: prefix)
        }
        if allow.contains(where: { $0.contains(destination) }) { return nil }
        switch destination {
        case .v4(let address) where egressAddresses.contains(address): return .egressAddress(destination)
        case .v6(let address) where egressPrefixes.contains(where: { $0.contains(address) }): return .egressAddress(destination)
        default: break
        }
        if let range = SpecialPurposeRange.containing(destination) {
            return allowLoopback && range.isLoopback ? nil : .specialPurpose(destination, range)
        }
        if let interface = hostAddresses.interface(holding: destination) { return .hostAddress(destination, interface: interface) }
        return nil
    }

    public func refusal(for destination: IPv4Address, egressAddresses: some Collection<IPv4Address> = EmptyCollection()) -> DestinationRefusal? {
        refusal(for: .v4(destination), egressAddresses: egressAddresses)
    }
}

/// Why the policy refuses a destination; the description is what the client and the log are told.
public enum DestinationRefusal: Hashable, Sendable, CustomStringConvertible {
    /// The port, whatever the address.
    case port(PortRefusal)
    case denied(IPAddress, by: IPPrefix)
    case egressAddress(IPAddress)
    case specialPurpose(IPAddress, SpecialPurposeRange)
    /// An address on one of this host's interfaces, named.
    case hostAddress(IPAddress, interface: String)

    /// A short label for metrics (`portslice_proxy_refusals_total{reason}`).
    public var reason: String {
        switch self {
        case .port: "port"
        case .denied: "address_denied"
        case .egressAddress: "egress_address"
        case .specialPurpose: "special_purpose"
        case .hostAddress: "host_address"
        }
    }

    public var description: String {
        switch self {
        case .port(let refusal):
            return "\(refusal)"
        case .denied(let address, let prefix):
            return "\(address) is in the deny list (\(prefix))"
        case .egressAddress(let address):
            return "\(address) is one of the proxy's own egress addresses"
        case .specialPurpose(let address, let range):
            // An IPv4-mapped address: say what the IPv4 address inside would meet.
            if case .v6(let v6) = address, let ipv4 = v6.ipv4Mapped {
                guard let inner = SpecialPurposeRange.containing(.v4(ipv4)) else {
                    return "\(address) is in \(range), refused by default; ask for \(ipv4) itself"
                }
                return "\(address) is in \(range), refused by default, and \(ipv4) itself is in \(inner)"
            }
            return "\(address) is in \(range), refused by default; add a prefix holding it to the allow list (--allow) to permit it"
        case .hostAddress(let address, let interface):
            return "\(address) is one of this host's own addresses (interface \(interface)); add it to the allow list (--allow) to permit it"
        }
    }
}

/// A range of the IANA special-purpose address registries (RFC 6890 and the RFCs that added
/// to them, as of 2025), or multicast: addresses that are not an ordinary destination on the
/// internet. Ranges the registries list inside a larger one (192.0.0.0/29 in 192.0.0.0/24,
/// TEREDO in 2001::/23, ...) are covered by it and not repeated.
public struct SpecialPurposeRange: Hashable, Sendable, CustomStringConvertible {
    public let prefix: IPPrefix
    /// The registry's name for it, for refusals.
    public let name: String

    public init(prefix: IPPrefix, name: String) {
        self.prefix = prefix
        self.name = name
    }

    /// For the tables below, whose prefixes are fixed text that parses.
    init(_ prefix: String, _ name: String) {
        self.init(prefix: IPPrefix(prefix)!, name: name)
    }

    public var description: String { "\(prefix) (\(name))" }

    public static let ipv4: [SpecialPurposeRange] = [
        SpecialPurposeRange("0.0.0.0/8", "this network"),
        SpecialPurposeRange("10.0.0.0/8", "private use"),
        SpecialPurposeRange("100.64.0.0/10", "shared address space"),
        ipv4Loopback,
        SpecialPurposeRange("169.254.0.0/16", "link-local"),
        SpecialPurposeRange("172.16.0.0/12", "private use"),
        SpecialPurposeRange("192.0.0.0/24", "IETF protocol assignments"),
        SpecialPurposeRange("192.0.2.0/24", "documentation, TEST-NET-1"),
        SpecialPurposeRange("192.31.196.0/24", "AS112-v4"),
        SpecialPurposeRange("192.52.193.0/24", "AMT"),
        SpecialPurposeRange("192.88.99.0/24", "deprecated 6to4 relay anycast"),
        SpecialPurposeRange("192.168.0.0/16", "private use"),
        SpecialPurposeRange("192.175.48.0/24", "direct delegation AS112 service"),
        SpecialPurposeRange("198.18.0.0/15", "benchmarking"),
        SpecialPurposeRange("198.51.100.0/24", "documentation, TEST-NET-2"),
        SpecialPurposeRange("203.0.113.0/24", "documentation, TEST-NET-3"),
        // Not in the registry (RFC 5771 has it), but no unicast flow goes there.
        SpecialPurposeRange("224.0.0.0/4", "multicast"),
        SpecialPurposeRange("240.0.0.0/4", "reserved"),
        SpecialPurposeRange("255.255.255.255/32", "limited broadcast"),
    ]

    public static let ipv6: [SpecialPurposeRange] = [
        SpecialPurposeRange("::/128", "unspecified address"),
        ipv6Loopback,
        ipv4Mapped,
        SpecialPurposeRange("64:ff9b::/96", "IPv4-IPv6 translation"),
        SpecialPurposeRange("64:ff9b:1::/48", "local-use IPv4-IPv6 translation"),
        SpecialPurposeRange("100::/64", "discard-only"),
        SpecialPurposeRange("2001::/23", "IETF protocol assignments"),
        SpecialPurposeRange("2001:db8::/32", "documentation"),
        SpecialPurposeRange("2002::/16", "6to4"),
        SpecialPurposeRange("2620:4f:8000::/48", "direct delegation AS112 service"),
        SpecialPurposeRange("3fff::/20", "documentation"),
        SpecialPurposeRange("5f00::/16", "segment routing (SRv6) SIDs"),
        SpecialPurposeRange("fc00::/7", "unique local"),
        SpecialPurposeRange("fe80::/10", "link-local unicast"),
        // Not in the registry (RFC 4291 has it), but no unicast flow goes there.
        SpecialPurposeRange("ff00::/8", "multicast"),
    ]

    public static let ipv4Loopback = SpecialPurposeRange("127.0.0.0/8", "loopback")
    public static let ipv6Loopback = SpecialPurposeRange("::1/128", "loopback")
    public static let ipv4Mapped = SpecialPurposeRange("::ffff:0:0/96", "IPv4-mapped")

    var isLoopback: Bool { self == Self.ipv4Loopback || self == Self.ipv6Loopback }

    /// Both registries, longest prefix first, so the first range holding an address is the most specific.
    private static let mostSpecificFirst = (ipv4 + ipv6).sorted { $0.prefix.length > $1.prefix.length }

    /// The most specific range holding `address`, or nil for an ordinary unicast address.
    public static func containing(_ address: IPAddress) -> SpecialPurposeRange? {
        mostSpecificFirst.first { $0.prefix.contains(address) }
    }
}
