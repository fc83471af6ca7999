import PortSliceCore

/// A host behind the edge: the next hops that reach it, and the packet mark and routing table
/// that send its packets there. Numbers are given by the edge's configuration, sorted by name,
/// so the same configuration always gives the same marks.
public struct EdgeHost: Hashable, Sendable {
    public let name: String
    public let nextHop: IPv4Address
    /// The IPv6 next hop for the prefixes the host leases; nil for a host that leases none.
    public let nextHop6: IPv6Address?
    /// 1-based position among the configured hosts.
    public let number: Int

    public init(name: String, nextHop: IPv4Address, nextHop6: IPv6Address? = nil, number: Int) {
        self.name = name
        self.nextHop = nextHop
        self.nextHop6 = nextHop6
        self.number = number
    }

    public var mark: UInt32 { SteeringMark.hostBase + UInt32(number) }
    /// The policy-routing table that holds the route to this host.
    public var routeTable: Int { SteeringMark.routeTableBase + number }
    /// The `ip rule` priority: ahead of the main table (32766), whose default route would
    /// otherwise send the packet back where it came from.
    public var rulePriority: Int { SteeringMark.rulePriorityBase + number }

    /// Hosts from their IPv4 next hops and, for hosts that lease IPv6 prefixes, their IPv6
    /// ones, numbered in name order.
    public static func numbered(_ nextHops: [String: IPv4Address], ipv6 nextHops6: [String: IPv6Address] = [:]) throws(SliceTableError) -> [EdgeHost] {
        guard nextHops.count <= SteeringMark.maximumHosts else {
            throw SliceTableError("\(nextHops.count) hosts are configured; one edge steers at most \(SteeringMark.maximumHosts)")
        }
        return nextHops.keys.sorted().enumerated().map { EdgeHost(name: $1, nextHop: nextHops[$1]!, nextHop6: nextHops6[$1], number: $0 + 1) }
    }
}

/// Packet marks the edge sets in its raw prerouting chain. Owners get `hostBase + number`;
/// the other values say why a packet has no owner, and each has its own drop counter.
public enum SteeringMark {
    public static let hostBase: UInt32 = 0x5053_0000
    public static let maximumHosts = 4096
    /// Hosts' tables are `routeTableBase + number` (from 1); `routeTableBase` itself holds the
    /// IPv6 prefix routes, looked up at `rulePriorityBase`.
    public static let routeTableBase = 53000
    public static let rulePriorityBase = 28000

    /// Why a port of a shared address has no host to go to; the raw value names the counter.
    public enum Unowned: String, CaseIterable, Sendable {
        case free, quarantined, draining
        /// Leased to a host the edge has no next hop for.
        case unroutable

        public var mark: UInt32 {
            switch self {
            case .free: 0x5053_fff1
            case .quarantined: 0x5053_fff2
            case .draining: 0x5053_fff3
            case .unroutable: 0x5053_fff4
            }
        }
    }
}

/// A slice table the edge refuses, saying which entries are wrong.
public struct SliceTableError: Error, Hashable, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// What one slice table asks of the edge: for every shared address, which ports go to which
/// mark. Built only from a table that passes the checks, so rendering cannot fail.
public struct SteeringPlan: Hashable, Sendable {
    public struct Run: Hashable, Sendable, Comparable {
        public let address: IPv4Address
        public let ports: PortRange
        public let mark: UInt32

        public static func < (lhs: Run, rhs: Run) -> Bool {
            (lhs.address, lhs.ports.lower) < (rhs.address, rhs.ports.lower)
        }
    }

    public let version: Int64
    public let sharedAddresses: [IPv4Address]
    /// Sorted by address and port; no two overlap.
    public let runs: [Run]
    /// Hosts that hold slices but have no next hop at this edge: their ports are dropped and
    /// counted as `unroutable`.
    public let unroutableHosts: [String]
    /// One route per IPv6 prefix of the table, sorted by prefix: a leased one to its host's
    /// IPv6 next hop, any other dropped.
    public let prefixRoutes: [PrefixRoute]
    /// Hosts that hold prefixes but have no IPv6 next hop here, with those prefixes (which are
    /// dropped).
    public let hostsWithoutIPv6: [String: [IPv6Prefix]]

    /// Checks `table` and maps each slice to its mark.
    /// - Throws: `SliceTableError` naming the first entries that are wrong: an unknown state, a
    ///   leased slice without a holder, an empty slice, the same slice twice, or two slices of
    ///   one address sharing a port; a leased prefix without a holder, or two overlapping
    ///   prefixes.
    public init(table: SliceTable, hosts: [EdgeHost]) throws(SliceTableError) {
        let markOfHost = Dictionary(uniqueKeysWithValues: hosts.map { ($0.name, $0.mark) })
        var runs: [Run] = []
        var unroutable: Set<String> = []
        var seen: Set<SliceID> = []
        for entry in table.slices {
            let slice = SliceID(address: entry.address, index: entry.index)
            guard seen.insert(slice).inserted else { throw SliceTableError("slice \(slice) appears twice in table version \(table.version)") }
            guard !entry.ports.isEmpty else { throw SliceTableError("slice \(slice) has no ports") }
            let mark: UInt32
            switch entry.state {
            case .leased:
                guard let host = entry.host, !host.isEmpty else {
                    throw SliceTableError("slice \(slice) is leased but names no host")
                }
                if let hostMark = markOfHost[host] {
                    mark = hostMark
                } else {
                    unroutable.insert(host)
                    mark = SteeringMark.Unowned.unroutable.mark
                }
            case .free: mark = SteeringMark.Unowned.free.mark
            case .quarantined: mark = SteeringMark.Unowned.quarantined.mark
            case .draining: mark = SteeringMark.Unowned.draining.mark
            }
            runs += entry.ports.runs.map { Run(address: entry.address, ports: $0, mark: mark) }
        }
        runs.sort()
        for (earlier, later) in zip(runs, runs.dropFirst()) where earlier.address == later.address && later.ports.lower <= earlier.ports.upper {
            throw SliceTableError("two slices of \(earlier.address) share ports (\(earlier.ports) and \(later.ports)); the table conflicts with itself")
        }
        self.version = table.version
        self.runs = runs
        self.sharedAddresses = Array(Set(runs.map(\.address))).sorted()
        self.unroutableHosts = unroutable.sorted()
        (prefixRoutes, hostsWithoutIPv6) = try Self.routes(of: table, hosts: hosts)
    }

    /// Each prefix of `table` with where it goes.
    private static func routes(of table: SliceTable, hosts: [EdgeHost]) throws(SliceTableError) -> ([PrefixRoute], [String: [IPv6Prefix]]) {
        let hostByName = Dictionary(uniqueKeysWithValues: hosts.map { ($0.name, $0) })
        var routes: [PrefixRoute] = []
        var withoutIPv6: [String: [IPv6Prefix]] = [:]
        for entry in table.prefixes {
            var nextHop: IPv6Address?
            if entry.state == .leased {
                guard let host = entry.host, !host.isEmpty else {
                    throw SliceTableError("prefix \(entry.prefix) is leased but names no host")
                }
                nextHop = hostByName[host]?.nextHop6
                if nextHop == nil { withoutIPv6[host, default: []].append(entry.prefix) }
            }
            routes.append(PrefixRoute(prefix: entry.prefix, nextHop: nextHop, host: nextHop == nil ? nil : entry.host))
        }
        routes.sort()
        // Sorted by network, a prefix that overlaps another contains the one right after it.
        for (earlier, later) in zip(routes, routes.dropFirst()) where earlier.prefix.contains(later.prefix.network) {
            throw SliceTableError("prefixes \(earlier.prefix) and \(later.prefix) overlap in table version \(table.version); the table conflicts with itself")
        }
        return (routes, withoutIPv6)
    }
}

/// Where the edge routes one IPv6 prefix: to the next hop of the host that leases it, or, with
/// no next hop, nowhere (a blackhole route, so a prefix in quarantine or of a host the edge
/// cannot reach is dropped here instead of bouncing back upstream). One route per lease: the
/// edge keeps nothing per flow.
public struct PrefixRoute: Hashable, Sendable, Comparable {
    public let prefix: IPv6Prefix
    public let nextHop: IPv6Address?
    /// The host it reaches; nil when dropped.
    public let host: String?

    public init(prefix: IPv6Prefix, nextHop: IPv6Address?, host: String? = nil) {
        self.prefix = prefix
        self.nextHop = nextHop
        self.host = host
    }

    public static func < (lhs: PrefixRoute, rhs: PrefixRoute) -> Bool { lhs.prefix < rhs.prefix }

    /// The route as `ip -6 route` writes it (after `replace`), in the edge's prefix table.
    public var command: String {
        if let nextHop { "route replace \(prefix) via \(nextHop) table \(PrefixRoutes.table)" } else { "route replace blackhole \(prefix) table \(PrefixRoutes.table)" }
    }
}
