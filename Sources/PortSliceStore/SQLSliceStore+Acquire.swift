import PortSliceCore
import Synchronization

/// Acquiring slices: placement by the rules of `AllocatorModel.acquire`, and on SQLite the
/// acquires that queue behind one another made together in one transaction.
extension SQLSliceStore {
    /// On SQLite, acquires that queue while another is being made are made together, in one
    /// transaction (see `acquireTogether`): a commit waits for `fsync`,
    /// which with many hosts asking at once took more time than the acquires themselves.
    public func acquire(host: String, traits: Traits, count: Int, timeToLive: Duration, now: Moment) async throws -> [Lease] {
        try AllocatorModel.validate(count: count)
        try AllocatorModel.validate(timeToLive: timeToLive)
        guard connection.dialect == .sqlite else {
            return try await transaction { try await self.placeAlone(host: host, traits: traits, count: count, timeToLive: timeToLive, now: now) }
        }
        let request = QueuedAcquire(host: host, traits: traits, count: count, timeToLive: timeToLive, now: now)
        queuedAcquires.withLock { $0.append(request) }
        do {
            return try await withDatabase {
                // Made by an earlier holder of the connection, which took queued acquires in
                // their order; more than a batch may be ahead of this one, since acquires
                // reach the gate in an order of their own.
                while request.outcome == nil {
                    let batch = self.queuedAcquires.withLock { queued in
                        let taken = queued.prefix(Self.mostAcquiresTogether)
                        queued.removeFirst(taken.count)
                        return Array(taken)
                    }
                    guard !batch.isEmpty else { throw StoreError("an acquire was queued but not made") }
                    await self.acquireTogether(batch)
                }
                return try request.outcome!.get()
            }
        } catch is CancellationError {
            // Cancelled while waiting for the connection: an acquire still queued is dropped
            // and never made; one that a holder of the connection took is being made, and the
            // caller must learn what it was given.
            let dropped = queuedAcquires.withLock { queued in
                queued.firstIndex { $0 === request }.map { queued.remove(at: $0) } != nil
            }
            if dropped { throw CancellationError() }
            return try await request.settled().get()
        }
    }

    /// Acquires made in one transaction at most: enough for every client of a busy allocator.
    static let mostAcquiresTogether = 64

    /// An acquire waiting for the connection, and once made, its leases or why it failed.
    final class QueuedAcquire: Sendable {
        let host: String, traits: Traits, count: Int, timeToLive: Duration, now: Moment
        private let made = Mutex<(outcome: Result<[Lease], any Error>?, waiting: CheckedContinuation<Result<[Lease], any Error>, Never>?)>((nil, nil))

        init(host: String, traits: Traits, count: Int, timeToLive: Duration, now: Moment) {
            (self.host, self.traits, self.count, self.timeToLive, self.now) = (host, traits, count, timeToLive, now)
        }

        var outcome: Result<[Lease], any Error>? { made.withLock { $0.outcome } }

        func settle(_ outcome: Result<[Lease], any Error>) {
            let waiting = made.withLock { made in
                made.outcome = outcome
                defer { made.waiting = nil }
                return made.waiting
            }
            waiting?.resume(returning: outcome)
        }

        /// The outcome, once the holder of the connection that took this acquire settles it.
        func settled() async -> Result<[Lease], any Error> {
            await withCheckedContinuation { waiting in
                let outcome = made.withLock { made in
                    if made.outcome == nil { made.waiting = waiting }
                    return made.outcome
                }
                if let outcome { waiting.resume(returning: outcome) }
            }
        }
    }

    /// Makes `batch` in its order in one write transaction, exactly as if each acquire had had
    /// a transaction of its own: one refused for want of capacity writes nothing of its own
    /// (`place` refuses before its first write) and the others go on. When a statement fails
    /// partway through an acquire, or the commit fails, nothing of the batch stays and each
    /// is made again alone, so that the failure is that acquire's only. Every outcome is
    /// settled once its commit is made. The caller holds the gate.
    ///
    /// No savepoint per acquire: SQLite copies every page an acquire first touches into the
    /// savepoint's journal, and with the savepoint's two statements that was 7% of the
    /// writer's time in a batch.
    private func acquireTogether(_ batch: [QueuedAcquire]) async {
        let outcomes: [Result<[Lease], any Error>]
        do {
            outcomes = try await inTransaction {
                var outcomes: [Result<[Lease], any Error>] = []
                var grants = 0
                for request in batch {
                    do {
                        outcomes.append(.success(try await self.place(
                            host: request.host, traits: request.traits, count: request.count, timeToLive: request.timeToLive, now: request.now,
                            grants: &grants)))
                    } catch let refusal as AllocationError {
                        outcomes.append(.failure(refusal))
                    }
                }
                // One statement moves the table version by one per grant.
                if grants > 0 { try await self.bumpVersion(by: grants) }
                return outcomes
            }
        } catch {
            for request in batch {
                do {
                    request.settle(.success(try await inTransaction {
                        try await self.placeAlone(
                            host: request.host, traits: request.traits, count: request.count, timeToLive: request.timeToLive, now: request.now)
                    }))
                } catch {
                    request.settle(.failure(error))
                }
            }
            return
        }
        for (request, outcome) in zip(batch, outcomes) { request.settle(outcome) }
    }

    /// One acquire in a transaction of its own making.
    private func placeAlone(host: String, traits: Traits, count: Int, timeToLive: Duration, now: Moment) async throws -> [Lease] {
        var grants = 0
        let leases = try await place(host: host, traits: traits, count: count, timeToLive: timeToLive, now: now, grants: &grants)
        try await bumpVersion(by: grants)
        return leases
    }

    /// One acquire, inside a write transaction: the steps of `AllocatorModel.acquire`, but for
    /// moving the table version, which the caller does once for all it made (`grants` counts
    /// them). The only `AllocationError` it throws (no capacity) comes before its first write;
    /// the expiry step before that is whole by itself, as the model's is.
    private func place(host: String, traits: Traits, count: Int, timeToLive: Duration, now: Moment, grants: inout Int) async throws -> [Lease] {
        let due = try await self.advanceInTransaction(to: now)
        if let freeSlices { try await refresh(freeSlices) }
        // Placement ranks by trait closeness first, so only the closest trait classes that
        // together have `count` free slices (and any class as close as the last of them)
        // can receive a slice: only their addresses are candidates, with how many slices
        // this host holds on each. Free slices never lie on a draining address.
        let classes = try await freeByClass()
            .map { entry in (text: entry.traits, closeness: Closeness(of: try self.traits(entry.traits), to: traits), free: entry.free) }
            .sorted { $0.closeness > $1.closeness }
        var wanted: [String] = []
        var freeInWanted = 0
        var lastCloseness: Closeness?
        for trait in classes {
            if freeInWanted >= count, let lastCloseness, trait.closeness < lastCloseness { break }
            wanted.append(trait.text)
            freeInWanted += trait.free
            lastCloseness = trait.closeness
        }
        // Two statements rather than one joining them: SQLite prepared the joined one again on
        // every run (its plan depended on the bound host), which cost more than the statement.
        // The host goes in through a cast for the same reason: compared as it is with the
        // column of a partial index, it made SQLite prepare this one again on every acquire
        // too (found with `SQLITE_STMTSTATUS_REPREPARE`); the plan is the same index search.
        var held: [IPv4Address: Int] = [:]
        for row in try await self.query(
            "SELECT address, COUNT(*) AS held FROM slices WHERE host = CAST(? AS TEXT) AND state = 'leased' GROUP BY address", [.text(host)]) {
            held[Self.address(row)] = Int(row.integer("held") ?? 0)
        }
        var candidates: [IPv4Address: Placement.Candidate<IPv4Address>] = [:]
        for (text, addresses) in try await freeAddresses(in: wanted) {
            let traits = try self.traits(text)
            for (address, free) in addresses {
                candidates[address] = Placement.Candidate(
                    egress: EgressAddress(address: address, traits: traits), free: free, heldByHost: held[address, default: 0])
            }
        }
        let picks = Placement.pick(count, for: host, traits: traits, from: candidates)
        guard picks.count == count else { throw AllocationError.noCapacity(wanted: count, granted: picks.count, traits: traits.summary) }
        // Each address's lowest free slices, as many as were picked from it, granted in the
        // order they were picked, as the model does.
        let lowestFree = try await self.lowestFree(Dictionary(grouping: picks, by: { $0 }).mapValues(\.count))
        var taken: [IPv4Address: Int] = [:]
        let chosen = try picks.map { address in
            let next = taken[address, default: 0]
            guard let free = lowestFree[address], next < free.count else {
                throw StoreError("free slices of \(address) counted but not found: the free_counts triggers are missing")
            }
            taken[address] = next + 1
            return free[next]
        }
        // One log record per slice and one update for all of them; lease ids follow the
        // order of the records, which is the order of the picks.
        let records = Array(repeating: "(?, ?, ?, ?, 'tcp,udp', ?)", count: chosen.count).joined(separator: ", ")
        var ids: [SliceID: Int64] = [:]
        for row in try await self.query(
            "INSERT INTO assignments (host, address, slice_index, ports, protocols, started) VALUES \(records) RETURNING lease_id, address, slice_index",
            chosen.flatMap { slice, ports -> [SQLValue] in
                [.text(host), .int(slice.address.bits), .int(slice.index), .text(ports.description), .integer(now.milliseconds)]
            }) {
            ids[SliceID(address: Self.address(row), index: Int(row.integer("slice_index") ?? 0))] = row.integer("lease_id")
        }
        let expires = now + timeToLive
        let leases = try chosen.map { slice, ports in
            guard let id = ids[slice] else { throw StoreError("the new log record of \(slice) returned no lease id") }
            return Lease(id: id, host: host, slice: slice, ports: ports, start: now, expires: expires)
        }
        let slices = leases.map { _ in "(address = ? AND slice_index = ?)" }
        // Every chosen slice must have been free: with free slices kept in memory, one that
        // was not would be leased twice, so the statement says which it leased.
        let leased = try await self.query(
            """
            UPDATE slices SET state = 'leased', host = ?, expires = ?, started = ?, renewed = ?, wanted = ?,
                lease_id = CASE \(leases.map { _ in "WHEN address = ? AND slice_index = ? THEN ?" }.joined(separator: " ")) END
            WHERE state = 'free' AND (\(slices.joined(separator: " OR ")))
            RETURNING slice_index
            """,
            [.text(host), .integer(expires.milliseconds), .integer(now.milliseconds), .integer(now.milliseconds), .text(try self.text(of: traits))]
                + leases.flatMap { [.int($0.slice.address.bits), .int($0.slice.index), .integer($0.id)] }
                + leases.flatMap { [.int($0.slice.address.bits), .int($0.slice.index)] })
        guard leased.count == leases.count else {
            throw StoreError("\(leases.count - leased.count) of the slices chosen for \(host) were not free; nothing of this acquire was made")
        }
        freeSlices?.granted(leases.map(\.slice))
        if due.map({ expires < $0 }) ?? true { try await self.lowerSliceExpiry(to: expires) }
        grants += 1
        return leases
    }

    // MARK: - What placement reads of the free slices

    /// Reads again what `mirror` lacks: every address, or those whose free slices changed.
    private func refresh(_ mirror: FreeSliceMirror) async throws {
        switch mirror.staleness {
        case .none: return
        case .everything: mirror.replaceAll(with: try await readFreeSlices(of: nil))
        case .addresses(let addresses): mirror.replace(addresses, with: try await readFreeSlices(of: addresses))
        }
    }

    /// Every address of `addresses` (of the pool when nil) that has a `free_counts` row, with
    /// its free slices in index order, through the primary keys (SQLite keeps no index of free
    /// slices, see `sqliteOnly`).
    private func readFreeSlices(of addresses: [IPv4Address]?) async throws -> [IPv4Address: FreeSliceMirror.Address] {
        let among = addresses.map { "address IN (\(Self.placeholders($0.count)))" }
        let binds = addresses?.map { SQLValue.int($0.bits) } ?? []
        var read: [IPv4Address: FreeSliceMirror.Address] = [:]
        for row in try await query("SELECT address, traits FROM free_counts" + (among.map { " WHERE " + $0 } ?? ""), binds) {
            read[Self.address(row)] = FreeSliceMirror.Address(traits: row.text("traits") ?? "", free: [])
        }
        let free = "SELECT address, slice_index, ports FROM slices WHERE state = 'free'" + (among.map { " AND " + $0 } ?? "")
        for row in try await query(free + " ORDER BY address, slice_index", binds) {
            read[Self.address(row)]?.free.append((Int(row.integer("slice_index") ?? 0), try Self.ports(row)))
        }
        return read
    }

    // On SQLite from the free slices kept in memory (its schema keeps no sums per class, see
    // `sqliteOnly`), on PostgreSQL from the database, where every replica changes them.

    /// The trait classes that have a free slice, with how many.
    private func freeByClass() async throws -> [(traits: String, free: Int)] {
        if let freeSlices { return freeSlices.freeByClass() }
        return try await query("SELECT traits, free FROM class_free_counts WHERE free > 0").map { row in
            (row.text("traits") ?? "", Int(row.integer("free") ?? 0))
        }
    }

    /// The addresses of `classes` that have a free slice, with how many, by class.
    private func freeAddresses(in classes: [String]) async throws -> [String: [IPv4Address: Int]] {
        if let freeSlices { return Dictionary(uniqueKeysWithValues: classes.map { ($0, freeSlices.addresses(in: $0)) }) }
        guard !classes.isEmpty else { return [:] }
        var found: [String: [IPv4Address: Int]] = [:]
        for row in try await query(
            "SELECT address, traits, free FROM free_counts WHERE free > 0 AND traits IN (\(Self.placeholders(classes.count)))",
            classes.map { .text($0) }) {
            found[row.text("traits") ?? "", default: [:]][Self.address(row)] = Int(row.integer("free") ?? 0)
        }
        return found
    }

    /// The lowest free slices of each address of `picked`, as many as it says, in index order.
    private func lowestFree(_ picked: [IPv4Address: Int]) async throws -> [IPv4Address: [(slice: SliceID, ports: PortSet)]] {
        if let freeSlices {
            return Dictionary(uniqueKeysWithValues: picked.map { ($0.key, freeSlices.lowestFree(of: $0.key, count: $0.value)) })
        }
        // PostgreSQL only (SQLite places from memory). One search of the free slices' index per
        // address (a window over all of them, ranked and sorted, took three times as long). The
        // order is asked for: a compound statement promises none.
        let ordered = picked.sorted { $0.key.bits < $1.key.bits }
        var lowestFree: [IPv4Address: [(slice: SliceID, ports: PortSet)]] = [:]
        for row in try await query(
            ordered.indices.map { index in
                """
                SELECT address, slice_index, ports FROM (SELECT address, slice_index, ports FROM slices
                    WHERE state = 'free' AND address = ? ORDER BY slice_index LIMIT ?) AS lowest\(index)
                """
            }.joined(separator: " UNION ALL ") + " ORDER BY address, slice_index",
            ordered.flatMap { [.int($0.key.bits), .int($0.value)] }) {
            let address = Self.address(row)
            lowestFree[address, default: []].append((SliceID(address: address, index: Int(row.integer("slice_index") ?? 0)), try Self.ports(row)))
        }
        return lowestFree
    }
}
