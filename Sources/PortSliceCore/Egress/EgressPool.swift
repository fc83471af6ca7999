/// An egress address and its traits.
public struct EgressAddress: Hashable, Sendable, Codable {
    public let address: IPv4Address
    public let traits: Traits

    public init(address: IPv4Address, traits: Traits) {
        self.address = address
        self.traits = traits
    }
}

/// Dotted decimal in bodies, as an operator writes it.
extension IPv4Address: CodableAsText {}

/// How well an egress address's traits mirror a client's, compared field by field in order of
/// importance: city, region, country, category, then reputation.
public struct Closeness: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let sameCity: Bool
    public let sameRegion: Bool
    public let sameCountry: Bool
    public let sameCategory: Bool
    /// Steps between reputation tiers (0 = same); 3 when the address's tier is unknown.
    public let reputationDistance: Int

    /// One integer that orders like the fields above, most significant first.
    var score: Int {
        (sameCity ? 32 : 0) | (sameRegion ? 16 : 0) | (sameCountry ? 8 : 0) | (sameCategory ? 4 : 0)
            | (3 - reputationDistance)
    }

    public static func < (lhs: Closeness, rhs: Closeness) -> Bool { lhs.score < rhs.score }

    public var description: String {
        let matched = [(sameCity, "city"), (sameRegion, "region"), (sameCountry, "country"), (sameCategory, "category")]
            .filter(\.0).map(\.1)
        let place = matched.isEmpty ? "no trait matched" : "same " + matched.joined(separator: ", ")
        return "\(place); reputation \(reputationDistance == 0 ? "matched" : "\(reputationDistance) tier(s) off")"
    }

    /// - Parameters:
    ///   - address: the egress address's traits.
    ///   - client: the client's traits; a field the client lacks counts as matched by every
    ///     address, so it never decides the choice.
    public init(of address: Traits, to client: Traits) {
        self.init(of: TraitKeys(address), to: TraitKeys(client))
    }

    /// The comparison itself, over any key type: text for one-off comparisons, interned
    /// integers for a pool's hot path, so both always agree.
    init<Key: Equatable & Sendable>(of address: TraitKeys<Key>, to client: TraitKeys<Key>) {
        let sameCountry = client.country == nil || client.country == address.country
        self.sameCountry = sameCountry
        sameRegion = client.region == nil || (sameCountry && client.region == address.region)
        sameCity = client.city == nil || (sameCountry && client.city == address.city)
        sameCategory = client.category == .unknown || client.category == address.category
        switch (client.reputation, address.reputation) {
        case (nil, _): reputationDistance = 0
        case (.some, nil): reputationDistance = 3
        case (.some(let wanted), .some(let offered)): reputationDistance = abs(wanted.rank - offered.rank)
        }
    }

    /// Case folding for city names ("Paris" and "PARIS" are one city).
    static func fold(_ city: String) -> String { city.lowercased() }
}

/// The fields of `Traits` that closeness compares, as keys of one type.
struct TraitKeys<Key: Equatable & Sendable>: Equatable, Sendable {
    var country: Key?
    var region: Key?
    var city: Key?
    var category: Category
    var reputation: ReputationTier?
}

extension TraitKeys<String> {
    init(_ traits: Traits) {
        self.init(
            country: traits.country?.rawValue, region: traits.region?.rawValue,
            city: traits.city.map(Closeness.fold), category: traits.category, reputation: traits.reputation)
    }
}

/// Country, region and folded city names numbered once per pool, so choosing compares integers.
struct TraitInterner: Sendable {
    private var numbers: [String: Int32] = [:]

    /// Numbers every name of `traits`, adding names not seen before.
    mutating func intern(_ traits: Traits) -> TraitKeys<Int32> {
        func number(_ name: String?) -> Int32? {
            guard let name else { return nil }
            if let known = numbers[name] { return known }
            let next = Int32(numbers.count)
            numbers[name] = next
            return next
        }
        let text = TraitKeys<String>(traits)
        return TraitKeys(
            country: number(text.country), region: number(text.region), city: number(text.city),
            category: text.category, reputation: text.reputation)
    }

    /// Keys for a client; a name no pool address has becomes -1, which matches nothing.
    func keys(_ traits: Traits) -> TraitKeys<Int32> {
        let text = TraitKeys<String>(traits)
        func number(_ name: String?) -> Int32? { name.map { numbers[$0] ?? -1 } }
        return TraitKeys(
            country: number(text.country), region: number(text.region), city: number(text.city),
            category: text.category, reputation: text.reputation)
    }
}

/// A pool of egress addresses and the rule for choosing one for a client: the closest traits
/// win, and among equally close addresses rendezvous (highest-random-weight) hashing on the
/// client address decides. A client therefore keeps its address as long as the pool does not
/// change (RFC 6888 REQ-2, paired pooling), and removing one address moves only its clients.
public struct EgressPool: Sendable {
    public let addresses: [EgressAddress]
    /// Addresses grouped by identical traits, so closeness is computed once per group;
    /// `groupKeys[g]` holds no references, so scanning it touches no reference counts.
    private let groupKeys: [TraitKeys<Int32>]
    private let groupMembers: [[Int]]
    /// Groups by country. A group in the client's country always outranks one elsewhere
    /// (country outweighs category and reputation, and region and city need the country), so
    /// when the pool has the client's country only those groups are scored.
    private let groupsByCountry: [Int32: [Int]]
    private let interner: TraitInterner
    private let addressKeys: [UInt64]

    /// - Throws: `EgressPoolError.duplicateAddress` when an address is listed twice.
    public init(_ addresses: [EgressAddress]) throws(EgressPoolError) {
        var seen: Set<IPv4Address> = []
        var interner = TraitInterner()
        var groupIndex: [Traits: Int] = [:]
        var groups: [(keys: TraitKeys<Int32>, members: [Int])] = []
        for (index, egress) in addresses.enumerated() {
            guard seen.insert(egress.address).inserted else { throw .duplicateAddress(egress.address) }
            if let group = groupIndex[egress.traits] {
                groups[group].members.append(index)
            } else {
                groupIndex[egress.traits] = groups.count
                groups.append((interner.intern(egress.traits), [index]))
            }
        }
        self.addresses = addresses
        groupKeys = groups.map(\.keys)
        groupMembers = groups.map(\.members)
        groupsByCountry = Dictionary(grouping: groups.indices.filter { groups[$0].keys.country != nil }) {
            groups[$0].keys.country!
        }
        self.interner = interner
        addressKeys = addresses.map { RendezvousHash.key($0.address) }
    }

    /// The address a client with `traits` at `client` leaves from; nil only for an empty pool.
    public func choose(for clientAddress: IPAddress, traits: Traits) -> EgressAddress? {
        let client = interner.keys(traits)
        let scored = client.country.flatMap { groupsByCountry[$0] } ?? Array(groupKeys.indices)
        let best = scored.lazy.map { Closeness(of: groupKeys[$0], to: client).score }.max() ?? 0
        let clientKey = RendezvousHash.key(clientAddress)
        var winner: Int? = nil
        var winningWeight: UInt64 = 0
        for group in scored where Closeness(of: groupKeys[group], to: client).score == best {
            for index in groupMembers[group] {
                let weight = RendezvousHash.weight(client: clientKey, target: addressKeys[index])
                if winner == nil || weight > winningWeight
                    || (weight == winningWeight && addresses[index].address < addresses[winner!].address) {
                    winner = index
                    winningWeight = weight
                }
            }
        }
        return winner.map { addresses[$0] }
    }

    /// Every address in the order it would be tried for this client: closest first, then by
    /// rendezvous weight. The first is what `choose` returns.
    public func ranked(for client: IPAddress, traits: Traits) -> [(egress: EgressAddress, closeness: Closeness)] {
        let clientKey = RendezvousHash.key(client)
        return addresses.indices.map { index in
            (index, Closeness(of: addresses[index].traits, to: traits),
             RendezvousHash.weight(client: clientKey, target: addressKeys[index]))
        }
        .sorted { ($0.1.score, $0.2, addresses[$1.0].address) > ($1.1.score, $1.2, addresses[$0.0].address) }
        .map { (addresses[$0.0], $0.1) }
    }
}

public enum EgressPoolError: Error, Hashable, Sendable, CustomStringConvertible {
    case duplicateAddress(IPv4Address)
    case notIPv4(prefix: String, line: Int)
    case prefixTooLarge(prefix: String, line: Int)
    case badLeaseLength(line: Int, AllocationError)

    public var description: String {
        switch self {
        case .duplicateAddress(let address):
            "egress address \(address) is listed more than once; give each address once"
        case .notIPv4(let prefix, let line):
            "line \(line): \(prefix) is IPv6; egress addresses are IPv4 (clients may be IPv6)"
        case .prefixTooLarge(let prefix, let line):
            "line \(line): \(prefix) holds more than 65536 addresses; list egress addresses as /16 or longer prefixes"
        case .badLeaseLength(let line, let error):
            "line \(line): \(error)"
        }
    }
}

extension Geofeed {
    /// A pool file's two parts: its IPv4 lines, which list egress addresses to cut into
    /// slices (`EgressPool(feed:)`), and its IPv6 lines, pool prefixes out of which hosts
    /// lease prefixes of `leaseLength`.
    /// - Throws: `EgressPoolError.badLeaseLength` naming the line of a prefix that is not
    ///   shorter than `leaseLength`.
    public func splitPool(leaseLength: Int) throws(EgressPoolError) -> (addresses: Geofeed, prefixes: [PoolPrefix]) {
        var addresses: [GeofeedEntry] = [], prefixes: [PoolPrefix] = []
        for entry in entries {
            switch entry.prefix {
            case .v4: addresses.append(entry)
            case .v6(let prefix):
                do {
                    prefixes.append(try PoolPrefix(prefix: prefix, traits: entry.traits, leaseLength: leaseLength))
                } catch {
                    throw .badLeaseLength(line: entry.line, error)
                }
            }
        }
        return (Geofeed(entries: addresses, issues: issues), prefixes)
    }
}

extension EgressPool {
    /// A pool from a geofeed whose prefixes are egress addresses (a /30 lists four addresses).
    public init(feed: Geofeed) throws(EgressPoolError) {
        var addresses: [EgressAddress] = []
        for entry in feed.entries {
            guard case .v4(let prefix) = entry.prefix else {
                throw .notIPv4(prefix: entry.prefix.description, line: entry.line)
            }
            guard prefix.length >= 16 else { throw .prefixTooLarge(prefix: prefix.description, line: entry.line) }
            for bits in prefix.first.bits...prefix.last.bits {
                addresses.append(EgressAddress(address: IPv4Address(bits: bits), traits: entry.traits))
            }
        }
        try self.init(addresses)
    }
}
