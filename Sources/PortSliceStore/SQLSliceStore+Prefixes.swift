import PortSliceCore

// IPv6 pool prefixes and the prefixes hosts lease out of them, with the rules of
// `AllocatorModel`'s prefix part. Prefixes are stored as 32 hex digits (see migration 7).
extension SQLSliceStore {
    public func add(_ pool: PoolPrefix) async throws {
        let traits = try Self.json(pool.traits)
        try await transaction {
            let overlapping = try await self.query(
                "SELECT network, length FROM pool_prefixes WHERE network <= ? AND last >= ? ORDER BY network LIMIT 1",
                [.text(Self.hex(pool.prefix.last)), .text(Self.hex(pool.prefix.first))])
            if let row = overlapping.first {
                let existing = try Self.prefix(row)
                throw existing == pool.prefix ? AllocationError.duplicatePrefix(pool.prefix) : AllocationError.overlappingPrefix(pool.prefix, existing: existing)
            }
            try await self.run(
                "INSERT INTO pool_prefixes (network, last, length, lease_length, traits) VALUES (?, ?, ?, ?, ?)",
                [.text(Self.hex(pool.prefix.first)), .text(Self.hex(pool.prefix.last)), .int(pool.prefix.length), .int(pool.leaseLength), .text(traits)])
        }
    }

    public func drain(_ prefix: IPv6Prefix, now: Moment) async throws {
        try await transaction {
            try await self.advanceInTransaction(to: now)
            guard try await !self.query("UPDATE pool_prefixes SET draining = 1 WHERE network = ? AND length = ? RETURNING network",
                                        Self.binds(prefix)).isEmpty else {
                throw AllocationError.unknownPrefix(prefix)
            }
        }
    }

    public func remove(_ prefix: IPv6Prefix, now: Moment) async throws {
        try await transaction {
            guard try await !self.query("SELECT network FROM pool_prefixes WHERE network = ? AND length = ?", Self.binds(prefix)).isEmpty else {
                throw AllocationError.unknownPrefix(prefix)
            }
            try await self.advanceInTransaction(to: now)
            let counts = try await self.query(
                """
                SELECT CAST(COALESCE(SUM(CASE WHEN state = 'leased' THEN 1 ELSE 0 END), 0) AS BIGINT) AS leased,
                       CAST(COUNT(*) AS BIGINT) AS taken
                FROM prefix_leases WHERE pool = ?
                """, [.text(Self.hex(prefix.first))])
            let leased = Int(counts.first?.integer("leased") ?? 0), taken = Int(counts.first?.integer("taken") ?? 0)
            guard taken == 0 else { throw AllocationError.prefixInUse(prefix, leases: leased, quarantined: taken - leased) }
            // The prefix assignment log keeps the prefix's history.
            try await self.run("DELETE FROM pool_prefixes WHERE network = ?", [.text(Self.hex(prefix.first))])
        }
    }

    /// Every pool prefix, in address order.
    public func prefixes() async throws -> [PoolPrefix] {
        let rows = try await withDatabase { try await self.query("SELECT * FROM pool_prefixes ORDER BY network") }
        return try rows.map(poolPrefix)
    }

    /// Placement as `AllocatorModel.acquirePrefixes`: it needs only how many sub-prefixes of
    /// each pool prefix are taken and how many of them the host holds (one grouped read),
    /// and then the taken sub-prefixes of the pool prefixes picked.
    public func acquirePrefixes(host: String, traits: Traits, count: Int, timeToLive: Duration, now: Moment) async throws -> [PrefixLease] {
        try AllocatorModel.validate(count: count)
        try AllocatorModel.validate(timeToLive: timeToLive)
        return try await transaction {
            try await self.advanceInTransaction(to: now)
            let pools = try await self.query("SELECT * FROM pool_prefixes WHERE draining = 0").map(self.poolPrefix)
            var taken: [IPv6Prefix: (all: Int, held: Int)] = [:]
            for row in try await self.query(
                """
                SELECT pool, pool_length, CAST(COUNT(*) AS BIGINT) AS taken, CAST(SUM(CASE WHEN host = ? THEN 1 ELSE 0 END) AS BIGINT) AS held
                FROM prefix_leases GROUP BY pool, pool_length
                """, [.text(host)]) {
                taken[try Self.prefix(network: row.text("pool"), length: row.integer("pool_length"))] =
                    (Int(row.integer("taken") ?? 0), Int(row.integer("held") ?? 0))
            }
            let candidates = Dictionary(uniqueKeysWithValues: pools.map { pool in
                (pool.prefix, Placement.Candidate(pool: pool, free: pool.freeCount(taken: taken[pool.prefix]?.all ?? 0),
                                                  heldByHost: taken[pool.prefix]?.held ?? 0))
            }.filter { $0.1.free > 0 })
            let picks = Placement.pick(count, for: host, traits: traits, from: candidates)
            guard picks.count == count else {
                throw AllocationError.noPrefixCapacity(wanted: count, granted: picks.count, traits: traits.summary)
            }
            let picked = Array(Set(picks))
            var takenPrefixes: [IPv6Prefix: Set<IPv6Prefix>] = [:]
            for row in try await self.query(
                "SELECT network, length, pool, pool_length FROM prefix_leases WHERE pool IN (\(Self.placeholders(picked.count)))",
                picked.map { .text(Self.hex($0.first)) }) {
                takenPrefixes[try Self.prefix(network: row.text("pool"), length: row.integer("pool_length")), default: []].insert(try Self.prefix(row))
            }
            let byPrefix = Dictionary(uniqueKeysWithValues: pools.map { ($0.prefix, $0) })
            let chosen = try picks.map { pool in
                guard let prefix = byPrefix[pool]!.firstFree(for: host, taken: takenPrefixes[pool, default: []]) else {
                    throw StoreError("pool prefix \(pool) counted a free prefix but has none")
                }
                takenPrefixes[pool, default: []].insert(prefix)
                return (prefix: prefix, pool: pool)
            }
            // One log record per prefix, then one row each; lease ids follow the records.
            var ids: [IPv6Prefix: Int64] = [:]
            for row in try await self.query(
                "INSERT INTO prefix_assignments (host, network, last, length, started) VALUES \(Array(repeating: "(?, ?, ?, ?, ?)", count: chosen.count).joined(separator: ", ")) RETURNING lease_id, network, length",
                chosen.flatMap { prefix, _ -> [SQLValue] in
                    [.text(host), .text(Self.hex(prefix.first)), .text(Self.hex(prefix.last)), .int(prefix.length), .integer(now.milliseconds)]
                }) {
                ids[try Self.prefix(row)] = row.integer("lease_id")
            }
            let leases = try chosen.map { prefix, pool in
                guard let id = ids[prefix] else { throw StoreError("the new log record of \(prefix) returned no lease id") }
                return PrefixLease(id: id, host: host, prefix: prefix, pool: pool, start: now, expires: now + timeToLive)
            }
            try await self.run(
                "INSERT INTO prefix_leases (network, pool, pool_length, length, state, lease_id, host, started, expires) VALUES \(Array(repeating: "(?, ?, ?, ?, 'leased', ?, ?, ?, ?)", count: leases.count).joined(separator: ", "))",
                leases.flatMap { lease -> [SQLValue] in
                    [.text(Self.hex(lease.prefix.first)), .text(Self.hex(lease.pool.first)), .int(lease.pool.length), .int(lease.prefix.length), .integer(lease.id),
                     .text(host), .integer(now.milliseconds), .integer(lease.expires.milliseconds)]
                })
            try await self.bumpVersion()
            return leases
        }
    }

    public func releasePrefix(_ id: Int64, host: String, now: Moment) async throws {
        try await transaction {
            try await self.advanceInTransaction(to: now)
            // By the lease id alone (see `owned(_:by:)`).
            let lease = try await self.query("SELECT \(Self.prefixLeaseColumns) FROM prefix_leases WHERE lease_id = ?", [.integer(id)]).map(Self.prefixLease).first
            _ = try await self.owned(id, by: host, in: .prefixes, lease, holder: \.host)
            try await self.end(.prefixes, leasesWhere: "lease_id = ?", [.integer(id)], at: now)
            try await self.bumpVersion()
        }
    }

    public func prefixLeases(of host: String) async throws -> [PrefixLease] {
        try await withDatabase { try await self.prefixLeases(where: "host = ?", [.text(host)]) }
    }

    public func allPrefixLeases() async throws -> [PrefixLease] {
        try await withDatabase { try await self.prefixLeases(where: "TRUE", []) }
    }

    public func who(address: IPv6Address, at moment: Moment) async throws -> [PrefixAssignmentRecord] {
        let rows = try await withDatabase {
            try await self.query(
                "SELECT * FROM prefix_assignments WHERE network <= ? AND last >= ? AND started <= ? AND (ended IS NULL OR ended > ?) ORDER BY lease_id",
                [.text(Self.hex(address)), .text(Self.hex(address)), .integer(moment.milliseconds), .integer(moment.milliseconds)])
        }
        return try rows.map { row in
            PrefixAssignmentRecord(
                leaseID: row.integer("lease_id") ?? 0, host: row.text("host") ?? "", prefix: try Self.prefix(row),
                start: Moment(milliseconds: row.integer("started") ?? 0), end: row.integer("ended").map { Moment(milliseconds: $0) })
        }
    }

    // MARK: - Rows

    /// Leased prefixes; the caller holds the gate.
    private func prefixLeases(where condition: String, _ binds: [SQLValue]) async throws -> [PrefixLease] {
        try await query("SELECT \(Self.prefixLeaseColumns) FROM prefix_leases WHERE state = 'leased' AND \(condition) ORDER BY lease_id", binds)
            .map(Self.prefixLease)
    }

    /// The columns of a leased prefix row that make its `PrefixLease`.
    static let prefixLeaseColumns = "lease_id, host, network, length, pool, pool_length, started, expires"

    static func prefixLease(_ row: SQLRow) throws -> PrefixLease {
        PrefixLease(
            id: row.integer("lease_id") ?? 0, host: row.text("host") ?? "", prefix: try prefix(row),
            pool: try prefix(network: row.text("pool"), length: row.integer("pool_length")),
            start: Moment(milliseconds: row.integer("started") ?? 0), expires: Moment(milliseconds: row.integer("expires") ?? 0))
    }

    private func poolPrefix(_ row: SQLRow) throws -> PoolPrefix {
        do {
            return try PoolPrefix(prefix: try Self.prefix(row), traits: try traits(row.text("traits")),
                                  leaseLength: Int(row.integer("lease_length") ?? 0), draining: row.integer("draining") == 1)
        } catch let error as AllocationError {
            throw StoreError("a stored pool prefix breaks the schema's checks: \(error)")
        }
    }

    /// 32 lowercase hex digits: text that sorts as the address does.
    static func hex(_ address: IPv6Address) -> String {
        let digits = String(address.bits, radix: 16)
        return String(repeating: "0", count: 32 - digits.count) + digits
    }

    static func bits(_ text: String?) throws -> UInt128 {
        guard let text, text.count == 32, let bits = UInt128(text, radix: 16) else {
            throw StoreError("a stored IPv6 prefix '\(text ?? "")' is not 32 hex digits")
        }
        return bits
    }

    /// The prefix of a row with `network` and `length` columns.
    static func prefix(_ row: SQLRow) throws -> IPv6Prefix {
        try prefix(network: row.text("network"), length: row.integer("length"))
    }

    static func prefix(network: String?, length: Int64?) throws -> IPv6Prefix {
        let length = Int(length ?? -1)
        guard (0...128).contains(length) else { throw StoreError("a stored IPv6 prefix length \(length) is out of range") }
        do {
            return try IPv6Prefix(network: IPv6Address(bits: try bits(network)), length: length)
        } catch {
            throw StoreError("a stored IPv6 prefix has host bits set: \(error)")
        }
    }

    /// `network` and `length` of a pool prefix, for statements that name one.
    static func binds(_ prefix: IPv6Prefix) -> [SQLValue] { [.text(hex(prefix.first)), .int(prefix.length)] }
}
