/// The allocator's rules, held in memory: which slices are free, leased or quarantined, how a
/// request is placed, and the assignment log. Stores implement the same rules in a database;
/// this model is the reference their tests compare against.
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
                    egress: entry.egress, freeSlices: free.count, heldByHost: heldByHost[entry.egress.address, default: 0])
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

    /// Extends every lease of `host` still live at `now` to `now + timeToLive`: what an agent
    /// sends each period, one request for all its slices. Returns them by id; none is not an
    /// error. Unlike the other changes it applies no other expiry or quarantine end: it only
    /// touches the caller's live leases, so stores can do it in one statement.
    public mutating func renewAll(host: String, timeToLive: Duration, now: Moment) throws(AllocationError) -> [Lease] {
        try Self.validate(timeToLive: timeToLive)
        return leases(of: host).filter { $0.expires > now }.map { lease in
            var lease = lease
            lease.expires = now + timeToLive
            leases[lease.id] = lease
            states[lease.slice] = .leased(lease)
            return lease
        }
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
        guard let lease = leases[id] else {
            throw log.contains { $0.leaseID == id } ? .leaseExpired(id) : .unknownLease(id)
        }
        guard lease.host == host else { throw .notYourLease(id, host: host) }
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

/// Where a new slice goes: the address whose traits are closest to the wanted ones; among
/// equally close addresses the one where the host holds the fewest slices (so one address's
/// loss hurts few of its slices), then the one with the most free slices, then a rendezvous
/// hash of host and address, so the choice is stable.
public enum Placement {
    public struct Candidate: Sendable {
        public let egress: EgressAddress
        public var freeSlices: Int
        public var heldByHost: Int

        public init(egress: EgressAddress, freeSlices: Int, heldByHost: Int) {
            self.egress = egress
            self.freeSlices = freeSlices
            self.heldByHost = heldByHost
        }
    }

    public static func best(for host: String, traits: Traits, among candidates: [Candidate]) -> IPv4Address? {
        let hostKey = RendezvousHash.key(name: host)
        let wanted = TraitKeys(traits)
        // Each candidate's rank is computed once; tuples compare field by field.
        var best: (rank: (Int, Int, Int, UInt64), address: IPv4Address)?
        for candidate in candidates {
            let rank = (
                Closeness(of: TraitKeys(candidate.egress.traits), to: wanted).score, -candidate.heldByHost, candidate.freeSlices,
                RendezvousHash.weight(client: hostKey, target: RendezvousHash.key(candidate.egress.address)))
            if best == nil || rank > best!.rank { best = (rank, candidate.egress.address) }
        }
        return best?.address
    }
}
