import PortSliceCore

/// A host behind the edge: the next hop that reaches it, and the packet mark and routing table
/// that send its packets there. Numbers are given by the edge's configuration, sorted by name,
/// so the same configuration always gives the same marks.
public struct EdgeHost: Hashable, Sendable {
    public let name: String
    public let nextHop: IPv4Address
    /// 1-based position among the configured hosts.
    public let number: Int

    public init(name: String, nextHop: IPv4Address, number: Int) {
        self.name = name
        self.nextHop = nextHop
        self.number = number
    }

    public var mark: UInt32 { SteeringMark.hostBase + UInt32(number) }
    /// The policy-routing table that holds the route to this host.
    public var routeTable: Int { SteeringMark.routeTableBase + number }
    /// The `ip rule` priority: ahead of the main table (32766), whose default route would
    /// otherwise send the packet back where it came from.
    public var rulePriority: Int { SteeringMark.rulePriorityBase + number }

    /// Hosts from `NAME=NEXTHOP` pairs, numbered in name order.
    public static func numbered(_ nextHops: [String: IPv4Address]) throws(SliceTableError) -> [EdgeHost] {
        guard nextHops.count <= SteeringMark.maximumHosts else {
            throw SliceTableError("\(nextHops.count) hosts are configured; one edge steers at most \(SteeringMark.maximumHosts)")
        }
        return nextHops.keys.sorted().enumerated().map { EdgeHost(name: $1, nextHop: nextHops[$1]!, number: $0 + 1) }
    }
}

/// Packet marks the edge sets in its raw prerouting chain. Owners get `hostBase + number`;
/// the other values say why a packet has no owner, and each has its own drop counter.
public enum SteeringMark {
    public static let hostBase: UInt32 = 0x5053_0000
    public static let maximumHosts = 4096
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

    /// Checks `table` and maps each slice to its mark.
    /// - Throws: `SliceTableError` naming the first entries that are wrong: an unknown state, a
    ///   leased slice without a holder, an empty slice, the same slice twice, or two slices of
    ///   one address sharing a port.
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
    }
}
