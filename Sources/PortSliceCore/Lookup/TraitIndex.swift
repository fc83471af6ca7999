/// Client traits by longest-prefix match, for IPv4 and IPv6, built from one or more geofeeds.
///
/// Identical trait records are stored once; each prefix holds a 4-byte reference to its record.
public struct TraitIndex: Sendable {
    public struct Match: Hashable, Sendable {
        public let prefix: IPPrefix
        private let record: Record
        public var traits: Traits { record.traits }

        init(prefix: IPPrefix, record: Record) {
            self.prefix = prefix
            self.record = record
        }

        public static func == (lhs: Match, rhs: Match) -> Bool {
            lhs.prefix == rhs.prefix && lhs.traits == rhs.traits
        }

        public func hash(into hasher: inout Hasher) {
            hasher.combine(prefix)
            hasher.combine(traits)
        }
    }

    /// One shared trait record: a match carries one reference instead of copying every field.
    final class Record: Sendable {
        let traits: Traits
        init(_ traits: Traits) { self.traits = traits }
    }

    private let v4: PrefixTable<IPv4Address, UInt32>
    private let v6: PrefixTable<IPv6Address, UInt32>
    private let records: [Record]

    /// - Parameter feeds: geofeeds in order; when several give the same prefix, the later one
    ///   wins, so a local override feed can be layered over a public one.
    public init(feeds: [Geofeed]) {
        var recordIndex: [Traits: UInt32] = [:]
        var records: [Record] = []
        var v4: [(IPv4Prefix, UInt32)] = []
        var v6: [(IPv6Prefix, UInt32)] = []
        for entry in feeds.lazy.flatMap(\.entries) {
            let record: UInt32
            if let known = recordIndex[entry.traits] {
                record = known
            } else {
                record = UInt32(records.count)
                recordIndex[entry.traits] = record
                records.append(Record(entry.traits))
            }
            switch entry.prefix {
            case .v4(let prefix): v4.append((prefix, record))
            case .v6(let prefix): v6.append((prefix, record))
            }
        }
        self.v4 = PrefixTable(v4)
        self.v6 = PrefixTable(v6)
        self.records = records
    }

    public func lookup(_ address: IPAddress) -> Match? {
        switch address {
        case .v4(let v4Address):
            return lookup(v4Address)
        case .v6(let v6Address):
            // An IPv4-mapped client (a dual-stack listener's view of an IPv4 peer) is an IPv4 client.
            if let mapped = v6Address.ipv4Mapped { return lookup(mapped) }
            return v6.lookup(v6Address).map { Match(prefix: .v6($0.prefix), record: records[Int($0.value)]) }
        }
    }

    public func lookup(_ address: IPv4Address) -> Match? {
        v4.lookup(address).map { Match(prefix: .v4($0.prefix), record: records[Int($0.value)]) }
    }

    public var prefixCount: Int { v4.count + v6.count }
    /// Distinct trait records.
    public var recordCount: Int { records.count }

    /// Bytes of both prefix tables (not the shared trait records).
    public var tableStorageBytes: Int { v4.storageBytes + v6.storageBytes }
}
