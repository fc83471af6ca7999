import Foundation
import Logging
import PortSliceCore
import PostgresNIO
import ServiceLifecycle
import Synchronization

/// Leases in a SQL database, with the rules of `AllocatorModel`: SQLite embedded, or
/// PostgreSQL shared by several allocator replicas.
///
/// Each slice of the fixed plan is one row with one state, so two leases or quarantines on the
/// same slice cannot exist: the primary key forbids it, not only the code; on PostgreSQL an
/// exclusion constraint also keeps the port ranges of one address's slices from overlapping.
/// Every change runs in one write transaction (see `SQLDialect.beginWrite`) and applies whole
/// or not at all. The assignment log is append-only: rows are inserted, and closed once.
///
/// While a PostgreSQL server cannot be reached, every operation fails within
/// `operationTimeout` with `DatabaseUnavailable`, and the next one connects again (to the
/// URL's servers in order). Run the store as a `Service` beside the API: on PostgreSQL it
/// listens for other replicas' changes to the slice table (see `versions`).
public final class SQLSliceStore: SliceStore, Service {
    let connection: any SQLConnection
    /// On SQLite (a file), a second connection that only reads: a token is looked up there
    /// without waiting for the writer, which with many hosts acquiring at once held the one
    /// connection for most of the time (see `principal(authenticatedBy:)`).
    let reader: (any SQLConnection)?
    /// On SQLite (a file), this process's claim to it, given up on `close`.
    private let ownership: DatabaseOwnership?
    let gate = TransactionGate()
    /// Traits by their stored text and back, kept by `traits(_:)` and `text(of:)`.
    let traitsByText = Mutex<[String: Traits]>([:])
    let textByTraits = Mutex<[Traits: String]>([:])
    private let renewals: Coalescer<Renewal, HeldLeases>
    /// Acquires waiting for the connection (SQLite); see `acquire` (SQLSliceStore+Acquire).
    let queuedAcquires = Mutex<[QueuedAcquire]>([])
    /// On SQLite, the free slices in memory, which acquires place from (see `FreeSliceMirror`).
    let freeSlices: FreeSliceMirror?
    let logger: Logger
    public let quarantine: Duration
    public let versions = TableVersionFeed()
    /// The version the current transaction moved the table to, published after its commit.
    let committedVersion = Mutex<Int64?>(nil)
    /// What the current transaction announced (`announce`), heard again after its commit.
    let announcedInTransaction = Mutex<[String]>([])
    let statements = Atomic<Int>(0)
    /// Tokens verified lately, by their SHA-256 (never the token itself), and the traits of
    /// pool addresses: what every renewal would otherwise ask the database for. Rotating or
    /// removing a host or edge, and removing an address, is announced to every replica.
    let verifiedTokens = HeardCache<String, Principal>(capacity: 200_000)
    let addressTraits = HeardCache<IPv4Address, Traits>(capacity: 200_000)
    /// The last report written per edge; see `recordApplied`.
    let edgeReports = Mutex<[String: (version: Int64, at: Moment)]>([:])
    /// The slice table as last read, and how many reads there have been; see `sliceTable()`.
    private let keptTable = Mutex<(table: SliceTable?, reads: Int)>((nil, 0))
    /// How long an operation may take, queueing included, before it fails as unavailable
    /// (PostgreSQL only: a local SQLite file is never away).
    public let operationTimeout: Duration
    /// What an allocator answering requests allows: a 503 well within 2 s.
    public static let defaultOperationTimeout = Duration.milliseconds(1500)
    /// Schema changes at start may wait behind other replicas' (and run `CREATE EXTENSION`).
    static let migrationTimeout = Duration.seconds(60)
    /// The channel replicas announce new slice-table versions on.
    static let notificationChannel = "portslice_slices"
    /// The PostgreSQL advisory lock that serialises writers.
    static let lockKey: Int64 = 0x706f_7274_736c_6963

    /// How long a renewal waits, by default, for others to be made with it: renewals are not
    /// urgent (a lease runs for minutes) and one statement for many hosts costs little more
    /// than one for a single host.
    public static let defaultRenewalWindow = Duration.milliseconds(100)

    init(connection: any SQLConnection, reader: (any SQLConnection)? = nil, ownership: DatabaseOwnership? = nil, quarantine: Duration,
         renewalWindow: Duration, operationTimeout: Duration = defaultOperationTimeout, logger: Logger) async throws {
        self.connection = connection
        self.reader = reader
        self.ownership = ownership
        self.quarantine = quarantine
        self.operationTimeout = operationTimeout
        self.logger = logger
        renewals = Coalescer(window: renewalWindow)
        switch connection.dialect {
        case .sqlite:
            // SQLite's schema has no free slices per class (see `sqliteOnly`): placement reads the mirror.
            guard let writer = connection as? SQLiteConnectionAdapter else { throw StoreError("a SQLite store needs SQLite's own connection") }
            let mirror = FreeSliceMirror()
            await writer.watchRows(of: "free_counts") { mirror.rowChanged($0) }
            freeSlices = mirror
        case .postgres:
            freeSlices = nil
        }
        try await migrate()
        versions.publish(try await withDatabase(timeout: Self.migrationTimeout) { try await self.readVersion() })
        // On PostgreSQL other replicas' changes are heard only once the listener runs.
        versions.setLive(connection.dialect == .sqlite)
    }

    /// Closes the reading connection, then the writer (the last to close removes the log).
    public func close() async throws {
        var readerFailure: (any Error)?
        do { try await reader?.close() } catch { readerFailure = error }
        // Given up once the file is closed (whatever closing it said), not before.
        defer { ownership?.release() }
        try await connection.close()
        if let readerFailure { throw readerFailure }
    }

    /// Statements sent to the database so far (by this store's operations; the listener's
    /// `LISTEN` is not counted).
    public var statementCount: Int { statements.load(ordering: .relaxed) }

    /// The PostgreSQL server process serving this store's connection (for measuring its CPU);
    /// nil for SQLite, which runs in this process.
    public func serverProcessID() async throws -> Int? {
        guard connection.dialect == .postgres else { return nil }
        return try await withDatabase { try await self.query("SELECT pg_backend_pid() AS pid").first?.integer("pid").map(Int.init) }
    }

    public func ping() async throws {
        try await withDatabase { try await self.run("SELECT 1") }
    }

    // MARK: - Schema

    /// Brings the schema up to date, inside the write lock, so replicas starting together
    /// apply each step once.
    private func migrate() async throws {
        try await transaction(timeout: Self.migrationTimeout) {
            try await self.run("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
            let applied = Set(try await self.query("SELECT version FROM schema_migrations").compactMap { $0.integer("version") })
            for migration in Self.migrations(self.connection.dialect) where !applied.contains(Int64(migration.version)) {
                for statement in migration.statements { try await self.run(statement) }
                try await self.run(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                    [.int(migration.version), .int(Int64(Date().timeIntervalSince1970))])
            }
        }
    }

    // MARK: - Pool

    public func add(_ egress: EgressAddress, plan: SlicePlan) async throws {
        let traits = try Self.json(egress.traits), planText = try Self.json(plan)
        let postgres = connection.dialect == .postgres
        // A statement per slice: a plan of thousands of small slices needs more than a
        // request's deadline, and adding addresses is the operator's, not a host's, hurry.
        try await transaction(timeout: Self.migrationTimeout) {
            guard try await self.poolRow(egress.address) == nil else { throw AllocationError.duplicateAddress(egress.address) }
            try await self.run(
                "INSERT INTO addresses (address, traits, plan) VALUES (?, ?, ?)",
                [.int(egress.address.bits), .text(traits), .text(planText)])
            for slice in plan.allocatable {
                var binds: [SQLValue] = [.int(egress.address.bits), .int(slice.index), .text(slice.ports.description)]
                if postgres { binds.append(.text(Self.multirange(slice.ports))) }
                try await self.run(
                    postgres
                        ? "INSERT INTO slices (address, slice_index, ports, state, port_ranges) VALUES (?, ?, ?, 'free', CAST(? AS int4multirange))"
                        : "INSERT INTO slices (address, slice_index, ports, state) VALUES (?, ?, ?, 'free')",
                    binds)
            }
            try await self.run(
                "INSERT INTO free_counts (address, traits, free) VALUES (?, ?, ?)",
                [.int(egress.address.bits), .text(traits), .int(plan.allocatable.count)])
            try await self.bumpVersion()
        }
    }

    public func drain(_ address: IPv4Address, now: Moment) async throws {
        try await transaction {
            guard try await self.poolRow(address) != nil else { throw AllocationError.unknownAddress(address) }
            try await self.advanceInTransaction(to: now)
            try await self.run("UPDATE addresses SET draining = 1 WHERE address = ?", [.int(address.bits)])
            try await self.run("UPDATE slices SET state = 'draining' WHERE address = ? AND state = 'free'", [.int(address.bits)])
            try await self.bumpVersion()
        }
    }

    public func remove(_ address: IPv4Address, now: Moment) async throws {
        try await transaction {
            guard try await self.poolRow(address) != nil else { throw AllocationError.unknownAddress(address) }
            try await self.advanceInTransaction(to: now)
            let counts = try await self.query(
                """
                SELECT CAST(COALESCE(SUM(CASE WHEN state = 'leased' THEN 1 ELSE 0 END), 0) AS BIGINT) AS leased,
                       CAST(COALESCE(SUM(CASE WHEN state = 'quarantined' THEN 1 ELSE 0 END), 0) AS BIGINT) AS quarantined
                FROM slices WHERE address = ?
                """, [.int(address.bits)])
            let leased = Int(counts.first?.integer("leased") ?? 0), quarantined = Int(counts.first?.integer("quarantined") ?? 0)
            guard leased == 0 && quarantined == 0 else {
                throw AllocationError.addressInUse(address, leases: leased, quarantined: quarantined)
            }
            // The assignment log keeps the address's history.
            try await self.run("DELETE FROM slices WHERE address = ?", [.int(address.bits)])
            try await self.run("DELETE FROM free_counts WHERE address = ?", [.int(address.bits)])
            try await self.run("DELETE FROM addresses WHERE address = ?", [.int(address.bits)])
            try await self.announce(Self.addressAnnouncement + String(address.bits))
            try await self.bumpVersion()
        }
    }

    // MARK: - Leases

    public func renew(_ id: Int64, host: String, timeToLive: Duration, now: Moment) async throws -> Lease {
        try AllocatorModel.validate(timeToLive: timeToLive)
        return try await transaction {
            let due = try await self.advanceInTransaction(to: now)
            var lease = try await self.owned(id, by: host)
            lease.expires = now + timeToLive
            try await self.run("UPDATE slices SET expires = ?, renewed = ? WHERE lease_id = ?",
                               [.integer(lease.expires.milliseconds), .integer(now.milliseconds), .integer(id)])
            if due.map({ lease.expires < $0 }) ?? true { try await self.lowerSliceExpiry(to: lease.expires) }
            return lease
        }
    }

    /// Renewals arriving within `renewalWindow` of each other are made together, two
    /// statements (slices, prefix leases) per lease time asked for: every host sends one each
    /// period, so they must be cheap.
    /// They are not a transaction with the expiry step first: leases that expired are left as
    /// they are (the next change or the reaper ends them), as the model does.
    public func renewAll(host: String, timeToLive: Duration, now: Moment) async throws -> HeldLeases {
        try AllocatorModel.validate(timeToLive: timeToLive)
        return try await renewals.submit(Renewal(host: host, timeToLive: timeToLive, now: now)) { try await self.renew($0) }
    }

    struct Renewal: Sendable {
        let host: String
        let timeToLive: Duration
        let now: Moment
    }

    /// Makes a batch of renewals at the latest of their times, which is when the batch runs:
    /// for each lease time asked for, one statement for slices and one for prefix leases.
    /// The hosts are one parameter (`SQLDialect.isIn(textList:)`), so the statements' text
    /// is the same for any batch and SQLite keeps them prepared: prepared anew for each
    /// batch's host count, they had been 7% of the writer's time in `bench alloc`'s renewal
    /// round.
    private func renew(_ batch: [Renewal]) async throws -> [HeldLeases] {
        let now = batch.map(\.now).max()!
        // A host renewing twice in one window gets the lease time it asked for last, as a
        // second statement would have given it.
        var expiry: [String: Moment] = [:]
        for renewal in batch { expiry[renewal.host] = now + renewal.timeToLive }
        let hostsByExpiry = Dictionary(grouping: expiry.keys) { expiry[$0]! }
        let renewed = try await withDatabase {
            var renewed: [String: HeldLeases] = [:]
            var earliest: Moment?
            for (expires, hosts) in hostsByExpiry {
                let hostList = try SQLValue.textList(hosts)
                let slices = try await self.query(
                    """
                    UPDATE slices SET expires = ?, renewed = ? WHERE state = 'leased' AND expires > ?
                    AND \(self.connection.dialect.isIn(textList: "host")) RETURNING \(Self.leaseColumns)
                    """,
                    [.integer(expires.milliseconds), .integer(now.milliseconds), .integer(now.milliseconds), hostList])
                for lease in try slices.map(Self.lease) { renewed[lease.host, default: HeldLeases()].slices.append(lease) }
                if !slices.isEmpty { earliest = min(earliest ?? expires, expires) }
                let prefixes = try await self.query(
                    """
                    UPDATE prefix_leases SET expires = ? WHERE state = 'leased' AND expires > ?
                    AND \(self.connection.dialect.isIn(textList: "host")) RETURNING \(Self.prefixLeaseColumns)
                    """,
                    [.integer(expires.milliseconds), .integer(now.milliseconds), hostList])
                for lease in try prefixes.map(Self.prefixLease) { renewed[lease.host, default: HeldLeases()].prefixes.append(lease) }
            }
            // A lease renewed for less time than it had left may now expire before the bound.
            // Lowered once the new expiries are written, so that a computation of the bound
            // running meanwhile either reads them or is lowered after it (`computeSliceExpiry`).
            if let earliest { try await self.lowerSliceExpiry(to: earliest) }
            return renewed
        }
        return batch.map { renewal in
            let held = renewed[renewal.host, default: HeldLeases()]
            return HeldLeases(slices: held.slices.sorted { $0.id < $1.id }, prefixes: held.prefixes.sorted { $0.id < $1.id })
        }
    }

    public func release(_ id: Int64, host: String, now: Moment) async throws {
        try await transaction {
            try await self.advanceInTransaction(to: now)
            _ = try await self.owned(id, by: host)
            try await self.end(.slices, leasesWhere: "lease_id = ?", [.integer(id)], at: now)
            try await self.bumpVersion()
        }
    }

    public func advance(to now: Moment) async throws {
        _ = try await transaction { try await self.advanceInTransaction(to: now) }
    }

    public func leases(of host: String) async throws -> [Lease] {
        try await withDatabase { try await self.leases(where: "s.host = ?", [.text(host)]) }
    }

    public func allLeases() async throws -> [Lease] {
        try await withDatabase { try await self.leases(where: "TRUE", []) }
    }

    /// An address's traits never change while it is in the pool, so they are kept once read
    /// (while changes are heard) until it is removed.
    public func traits(of addresses: Set<IPv4Address>) async throws -> [IPv4Address: Traits] {
        let cached = versions.isLive
        var traits: [IPv4Address: Traits] = [:]
        var missing: [IPv4Address] = []
        for address in addresses {
            if cached, let known = addressTraits.value(for: address) { traits[address] = known } else { missing.append(address) }
        }
        guard !missing.isEmpty else { return traits }
        let generation = addressTraits.generation
        let toRead = missing
        let rows = try await withDatabase {
            try await self.query("SELECT address, traits FROM addresses WHERE address IN (\(Self.placeholders(toRead.count)))",
                                 toRead.map { .int($0.bits) })
        }
        for row in rows {
            let address = Self.address(row), read = try self.traits(row.text("traits"))
            traits[address] = read
            if cached { addressTraits.keep(read, for: address, ifStill: generation) }
        }
        return traits
    }

    public func who(address: IPv4Address, port: UInt16, at moment: Moment) async throws -> [AssignmentRecord] {
        let rows = try await withDatabase {
            try await self.query(
                "SELECT * FROM assignments WHERE address = ? AND started <= ? AND (ended IS NULL OR ended > ?) ORDER BY lease_id",
                [.int(address.bits), .integer(moment.milliseconds), .integer(moment.milliseconds)])
        }
        return try rows.map { row in
            AssignmentRecord(
                leaseID: row.integer("lease_id") ?? 0, host: row.text("host") ?? "",
                slice: SliceID(address: Self.address(row), index: Int(row.integer("slice_index") ?? 0)),
                ports: try Self.ports(row), protocols: row.text("protocols") ?? "",
                start: Moment(milliseconds: row.integer("started") ?? 0),
                end: row.integer("ended").map { Moment(milliseconds: $0) })
        }.filter { $0.ports.contains(port) }
    }

    // MARK: - Slice table

    /// Every waiting long poll reads the table when it changes, thousands at once: the table
    /// of the newest version this process has heard of is read from the database once and
    /// kept. Only while changes are heard (`versions.isLive`) is a kept table known to be
    /// current.
    /// A read that began after a call arrived serves that call too, live or not, so polls
    /// woken together share one read even while the listener reconnects.
    public func sliceTable() async throws -> SliceTable {
        let arrived = keptTable.withLock { $0.reads }
        if let current = currentTable() { return current }
        return try await withDatabase {
            if let current = self.currentTable() { return current }
            let (kept, reads) = self.keptTable.withLock { ($0.table, $0.reads) }
            if let kept, reads > arrived + 1 { return kept }
            let table = try await self.readSliceTable()
            self.keptTable.withLock { $0 = (table, $0.reads + 1) }
            return table
        }
    }

    private func currentTable() -> SliceTable? {
        guard versions.isLive, let kept = keptTable.withLock({ $0.table }), kept.version >= versions.version else { return nil }
        return kept
    }

    private func readSliceTable() async throws -> SliceTable {
        let version = try await readVersion()
        let rows = try await query("SELECT address, slice_index, ports, state, host FROM slices ORDER BY address, slice_index")
        let prefixRows = try await query("SELECT network, length, state, host FROM prefix_leases ORDER BY network")
        return SliceTable(version: version, slices: try rows.map { row in
            SliceTable.Entry(
                address: Self.address(row), index: Int(row.integer("slice_index") ?? 0), ports: try Self.ports(row),
                state: try Self.status(row), host: row.text("host"))
        }, prefixes: try prefixRows.map { row in
            SliceTable.PrefixEntry(prefix: try Self.prefix(row), state: try Self.status(row), host: row.text("host"))
        })
    }

    public func tableVersion() async throws -> Int64 {
        try await withDatabase { try await self.readVersion() }
    }

    private func readVersion() async throws -> Int64 {
        try await query("SELECT version FROM table_version WHERE id = 1").first?.integer("version") ?? 0
    }

    public func capacity() async throws -> [SliceCount] {
        let rows = try await withDatabase {
            try await self.query(
                "SELECT a.traits, s.state, COUNT(*) AS slices FROM slices s JOIN addresses a ON a.address = s.address GROUP BY a.traits, s.state")
        }
        // Equal traits may be spelled by different JSON texts over time; merge after decoding.
        var counts: [SliceCountKey: Int] = [:]
        for row in rows {
            let key = SliceCountKey(traits: try Self.decode(Traits.self, row.text("traits")), state: try Self.status(row))
            counts[key, default: 0] += Int(row.integer("slices") ?? 0)
        }
        return counts.map { SliceCount(traits: $0.key.traits, state: $0.key.state, count: $0.value) }
            .sorted { ($0.traits.summary, $0.state.rawValue) < ($1.traits.summary, $1.state.rawValue) }
    }

    private struct SliceCountKey: Hashable {
        let traits: Traits
        let state: SliceStatus
    }

    /// Marks a change edges must learn of: who owns which ports, or which addresses exist.
    /// On PostgreSQL the new version is announced to every replica's listener, which hears it
    /// when the transaction commits (and never if it rolls back).
    func bumpVersion(by changes: Int = 1) async throws {
        let bump = "UPDATE table_version SET version = version + ? WHERE id = 1 RETURNING version"
        let rows = switch connection.dialect {
        case .sqlite: try await query(bump, [.int(changes)])
        case .postgres:
            try await query(
                "WITH bumped AS (\(bump)) SELECT version, pg_notify('\(Self.notificationChannel)', CAST(version AS TEXT)) FROM bumped", [.int(changes)])
        }
        committedVersion.withLock { $0 = rows.first?.integer("version") }
    }

    // MARK: - Internals

    /// Ends expired leases (slices and prefixes) at their expiry, quarantining them from then
    /// on, and frees what has finished its quarantine: the same steps as
    /// `AllocatorModel.advance`. A free prefix has no row, so its quarantine ends by deletion.
    /// - Returns: the moment from which a leased slice may be due (`slice_expiry.due`), nil
    ///   when none is leased: a change that gives a slice an earlier expiry lowers it.
    @discardableResult
    func advanceInTransaction(to now: Moment) async throws -> Moment? {
        // Every change comes here first and mostly finds nothing due: one statement says so.
        // Slices are found due by their lower bound, prefixes and quarantines by index probes.
        let expired = "state = 'leased' AND expires <= ?"
        let ended = "state = 'quarantined' AND quarantine_until <= ?"
        let check = try await query(
            """
            SELECT (SELECT due FROM slice_expiry) AS due, CASE WHEN EXISTS (SELECT 1 FROM prefix_leases WHERE \(expired))
                OR EXISTS (SELECT 1 FROM slices WHERE \(ended)) OR EXISTS (SELECT 1 FROM prefix_leases WHERE \(ended)) THEN 1 ELSE 0 END AS others
            """,
            Array(repeating: .integer(now.milliseconds), count: 3))
        var due = check.first?.integer("due").map(Moment.init(milliseconds:))
        var othersDue = check.first?.integer("others") == 1
        if let earliest = due, earliest <= now {
            due = try await computeSliceExpiry()
            if let earliest = due, earliest <= now {
                try await end(.slices, leasesWhere: expired, [.integer(now.milliseconds)], at: nil)
                try await bumpVersion()
                due = try await computeSliceExpiry()
                // Their quarantine may be over too, when `now` is long past their expiry.
                othersDue = true
            }
        }
        guard othersDue else { return due }
        if try await !query("SELECT lease_id FROM prefix_leases WHERE \(expired)", [.integer(now.milliseconds)]).isEmpty {
            try await end(.prefixes, leasesWhere: expired, [.integer(now.milliseconds)], at: nil)
            try await bumpVersion()
        }
        let released = try await query(
            """
            UPDATE slices SET state = CASE WHEN (SELECT draining FROM addresses a WHERE a.address = slices.address) = 1
                THEN 'draining' ELSE 'free' END, quarantine_until = NULL
            WHERE \(ended) RETURNING slice_index
            """, [.integer(now.milliseconds)])
        let freedPrefixes = try await query(
            "DELETE FROM prefix_leases WHERE \(ended) RETURNING network", [.integer(now.milliseconds)])
        if !released.isEmpty || !freedPrefixes.isEmpty { try await bumpVersion() }
        return due
    }

    /// Sets `slice_expiry.due` to the earliest expiry of a leased slice (one pass over the
    /// slices, made when the kept bound is reached: about once per lease time) and returns it.
    /// One statement, so that on PostgreSQL a renewal lowering the bound meanwhile either is
    /// seen by its read or waits for its write and lowers what it wrote.
    private func computeSliceExpiry() async throws -> Moment? {
        try await query("UPDATE slice_expiry SET due = (SELECT MIN(expires) FROM slices WHERE state = 'leased') RETURNING due")
            .first?.integer("due").map(Moment.init(milliseconds:))
    }

    /// Keeps `slice_expiry.due` at or before `expiry`, just given to a leased slice.
    func lowerSliceExpiry(to expiry: Moment) async throws {
        try await run("UPDATE slice_expiry SET due = ? WHERE due IS NULL OR due > ?", [.integer(expiry.milliseconds), .integer(expiry.milliseconds)])
    }

    /// Where leases of one kind live: their rows (one per slice, or per prefix not free), their
    /// assignment log, and the columns that only a leased row has.
    enum LeaseTable: CaseIterable {
        case slices, prefixes

        var rows: String { self == .slices ? "slices" : "prefix_leases" }
        var log: String { self == .slices ? "assignments" : "prefix_assignments" }
        var leaseOnlyColumns: String {
            self == .slices ? "lease_id = NULL, host = NULL, expires = NULL, started = NULL, renewed = NULL, wanted = NULL"
                : "lease_id = NULL, host = NULL, expires = NULL, started = NULL"
        }
    }

    /// Closes the log records of the matching leased rows of `table` and quarantines them, at
    /// `moment`, or at each lease's own expiry when `moment` is nil.
    func end(_ table: LeaseTable, leasesWhere condition: String, _ binds: [SQLValue], at moment: Moment?) async throws {
        let quarantineMilliseconds = quarantine.components.seconds * 1000
        let leased = "SELECT lease_id FROM \(table.rows) WHERE \(condition)"
        if let moment {
            try await run("UPDATE \(table.log) SET ended = ? WHERE lease_id IN (\(leased))", [.integer(moment.milliseconds)] + binds)
            try await run(
                "UPDATE \(table.rows) SET state = 'quarantined', quarantine_until = ?, \(table.leaseOnlyColumns) WHERE \(condition)",
                [.integer(moment.milliseconds + quarantineMilliseconds)] + binds)
        } else {
            try await run(
                "UPDATE \(table.log) SET ended = (SELECT s.expires FROM \(table.rows) s WHERE s.lease_id = \(table.log).lease_id) WHERE lease_id IN (\(leased))",
                binds)
            try await run(
                "UPDATE \(table.rows) SET state = 'quarantined', quarantine_until = expires + \(quarantineMilliseconds), \(table.leaseOnlyColumns) WHERE \(condition)",
                binds)
        }
    }

    /// Read by the lease id alone, which only a leased row has (a CHECK says so, for slices
    /// and prefixes alike): a query that also named the state matched the partial indexes of
    /// leased rows, and with statistics taken before a run of acquires PostgreSQL read one of
    /// those whole instead of the id's unique index (10 ms a release, in half the runs of
    /// `bench alloc`).
    private func owned(_ id: Int64, by host: String) async throws -> Lease {
        let lease = try await query("SELECT \(Self.leaseColumns) FROM slices WHERE lease_id = ?", [.integer(id)]).map(Self.lease).first
        return try await owned(id, by: host, in: .slices, lease, holder: \.host)
    }

    /// `lease` (read by id from `table`) when `host` holds it; a lease id that is logged but
    /// no longer live has expired.
    func owned<Held>(_ id: Int64, by host: String, in table: LeaseTable, _ lease: Held?, holder: KeyPath<Held, String>) async throws -> Held {
        guard let lease else {
            let known = try await query("SELECT lease_id FROM \(table.log) WHERE lease_id = ?", [.integer(id)])
            throw known.isEmpty ? AllocationError.unknownLease(id) : AllocationError.leaseExpired(id)
        }
        guard lease[keyPath: holder] == host else { throw AllocationError.notYourLease(id, host: host) }
        return lease
    }

    /// Leased slices; the caller holds the gate.
    private func leases(where condition: String, _ binds: [SQLValue]) async throws -> [Lease] {
        try await query("SELECT \(Self.leaseColumns) FROM slices s WHERE s.state = 'leased' AND \(condition) ORDER BY s.lease_id", binds)
            .map(Self.lease)
    }

    /// The columns of a leased slice that make its `Lease`.
    private static let leaseColumns = "lease_id, host, address, slice_index, ports, expires, started"

    private static func lease(_ row: SQLRow) throws -> Lease {
        Lease(
            id: row.integer("lease_id") ?? 0, host: row.text("host") ?? "",
            slice: SliceID(address: address(row), index: Int(row.integer("slice_index") ?? 0)),
            ports: try ports(row),
            start: Moment(milliseconds: row.integer("started") ?? 0),
            expires: Moment(milliseconds: row.integer("expires") ?? 0))
    }

    private func poolRow(_ address: IPv4Address) async throws -> SQLRow? {
        try await query("SELECT address FROM addresses WHERE address = ?", [.int(address.bits)]).first
    }
}
