/// What a slice is doing, without the details `SliceState` carries: the form the slice table,
/// capacity counts and the database store.
public enum SliceStatus: String, Hashable, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case free, leased, quarantined, draining

    public var description: String { rawValue }
}

extension SliceState {
    public var status: SliceStatus {
        switch self {
        case .free: .free
        case .leased: .leased
        case .quarantined: .quarantined
        case .draining: .draining
        }
    }
}

/// What edges steer by: every slice, its state and, when leased, its holder; and every IPv6
/// prefix leased out of the pool or in quarantine (a free one is not listed: there are 65,536
/// in a /48).
public struct SliceTable: Hashable, Sendable, Codable {
    public struct Entry: Hashable, Sendable, Codable {
        public let address: IPv4Address
        public let index: Int
        public let ports: PortSet
        public let state: SliceStatus
        public let host: String?

        public init(address: IPv4Address, index: Int, ports: PortSet, state: SliceStatus, host: String?) {
            self.address = address
            self.index = index
            self.ports = ports
            self.state = state
            self.host = host
        }
    }

    /// A leased or quarantined IPv6 prefix: an edge routes a leased one to its host.
    public struct PrefixEntry: Hashable, Sendable, Codable {
        public let prefix: IPv6Prefix
        /// `leased` or `quarantined`.
        public let state: SliceStatus
        public let host: String?

        public init(prefix: IPv6Prefix, state: SliceStatus, host: String?) {
            self.prefix = prefix
            self.state = state
            self.host = host
        }
    }

    /// Grows whenever a slice or prefix changes hands or addresses come and go.
    public let version: Int64
    public let slices: [Entry]
    public let prefixes: [PrefixEntry]

    public init(version: Int64, slices: [Entry], prefixes: [PrefixEntry] = []) {
        self.version = version
        self.slices = slices
        self.prefixes = prefixes
    }

    enum CodingKeys: String, CodingKey { case version, slices, prefixes }

    /// A table from an allocator older than IPv6 prefixes has none.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        version = try container.decode(Int64.self, forKey: .version)
        slices = try container.decode([Entry].self, forKey: .slices)
        prefixes = try container.decodeIfPresent([PrefixEntry].self, forKey: .prefixes) ?? []
    }

    /// The part of the table one host may see: its own leased slices and prefixes, which is
    /// all its guard and routes need.
    public func held(by host: String) -> SliceTable {
        SliceTable(version: version, slices: slices.filter { $0.state == .leased && $0.host == host },
                   prefixes: prefixes.filter { $0.state == .leased && $0.host == host })
    }

    /// Every host's part (`held(by:)` of each host that holds something), in one pass over
    /// the table rather than one per host.
    public func partsByHost() -> [String: SliceTable] {
        var slicesByHost: [String: [Entry]] = [:]
        var prefixesByHost: [String: [PrefixEntry]] = [:]
        for entry in slices where entry.state == .leased {
            if let host = entry.host { slicesByHost[host, default: []].append(entry) }
        }
        for entry in prefixes where entry.state == .leased {
            if let host = entry.host { prefixesByHost[host, default: []].append(entry) }
        }
        return Dictionary(uniqueKeysWithValues: Set(slicesByHost.keys).union(prefixesByHost.keys).map { host in
            (host, SliceTable(version: version, slices: slicesByHost[host] ?? [], prefixes: prefixesByHost[host] ?? []))
        })
    }
}

/// How many slices of one trait class are in one state.
public struct SliceCount: Hashable, Sendable {
    public let traits: Traits
    public let state: SliceStatus
    public let count: Int

    public init(traits: Traits, state: SliceStatus, count: Int) {
        self.traits = traits
        self.state = state
        self.count = count
    }
}
