import Foundation
import PortSliceCore

/// The edge's nftables table: packets for a shared address get the mark of the host that owns
/// their destination port (or, for an ICMP error, the source port of the packet it quotes),
/// and policy routing sends each mark to its host. No connection tracking, no rewriting.
///
/// Lookups stay flat as slices grow: a verdict map hashes the destination address to that
/// address's chain, whose port maps are single-field interval maps (a tree, logarithmic in the
/// slices of one address). A concatenated address-and-port interval map would be one map, but
/// nftables matches those with bitmaps whose cost grows with every element (measured: 33%
/// fewer packets per second at 10,000 slices).
public enum EdgeRuleset {
    public static let tableName = "portslice_edge"

    /// Drop counters: one per reason a port has no owner, `unowned` for ports outside every
    /// slice (and ICMP that is not an error), `fragments` for non-first fragments, which carry
    /// no ports to steer by.
    public static let counterNames = SteeringMark.Unowned.allCases.map(\.rawValue) + ["unowned", "fragments"]

    public static func render(_ plan: SteeringPlan, counters: CounterValues = [:]) -> String {
        var script = NFTablesScript(table: tableName, comment: "portslice edge: slice table version \(plan.version); managed by portslice, do not edit")
        for name in counterNames { script.counter(name, carrying: counters) }
        script.collection("set", "shared", "type ipv4_addr", elements: plan.sharedAddresses.map(\.description))
        script.collection("map", "by_address", "type ipv4_addr : verdict", elements: plan.sharedAddresses.map { "\($0) : jump \(chainName($0))" })
        let runsByAddress = Dictionary(grouping: plan.runs, by: \.address)
        for address in plan.sharedAddresses {
            let elements = runsByAddress[address, default: []].map { "\($0.ports.nftables) : \(hex($0.mark))" }
            script.collection("map", "\(chainName(address))_ports", "type inet_service : mark; flags interval", elements: elements)
            // A raw payload field is an integer, not a port, so this map is declared by `typeof`.
            script.collection("map", "\(chainName(address))_quoted", "typeof \(quotedSourcePort) : meta mark; flags interval", elements: elements)
            script.chain(chainName(address), nil, rules: [
                "meta l4proto { tcp, udp } meta mark set th dport map @\(chainName(address))_ports",
                "icmp type \(quotingICMPTypes) \(quotedHeaderWithoutOptions) meta mark set \(quotedSourcePort) map @\(chainName(address))_quoted",
            ])
        }
        var prerouting = [
            // The hosts' own packets leave without a conntrack entry either: zero per-flow state.
            "ip saddr @shared notrack accept",
            "ip daddr != @shared accept",
            "notrack",
            "ip frag-off & 0x1fff != 0 counter name fragments drop",
            "ip daddr vmap @by_address",
        ]
        prerouting += SteeringMark.Unowned.allCases.map { "meta mark \(hex($0.mark)) counter name \($0.rawValue) drop" }
        prerouting.append("meta mark & 0xffff0000 != \(hex(SteeringMark.hostBase)) counter name unowned drop")
        script.chain("prerouting", "type filter hook prerouting priority raw; policy accept;", rules: prerouting)
        // ICMP errors the edge sends itself (say, fragmentation needed on its uplink) start
        // here instead of in prerouting; a mark set in a route chain routes them again.
        script.chain("output", "type route hook output priority raw; policy accept;", rules: [
            "ip daddr != @shared accept",
            "notrack",
            "ip protocol icmp ip daddr vmap @by_address",
        ])
        return script.text
    }

    /// The edge's IPv6 table, in the same transaction as the IPv4 one: packets from and to the
    /// table's prefixes bypass connection tracking, like those of shared addresses. Steering
    /// them needs no rules: each prefix has its route (`PrefixRoutes`).
    public static let tableName6 = "portslice_edge6"

    public static func renderIPv6(_ plan: SteeringPlan) -> String {
        var script = NFTablesScript(table: tableName6, family: "ip6", comment: "portslice edge: IPv6 prefixes of slice table version \(plan.version); managed by portslice, do not edit")
        script.collection("set", "prefixes", "type ipv6_addr; flags interval", elements: plan.prefixRoutes.map(\.prefix.description))
        script.chain("prerouting", "type filter hook prerouting priority raw; policy accept;", rules: [
            "ip6 saddr @prefixes notrack",
            "ip6 daddr @prefixes notrack",
        ])
        script.chain("output", "type route hook output priority raw; policy accept;", rules: [
            "ip6 daddr @prefixes notrack",
        ])
        return script.text
    }

    /// The chain (and prefix of the maps) of one shared address: `a_203_0_113_10`.
    static func chainName(_ address: IPv4Address) -> String {
        "a_" + address.description.replacingOccurrences(of: ".", with: "_")
    }
}

/// The host-side guard: packets leaving from a shared address with a source port outside this
/// host's slices are dropped and counted (`outside`), like RFC 7597 section 8.1 asks of a CE,
/// so one misbehaving program cannot disturb the hosts that share the address. Packets
/// arriving for a port this host does not hold are dropped and counted too (`foreign`), and
/// ICMP errors arriving for shared addresses are counted (`icmp_errors`). Shared addresses
/// are kept out of connection tracking, which could rewrite a port out of its slice.
public enum HostGuardRuleset {
    public static let tableName = "portslice_guard"
    public static let counterNames = ["outside", "foreign", "icmp_errors"]

    /// - Throws: `SliceTableError` when the table is malformed or conflicts with itself.
    public static func render(_ table: SliceTable, host: String, counters: CounterValues = [:]) throws(SliceTableError) -> String {
        let plan = try SteeringPlan(table: table, hosts: [])
        let owned = table.slices.filter { $0.state == .leased && $0.host == host }
            .flatMap { entry in entry.ports.runs.map { "\(entry.address) . \($0.nftables)" } }
        var script = NFTablesScript(table: tableName, comment: "portslice host guard for \(host): slice table version \(table.version); managed by portslice, do not edit")
        for name in counterNames { script.counter(name, carrying: counters) }
        script.collection("set", "shared", "type ipv4_addr", elements: plan.sharedAddresses.map(\.description))
        script.collection("set", "owned", "type ipv4_addr . inet_service; flags interval", elements: owned)
        script.chain("output", "type filter hook output priority raw; policy accept;", rules: [
            "ip saddr != @shared accept",
            "notrack",
            "oifname \"lo\" accept",
            "meta l4proto { tcp, udp } ip saddr . th sport != @owned counter name outside drop",
        ])
        script.chain("prerouting", "type filter hook prerouting priority raw; policy accept;", rules: [
            "ip daddr != @shared accept",
            "notrack",
            "iifname \"lo\" accept",
            "meta l4proto { tcp, udp } ip daddr . th dport != @owned counter name foreign drop",
            "icmp type \(quotingICMPTypes) counter name icmp_errors",
        ])
        return script.text
    }
}

func hex(_ mark: UInt32) -> String { "0x" + String(mark, radix: 16) }
