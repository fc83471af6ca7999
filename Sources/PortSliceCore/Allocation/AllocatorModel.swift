/// The allocator's rules, held in memory: which slices are free, leased or quarantined, how a
/// request is placed, and the assignment log; and the same for the IPv6 prefixes hosts lease
/// whole out of the pool's IPv6 prefixes. Stores implement the same rules in a database; this
/// model is the reference their tests compare against.
///
/// Time only moves forward through the `now` each call passes: a lease whose expiry has passed
/// is quarantined from its expiry on, and a quarantine that has ended frees its slice, whenever
/// the next call happens to come.
public struct AllocatorModel: Sendable {
    public struct PoolAddress: Hashable, Sendable {
        public let egress: EgressAddress
        public let plan: SlicePlan
        public var draining: Bool
    }

    /// Free, leased, quarantined and draining slices of one trait class.
    public struct Capacity: Hashable, Sendable {
        public var free = 0, leased = 0, quarantined = 0, draining = 0
    }

    public static let minimumQuarantine = Duration.seconds(120)
    public let quarantine: Duration
    public private(set) var pool: [IPv4Address: PoolAddress] = [:]
    public private(set) var log: [AssignmentRecord] = []
    private var states: [SliceID: SliceState] = [:]
    private var leases: [Int64: Lease] = [:]
    private var logIndex: [Int64: Int] = [:]
    private var nextLeaseID: Int64 = 1
    /// IPv6 pool prefixes by prefix, and the sub-prefixes that are not free: a sub-prefix
    /// with no state is free, as a store with no row for it says.
    public private(set) var prefixPool: [IPv6Prefix: PoolPrefix] = [:]
    public private(set) var prefixLog: [PrefixAssignmentRecord] = []
    private var prefixStates: [IPv6Prefix: PrefixState] = [:]
    private var prefixLeases: [Int64: PrefixLease] = [:]
    private var prefixLogIndex: [Int64: Int] = [:]
    private var nextPrefixLeaseID: Int64 = 1

    /// - Throws: `AllocationError.quarantineTooShort` below 120 s.
    public init(quarantine: Duration = .seconds(240)) throws(AllocationError) {
        try Self.validate(quarantine: quarantine)
        self.quarantine = quarantine
    }

    /// Quarantine lasts at least 120 s (RFC 6888 REQ-8, and longer than TIME_WAIT).
    public static func validate(quarantine: Duration) throws(AllocationError) {
        guard quarantine >= minimumQuarantine else { throw .quarantineTooShort(seconds: quarantine.components.seconds) }
    }

    // MARK: - Pool

    public mutating func add(_ egress: EgressAddress, plan: SlicePlan) throws(AllocationError) {
        guard pool[egress.address] == nil else { throw .duplicateAddress(egress.address) }
        pool[egress.address] = PoolAddress(egress: egress, plan: plan, draining: false)
        for slice in plan.allocatable { states[SliceID(address: egress.address, index: slice.index)] = .free }
    }

    /// No new leases on `address`; existing ones run out.
    public mutating func drain(_ address: IPv4Address, now: Moment) throws(AllocationError) {
        guard pool[address] != nil else { throw .unknownAddress(address) }
        advance(to: now)
        pool[address]!.draining = true
        for (id, state) in states where id.address == address && state == .free { states[id] = .draining }
    }

    /// Removes `address` once no lease or quarantine remains on it.
    public mutating func remove(_ address: IPv4Address, now: Moment) throws(AllocationError) {
        guard pool[address] != nil else { throw .unknownAddress(address) }
        advance(to: now)
        let slices = states.filter { $0.key.address == address }
        let leased = slices.values.filter { if case .leased = $0 { true } else { false } }.count
        let quarantined = slices.values.filter { if case .quarantined = $0 { true } else { false } }.count
        guard leased == 0 && quarantined == 0 else { throw .addressInUse(address, leases: leased, quarantined: quarantined) }
        pool[address] = nil
        for id in slices.keys { states[id] = nil }
    }

    // MARK: - Leases

    /// Leases `count` slices to `host` on the addresses whose traits best match `traits`,
    /// spreading the host over addresses; all or nothing.
    /// - Throws: `.noCapacity` when fewer than `count` slices are free for the request.
    public mutating func acquire(
        host: String, traits: Traits, count: Int = 1, timeToLive: Duration, now: Moment
    ) throws(AllocationError) -> [Lease] {
        try Self.validate(count: count)
        try Self.validate(timeToLive: timeToLive)
        advance(to: now)
        var chosen: [SliceID] = []
        var heldByHost = Dictionary(grouping: leases.values.filter { $0.host == host }, by: \.slice.address).mapValues(\.count)
        for _ in 0..<count {
            let candidates = pool.values.filter { !$0.draining }.compactMap { entry -> Placement.Candidate? in
                let free = freeSlices(of: entry.egress.address).filter { !chosen.contains($0) }
                return free.isEmpty ? nil : Placement.Candidate(
                    egress: entry.egress, free: free.count, heldByHost: heldByHost[entry.egress.address, default: 0])
            }
            guard let address = Placement.best(for: host, traits: traits, among: candidates) else {
                throw .noCapacity(wanted: count, granted: chosen.count, traits: traits.summary)
            }
            let slice = freeSlices(of: address).first { !chosen.contains($0) }!
            chosen.append(slice)
            heldByHost[address, default: 0] += 1
        }
        return chosen.map { grant($0, to: host, until: now + timeToLive, now: now) }
    }

    /// Extends a lease to `now + timeToLive`.
    public mutating func renew(_ id: Int64, host: String, timeToLive: Duration, now: Moment) throws(AllocationError) -> Lease {
        try Self.validate(timeToLive: timeToLive)
        advance(to: now)
        var lease = try owned(id, by: host)
        lease.expires = now + timeToLive
        leases[id] = lease
        states[lease.slice] = .leased(lease)
        return lease
    }

    /// Extends every lease of `host` still live at `now`, slices and prefixes, to
    /// `now + timeToLive`: what an agent sends each period, one request for all its leases.
    /// Returns them by id; none is not an error. Unlike the other changes it applies no other
    /// expiry or quarantine end: it only touches the caller's live leases, so stores can do it
    /// in one statement per kind.
    public mutating func renewAll(host: String, timeToLive: Duration, now: Moment) throws(AllocationError) -> HeldLeases {
        try Self.validate(timeToLive: timeToLive)
        let slices = leases(of: host).filter { $0.expires > now }.map { lease in
            var lease = lease
            lease.expires = now + timeToLive
            leases[lease.id] = lease
            states[lease.slice] = .leased(lease)
            return lease
        }
        let prefixes = prefixLeases(of: host).filter { $0.expires > now }.map { lease in
            var lease = lease
            lease.expires = now + timeToLive
            prefixLeases[lease.id] = lease
            prefixStates[lease.prefix] = .leased(lease)
            return lease
        }
        return HeldLeases(slices: slices, prefixes: prefixes)
    }

    /// Ends a lease now; its slice is quarantined before anyone else may have it.
    public mutating func release(_ id: Int64, host: String, now: Moment) throws(AllocationError) {
        advance(to: now)
        let lease = try owned(id, by: host)
        end(lease, at: now)
    }

    /// Applies expiries and quarantine ends up to `now`; returns the leases that expired.
    @discardableResult
    public mutating func advance(to now: Moment) -> [Lease] {
        let expired = leases.values.filter { $0.expires <= now }.sorted { $0.id < $1.id }
        for lease in expired { end(lease, at: lease.expires) }
        for (id, state) in states {
            if case .quarantined(let until) = state, until <= now {
                states[id] = pool[id.address]!.draining ? .draining : .free
            }
        }
        for lease in prefixLeases.values.filter({ $0.expires <= now }).sorted(by: { $0.id < $1.id }) { endPrefix(lease, at: lease.expires) }
        for (prefix, state) in prefixStates {
            if case .quarantined(let until) = state, until <= now { prefixStates[prefix] = nil }
        }
        return expired
    }

    // MARK: - Queries
    // They answer as of the last call that passed a time; call `advance(to:)` first to see
    // expiries up to now.

    public func state(of slice: SliceID) -> SliceState? { states[slice] }

    public func leases(of host: String) -> [Lease] { leases.values.filter { $0.host == host }.sorted { $0.id < $1.id } }

    public var allLeases: [Lease] { leases.values.sorted { $0.id < $1.id } }

    /// Who held `port` of `address` at `moment`, from the assignment log.
    public func who(address: IPv4Address, port: UInt16, at moment: Moment) -> [AssignmentRecord] {
        log.filter { $0.covers(address: address, port: port, at: moment) }
    }

    /// Slices per trait class and state.
    public func capacity() -> [Traits: Capacity] {
        var classes: [Traits: Capacity] = [:]
        for (id, state) in states {
            let traits = pool[id.address]!.egress.traits
            switch state {
            case .free: classes[traits, default: Capacity()].free += 1
            case .leased: classes[traits, default: Capacity()].leased += 1
            case .quarantined: classes[traits, default: Capacity()].quarantined += 1
            case .draining: classes[traits, default: Capacity()].draining += 1
            }
        }
        return classes
    }

    // MARK: - IPv6 prefixes

    /// Adds a pool prefix; no two pool prefixes overlap, so a sub-prefix belongs to one.
    public mutating func add(_ pool: PoolPrefix) throws(AllocationError) {
        guard prefixPool[pool.prefix] == nil else { throw .duplicatePrefix(pool.prefix) }
        if let existing = prefixPool.keys.sorted().first(where: { Self.overlap($0, pool.prefix) }) {
            throw .overlappingPrefix(pool.prefix, existing: existing)
        }
        prefixPool[pool.prefix] = pool
    }

    /// True when one of the prefixes contains the other.
    public static func overlap(_ a: IPv6Prefix, _ b: IPv6Prefix) -> Bool { a.contains(b.network) || b.contains(a.network) }

    /// No new prefix leases out of `prefix`; existing ones run out.
    public mutating func drain(_ prefix: IPv6Prefix, now: Moment) throws(AllocationError) {
        guard prefixPool[prefix] != nil else { throw .unknownPrefix(prefix) }
        advance(to: now)
        prefixPool[prefix]!.draining = true
    }

    /// Removes a pool prefix once no lease or quarantine remains in it.
    public mutating func remove(_ prefix: IPv6Prefix, now: Moment) throws(AllocationError) {
        guard prefixPool[prefix] != nil else { throw .unknownPrefix(prefix) }
        advance(to: now)
        let states = taken(in: prefix).map { prefixStates[$0]! }
        let leased = states.filter { if case .leased = $0 { true } else { false } }.count
        guard states.isEmpty else { throw .prefixInUse(prefix, leases: leased, quarantined: states.count - leased) }
        prefixPool[prefix] = nil
    }

    /// Leases `count` prefixes to `host` out of the pool prefixes whose traits best match
    /// `traits` (placed as slices are), each the first free sub-prefix from the host's start
    /// (`PoolPrefix.firstFree`); all or nothing.
    /// - Throws: `.noPrefixCapacity` when fewer than `count` prefixes are free for the request.
    public mutating func acquirePrefixes(
        host: String, traits: Traits, count: Int = 1, timeToLive: Duration, now: Moment
    ) throws(AllocationError) -> [PrefixLease] {
        try Self.validate(count: count)
        try Self.validate(timeToLive: timeToLive)
        advance(to: now)
        var chosen: [(prefix: IPv6Prefix, pool: IPv6Prefix)] = []
        var heldByHost = Dictionary(grouping: prefixLeases.values.filter { $0.host == host }, by: \.pool).mapValues(\.count)
        for _ in 0..<count {
            let candidates = prefixPool.values.filter { !$0.draining }.compactMap { pool -> Placement.Candidate<IPv6Prefix>? in
                let free = pool.freeCount(taken: taken(in: pool.prefix).count + chosen.filter { $0.pool == pool.prefix }.count)
                return free == 0 ? nil : Placement.Candidate(pool: pool, free: free, heldByHost: heldByHost[pool.prefix, default: 0])
            }
            guard let pool = Placement.best(for: host, traits: traits, among: candidates) else {
                throw .noPrefixCapacity(wanted: count, granted: chosen.count, traits: traits.summary)
            }
            let prefix = prefixPool[pool]!.firstFree(for: host, taken: taken(in: pool).union(chosen.filter { $0.pool == pool }.map(\.prefix)))!
            chosen.append((prefix, pool))
            heldByHost[pool, default: 0] += 1
        }
        return chosen.map { prefix, pool in
            let lease = PrefixLease(id: nextPrefixLeaseID, host: host, prefix: prefix, pool: pool, start: now, expires: now + timeToLive)
            nextPrefixLeaseID += 1
            prefixLeases[lease.id] = lease
            prefixStates[prefix] = .leased(lease)
            prefixLogIndex[lease.id] = prefixLog.count
            prefixLog.append(PrefixAssignmentRecord(leaseID: lease.id, host: host, prefix: prefix, start: now, end: nil))
            return lease
        }
    }

    /// Ends a prefix lease now; its prefix is quarantined before anyone else may have it.
    public mutating func releasePrefix(_ id: Int64, host: String, now: Moment) throws(AllocationError) {
        advance(to: now)
        let lease = try Self.owned(id, by: host, prefixLeases[id], holder: \.host, logged: prefixLog.contains { $0.leaseID == id })
        endPrefix(lease, at: now)
    }

    public func state(of prefix: IPv6Prefix) -> PrefixState? { prefixStates[prefix] }

    public func prefixLeases(of host: String) -> [PrefixLease] { prefixLeases.values.filter { $0.host == host }.sorted { $0.id < $1.id } }

    public var allPrefixLeases: [PrefixLease] { prefixLeases.values.sorted { $0.id < $1.id } }

    /// Who held the prefix covering `address` at `moment`, from the prefix assignment log.
    public func who(address: IPv6Address, at moment: Moment) -> [PrefixAssignmentRecord] {
        prefixLog.filter { $0.covers(address: address, at: moment) }
    }

    /// The slice table's prefix part: every leased or quarantined prefix, in address order.
    public var prefixEntries: [SliceTable.PrefixEntry] {
        prefixStates.sorted { $0.key < $1.key }.map { prefix, state in
            switch state {
            case .leased(let lease): SliceTable.PrefixEntry(prefix: prefix, state: .leased, host: lease.host)
            case .quarantined: SliceTable.PrefixEntry(prefix: prefix, state: .quarantined, host: nil)
            }
        }
    }

    /// The sub-prefixes of `pool` that are leased or quarantined.
    private func taken(in pool: IPv6Prefix) -> Set<IPv6Prefix> {
        Set(prefixStates.keys.filter { pool.contains($0.network) })
    }

    private mutating func endPrefix(_ lease: PrefixLease, at moment: Moment) {
        prefixLeases[lease.id] = nil
        prefixStates[lease.prefix] = .quarantined(until: moment + quarantine)
        prefixLog[prefixLogIndex[lease.id]!].end = moment
    }

    // MARK: - Internals

    /// A request may ask for 1 to 64 slices.
    public static func validate(count: Int) throws(AllocationError) {
        guard (1...64).contains(count) else { throw .badCount(count) }
    }

    /// Leases last from 10 s to a day.
    public static func validate(timeToLive: Duration) throws(AllocationError) {
        guard timeToLive >= .seconds(10) && timeToLive <= .seconds(86_400) else {
            throw .badTimeToLive(seconds: timeToLive.components.seconds)
        }
    }

    private func freeSlices(of address: IPv4Address) -> [SliceID] {
        states.filter { $0.key.address == address && $0.value == .free }.keys.sorted()
    }

    private func owned(_ id: Int64, by host: String) throws(AllocationError) -> Lease {
        try Self.owned(id, by: host, leases[id], holder: \.host, logged: log.contains { $0.leaseID == id })
    }

    /// A live lease of `host`'s; one that was logged but is no longer live has expired.
    private static func owned<Held>(
        _ id: Int64, by host: String, _ lease: Held?, holder: KeyPath<Held, String>, logged: @autoclosure () -> Bool
    ) throws(AllocationError) -> Held {
        guard let lease else { throw logged() ? .leaseExpired(id) : .unknownLease(id) }
        guard lease[keyPath: holder] == host else { throw .notYourLease(id, host: host) }
        return lease
    }

    private mutating func grant(_ slice: SliceID, to host: String, until expires: Moment, now: Moment) -> Lease {
        let ports = pool[slice.address]!.plan.slices[slice.index].ports
        let lease = Lease(id: nextLeaseID, host: host, slice: slice, ports: ports, start: now, expires: expires)
        nextLeaseID += 1
        leases[lease.id] = lease
        states[slice] = .leased(lease)
        logIndex[lease.id] = log.count
        log.append(AssignmentRecord(leaseID: lease.id, host: host, slice: slice, ports: ports, protocols: "tcp,udp", start: now, end: nil))
        return lease
    }

    private mutating func end(_ lease: Lease, at moment: Moment) {
        leases[lease.id] = nil
        states[lease.slice] = .quarantined(until: moment + quarantine)
        log[logIndex[lease.id]!].end = moment
    }
}

/// Where a new slice or prefix goes: the address (or pool prefix) whose traits are closest to
/// the wanted ones; among equally close places the one where the host holds the fewest leases
/// (so one place's loss hurts few of them), then the one with the most free, then a rendezvous
/// hash of host and place, so the choice is stable.
public enum Placement {
    public struct Candidate<Place: Hashable & Sendable>: Sendable {
        public let place: Place
        public let traits: Traits
        /// The place's rendezvous key.
        let key: UInt64
        public var free: Int
        public var heldByHost: Int
    }

    public static func best<Place>(for host: String, traits: Traits, among candidates: [Candidate<Place>]) -> Place? {
        Ranked.best(in: Ranked.ranks(for: host, traits: traits, candidates)).map { candidates[$0].place }
    }

    /// `count` places picked one after another among `candidates`, each pick taking one free
    /// unit from its place (so the next pick sees it fuller and held more by the host), as a
    /// store that reads its candidates once per request places it.
    /// - Returns: the picks in order; fewer than `count` when the candidates ran out.
    public static func pick<Place>(_ count: Int, for host: String, traits: Traits, from candidates: [Place: Candidate<Place>]) -> [Place] {
        let places = Array(candidates.values)
        var ranks = Ranked.ranks(for: host, traits: traits, places)
        var picks: [Place] = []
        while picks.count < count, let index = Ranked.best(in: ranks) {
            picks.append(places[index].place)
            ranks[index].free -= 1
            ranks[index].heldByHost += 1
        }
        return picks
    }

    /// A candidate's rank, with the parts no pick changes (closeness and rendezvous weight)
    /// worked out once: worked out again for every candidate on every pick, they were 7% of the
    /// SQLite writer's time in an acquire batch. Plain integers, so that finding the best
    /// copies no traits.
    private struct Ranked {
        let closeness: Int
        let weight: UInt64
        var free: Int
        var heldByHost: Int

        static func ranks<Place>(for host: String, traits: Traits, _ candidates: [Candidate<Place>]) -> [Ranked] {
            let hostKey = RendezvousHash.key(name: host)
            let wanted = TraitKeys(traits)
            return candidates.map { candidate in
                Ranked(closeness: Closeness(of: TraitKeys(candidate.traits), to: wanted).score,
                       weight: RendezvousHash.weight(client: hostKey, target: candidate.key), free: candidate.free, heldByHost: candidate.heldByHost)
            }
        }

        /// The index of the best rank with a free unit left; tuples compare field by field.
        static func best(in ranks: [Ranked]) -> Int? {
            var best: (rank: (Int, Int, Int, UInt64), index: Int)?
            for index in ranks.indices where ranks[index].free > 0 {
                let rank = (ranks[index].closeness, -ranks[index].heldByHost, ranks[index].free, ranks[index].weight)
                if best == nil || rank > best!.rank { best = (rank, index) }
            }
            return best?.index
        }
    }
}

extension Placement.Candidate where Place == IPv4Address {
    /// An address with `free` free slices, `heldByHost` of them leased to the asking host.
    public init(egress: EgressAddress, free: Int, heldByHost: Int) {
        self.init(place: egress.address, traits: egress.traits, key: RendezvousHash.key(egress.address), free: free, heldByHost: heldByHost)
    }
}

extension Placement.Candidate where Place == IPv6Prefix {
    /// A pool prefix with `free` free sub-prefixes, `heldByHost` of them leased to the asking host.
    public init(pool: PoolPrefix, free: Int, heldByHost: Int) {
        self.init(place: pool.prefix, traits: pool.traits, key: RendezvousHash.key(pool.prefix), free: free, heldByHost: heldByHost)
    }
}
