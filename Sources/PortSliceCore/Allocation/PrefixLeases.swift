/// An IPv6 prefix of the egress pool with its traits, and the length of the prefixes leased
/// out of it. IPv6 is not scarce, so it is not cut into port slices: each host gets a prefix
/// of its own (a /64 by default) and each client an address in it.
public struct PoolPrefix: Hashable, Sendable, Codable {
    public let prefix: IPv6Prefix
    public let traits: Traits
    /// The length of each leased sub-prefix.
    public let leaseLength: Int
    /// No new leases; existing ones run out.
    public var draining: Bool

    /// What hosts expect: SLAAC and most host stacks assume a /64 per link, and a /64 per
    /// customer is what providers hand out, so nothing longer is leased.
    public static let defaultLeaseLength = 64
    public static let longestLeaseLength = 64

    /// Why `length`, given as `name` (an option or setting), can be no prefix's lease length;
    /// nil when some prefix could be leased out in it. What `serve` and `pool import` check
    /// before reading any prefix, so that a wrong value is refused even with none to apply it to.
    public static func refusal(ofLeaseLength length: Int, as name: String) -> String? {
        guard !(1...longestLeaseLength).contains(length) else { return nil }
        return "\(name) \(length) must be from 1 to \(longestLeaseLength): hosts expect a /64 (SLAAC), and a /64 per host is what providers hand out"
    }

    /// - Throws: `AllocationError.badLeaseLength` unless `leaseLength` is longer than the
    ///   prefix and at most 64.
    public init(prefix: IPv6Prefix, traits: Traits, leaseLength: Int = defaultLeaseLength, draining: Bool = false) throws(AllocationError) {
        guard leaseLength > Int(prefix.length) && leaseLength <= Self.longestLeaseLength else {
            throw .badLeaseLength(leaseLength, prefix: prefix)
        }
        self.prefix = prefix
        self.traits = traits
        self.leaseLength = leaseLength
        self.draining = draining
    }

    /// How many prefixes of `leaseLength` it holds (at most 2^64: a /0 cut into /64s).
    public var subPrefixCount: UInt128 { UInt128(1) << (leaseLength - Int(prefix.length)) }

    /// The `index`-th sub-prefix, in address order.
    public func subPrefix(_ index: UInt128) -> IPv6Prefix {
        IPv6Prefix(containing: IPv6Address(bits: prefix.network.bits | index << (128 - leaseLength)), length: leaseLength)
    }

    /// Where `host`'s search for a free sub-prefix starts: a keyed hash of the host's name
    /// (keyed by this prefix, with a hash fixed across processes) modulo the number of
    /// sub-prefixes. Hosts spread over the prefix, and a host that comes back after its
    /// quarantine ran out tends to get the same prefix again.
    public func startIndex(for host: String) -> UInt128 {
        UInt128(RendezvousHash.weight(client: RendezvousHash.key(name: host), target: RendezvousHash.key(prefix))) % subPrefixCount
    }

    /// The first sub-prefix at or after `host`'s start (wrapping round) that is not in
    /// `taken` (its sub-prefixes that are leased or quarantined); nil when every one is. A sub-prefix is free unless a
    /// lease or quarantine says otherwise, so this walks at most `taken.count + 1` steps and
    /// never lists the 65,536 /64s of a /48.
    public func firstFree(for host: String, taken: Set<IPv6Prefix>) -> IPv6Prefix? {
        let count = subPrefixCount
        guard UInt128(taken.count) < count else { return nil }
        var index = startIndex(for: host)
        while taken.contains(subPrefix(index)) { index = (index + 1) % count }
        return subPrefix(index)
    }

    /// How many sub-prefixes are free when `taken` are not, for placement (saturating).
    public func freeCount(taken: Int) -> Int { Int(clamping: subPrefixCount - UInt128(taken)) }
}

/// A prefix held by one host until `expires`, cut from the pool prefix `pool`.
public struct PrefixLease: Hashable, Sendable, Codable {
    public let id: Int64
    public let host: String
    public let prefix: IPv6Prefix
    public let pool: IPv6Prefix
    public let start: Moment
    public var expires: Moment

    public init(id: Int64, host: String, prefix: IPv6Prefix, pool: IPv6Prefix, start: Moment, expires: Moment) {
        self.id = id
        self.host = host
        self.prefix = prefix
        self.pool = pool
        self.start = start
        self.expires = expires
    }
}

/// What a sub-prefix that is not free is doing: the same states a slice has, less free and
/// draining (a free sub-prefix has no record at all).
public enum PrefixState: Hashable, Sendable {
    case leased(PrefixLease)
    /// Released or expired; nobody may have it before `until`, as for slices.
    case quarantined(until: Moment)
}

/// One line of the prefix assignment log: who held which prefix from `start` until `end`
/// (nil while held). Every address in the prefix, every port, both transports.
public struct PrefixAssignmentRecord: Hashable, Sendable, Codable {
    public let leaseID: Int64
    public let host: String
    public let prefix: IPv6Prefix
    public let start: Moment
    public var end: Moment?

    public init(leaseID: Int64, host: String, prefix: IPv6Prefix, start: Moment, end: Moment?) {
        self.leaseID = leaseID
        self.host = host
        self.prefix = prefix
        self.start = start
        self.end = end
    }

    /// True when the record's host held `address` at `moment`.
    public func covers(address: IPv6Address, at moment: Moment) -> Bool {
        prefix.contains(address) && start <= moment && (end.map { moment < $0 } ?? true)
    }
}

/// The leases of one host, slices and prefixes: what one renewal answers.
public struct HeldLeases: Hashable, Sendable {
    public var slices: [Lease]
    public var prefixes: [PrefixLease]

    public init(slices: [Lease] = [], prefixes: [PrefixLease] = []) {
        self.slices = slices
        self.prefixes = prefixes
    }
}
