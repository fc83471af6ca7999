import Foundation
import PortSliceCore
import SQLiteNIO

/// The embedded store: one SQLite file (or memory), no server to run.
///
/// Each slice of the fixed plan is one row with one state, so two leases or quarantines on the
/// same ports cannot exist: the primary key forbids it, not only the code. Changes run in
/// `BEGIN IMMEDIATE` transactions, which also serialise several processes sharing the file.
public final class SQLiteSliceStore: SliceStore {
    private let connection: SQLiteConnection
    private let gate = TransactionGate()
    public let quarantine: Duration

    private init(connection: SQLiteConnection, quarantine: Duration) {
        self.connection = connection
        self.quarantine = quarantine
    }

    /// Opens (creating if needed) the database at `path`, or an in-memory one, and brings its
    /// schema up to date.
    /// - Throws: `AllocationError.quarantineTooShort` below 120 s; `StoreError` when the file
    ///   cannot be opened or migrated.
    public static func open(path: String?, quarantine: Duration = .seconds(240)) async throws -> SQLiteSliceStore {
        try AllocatorModel.validate(quarantine: quarantine)
        let connection: SQLiteConnection
        do {
            connection = try await SQLiteConnection.open(storage: path.map { .file(path: $0) } ?? .memory)
        } catch {
            throw StoreError("cannot open the SQLite database \(path ?? ":memory:"): \(error)")
        }
        let store = SQLiteSliceStore(connection: connection, quarantine: quarantine)
        try await store.migrate()
        return store
    }

    public func close() async throws { try await connection.close() }

    // MARK: - Schema

    /// Versioned schema steps; a step never changes once released.
    static let migrations: [(version: Int, statements: [String])] = [
        (1, [
            """
            CREATE TABLE addresses (
                address INTEGER PRIMARY KEY,
                traits TEXT NOT NULL,
                plan TEXT NOT NULL,
                draining INTEGER NOT NULL DEFAULT 0 CHECK (draining IN (0, 1)))
            """,
            """
            CREATE TABLE slices (
                address INTEGER NOT NULL REFERENCES addresses(address),
                slice_index INTEGER NOT NULL,
                ports TEXT NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('free', 'leased', 'quarantined', 'draining')),
                lease_id INTEGER UNIQUE,
                host TEXT,
                expires INTEGER,
                quarantine_until INTEGER,
                PRIMARY KEY (address, slice_index),
                CHECK ((state = 'leased') = (lease_id IS NOT NULL AND host IS NOT NULL AND expires IS NOT NULL)),
                CHECK ((state = 'quarantined') = (quarantine_until IS NOT NULL)))
            """,
            """
            CREATE TABLE assignments (
                lease_id INTEGER PRIMARY KEY AUTOINCREMENT,
                host TEXT NOT NULL,
                address INTEGER NOT NULL,
                slice_index INTEGER NOT NULL,
                ports TEXT NOT NULL,
                protocols TEXT NOT NULL,
                started INTEGER NOT NULL,
                ended INTEGER CHECK (ended IS NULL OR ended >= started))
            """,
            "CREATE INDEX assignments_by_address ON assignments (address, started)",
        ]),
    ]

    private func migrate() async throws {
        try await run("PRAGMA busy_timeout = 5000")
        try await run("PRAGMA foreign_keys = ON")
        try await run("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")
        try await transaction {
            let applied = Set(try await self.query("SELECT version FROM schema_migrations").compactMap { $0.column("version")?.integer })
            for migration in Self.migrations where !applied.contains(migration.version) {
                for statement in migration.statements { try await self.run(statement) }
                try await self.run(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                    [.integer(migration.version), .integer(Int(Date().timeIntervalSince1970))])
            }
        }
    }

    // MARK: - Pool

    public func add(_ egress: EgressAddress, plan: SlicePlan) async throws {
        let traits = try Self.json(egress.traits), planText = try Self.json(plan)
        try await transaction {
            guard try await self.poolRow(egress.address) == nil else { throw AllocationError.duplicateAddress(egress.address) }
            try await self.run(
                "INSERT INTO addresses (address, traits, plan) VALUES (?, ?, ?)",
                [.integer(Int(egress.address.bits)), .text(traits), .text(planText)])
            for slice in plan.allocatable {
                try await self.run(
                    "INSERT INTO slices (address, slice_index, ports, state) VALUES (?, ?, ?, 'free')",
                    [.integer(Int(egress.address.bits)), .integer(slice.index), .text(slice.ports.description)])
            }
        }
    }

    public func drain(_ address: IPv4Address, now: Moment) async throws {
        try await transaction {
            guard try await self.poolRow(address) != nil else { throw AllocationError.unknownAddress(address) }
            try await self.advanceInTransaction(to: now)
            try await self.run("UPDATE addresses SET draining = 1 WHERE address = ?", [.integer(Int(address.bits))])
            try await self.run("UPDATE slices SET state = 'draining' WHERE address = ? AND state = 'free'", [.integer(Int(address.bits))])
        }
    }

    public func remove(_ address: IPv4Address, now: Moment) async throws {
        try await transaction {
            guard try await self.poolRow(address) != nil else { throw AllocationError.unknownAddress(address) }
            try await self.advanceInTransaction(to: now)
            let counts = try await self.query(
                "SELECT SUM(state = 'leased') AS leased, SUM(state = 'quarantined') AS quarantined FROM slices WHERE address = ?",
                [.integer(Int(address.bits))])
            let leased = counts.first?.column("leased")?.integer ?? 0
            let quarantined = counts.first?.column("quarantined")?.integer ?? 0
            guard leased == 0 && quarantined == 0 else {
                throw AllocationError.addressInUse(address, leases: leased, quarantined: quarantined)
            }
            // The assignment log keeps the address's history.
            try await self.run("DELETE FROM slices WHERE address = ?", [.integer(Int(address.bits))])
            try await self.run("DELETE FROM addresses WHERE address = ?", [.integer(Int(address.bits))])
        }
    }

    // MARK: - Leases

    public func acquire(host: String, traits: Traits, count: Int, timeToLive: Duration, now: Moment) async throws -> [Lease] {
        try AllocatorModel.validate(count: count)
        try AllocatorModel.validate(timeToLive: timeToLive)
        return try await transaction {
            try await self.advanceInTransaction(to: now)
            var addressTraits: [IPv4Address: Traits] = [:]
            for row in try await self.query("SELECT address, traits FROM addresses WHERE draining = 0") {
                addressTraits[Self.address(row)] = try Self.decode(Traits.self, row.column("traits")?.string)
            }
            var free: [IPv4Address: [(index: Int, ports: PortSet)]] = [:]
            for row in try await self.query("SELECT address, slice_index, ports FROM slices WHERE state = 'free' ORDER BY address, slice_index") {
                free[Self.address(row), default: []].append((row.column("slice_index")?.integer ?? 0, try Self.ports(row)))
            }
            var held: [IPv4Address: Int] = [:]
            for row in try await self.query(
                "SELECT address, COUNT(*) AS held FROM slices WHERE state = 'leased' AND host = ? GROUP BY address", [.text(host)]) {
                held[Self.address(row)] = row.column("held")?.integer ?? 0
            }
            var chosen: [(slice: SliceID, ports: PortSet)] = []
            for _ in 0..<count {
                let candidates = addressTraits.compactMap { address, traits -> Placement.Candidate? in
                    let slices = free[address] ?? []
                    return slices.isEmpty ? nil : Placement.Candidate(
                        egress: EgressAddress(address: address, traits: traits), freeSlices: slices.count, heldByHost: held[address, default: 0])
                }
                guard let address = Placement.best(for: host, traits: traits, among: candidates) else {
                    throw AllocationError.noCapacity(wanted: count, granted: chosen.count, traits: traits.summary)
                }
                let slice = free[address]!.removeFirst()
                chosen.append((SliceID(address: address, index: slice.index), slice.ports))
                held[address, default: 0] += 1
            }
            var leases: [Lease] = []
            let expires = now + timeToLive
            for (slice, ports) in chosen {
                try await self.run(
                    "INSERT INTO assignments (host, address, slice_index, ports, protocols, started) VALUES (?, ?, ?, ?, 'tcp,udp', ?)",
                    [.text(host), .integer(Int(slice.address.bits)), .integer(slice.index), .text(ports.description), .integer(Int(now.milliseconds))])
                let id = Int64(try await self.connection.lastAutoincrementID())
                try await self.run(
                    "UPDATE slices SET state = 'leased', lease_id = ?, host = ?, expires = ? WHERE address = ? AND slice_index = ? AND state = 'free'",
                    [.integer(Int(id)), .text(host), .integer(Int(expires.milliseconds)), .integer(Int(slice.address.bits)), .integer(slice.index)])
                leases.append(Lease(id: id, host: host, slice: slice, ports: ports, start: now, expires: expires))
            }
            return leases
        }
    }

    public func renew(_ id: Int64, host: String, timeToLive: Duration, now: Moment) async throws -> Lease {
        try AllocatorModel.validate(timeToLive: timeToLive)
        return try await transaction {
            try await self.advanceInTransaction(to: now)
            var lease = try await self.owned(id, by: host)
            lease.expires = now + timeToLive
            try await self.run("UPDATE slices SET expires = ? WHERE lease_id = ?", [.integer(Int(lease.expires.milliseconds)), .integer(Int(id))])
            return lease
        }
    }

    public func release(_ id: Int64, host: String, now: Moment) async throws {
        try await transaction {
            try await self.advanceInTransaction(to: now)
            _ = try await self.owned(id, by: host)
            try await self.end(leaseWhere: "lease_id = ?", [.integer(Int(id))], at: .integer(Int(now.milliseconds)))
        }
    }

    public func advance(to now: Moment) async throws {
        try await transaction { try await self.advanceInTransaction(to: now) }
    }

    public func leases(of host: String) async throws -> [Lease] {
        try await leases(where: "s.host = ?", [.text(host)])
    }

    public func allLeases() async throws -> [Lease] {
        try await leases(where: "1", [])
    }

    public func who(address: IPv4Address, port: UInt16, at moment: Moment) async throws -> [AssignmentRecord] {
        let rows = try await gate.run {
            try await self.query(
                "SELECT * FROM assignments WHERE address = ? AND started <= ? AND (ended IS NULL OR ended > ?) ORDER BY lease_id",
                [.integer(Int(address.bits)), .integer(Int(moment.milliseconds)), .integer(Int(moment.milliseconds))])
        }
        return try rows.map { row in
            AssignmentRecord(
                leaseID: Int64(row.column("lease_id")?.integer ?? 0), host: row.column("host")?.string ?? "",
                slice: SliceID(address: Self.address(row), index: row.column("slice_index")?.integer ?? 0),
                ports: try Self.ports(row), protocols: row.column("protocols")?.string ?? "",
                start: Moment(milliseconds: Int64(row.column("started")?.integer ?? 0)),
                end: row.column("ended")?.integer.map { Moment(milliseconds: Int64($0)) })
        }.filter { $0.ports.contains(port) }
    }

    // MARK: - Internals

    /// Ends expired leases at their expiry, quarantining their slices from then on, and frees
    /// the slices whose quarantine is over: the same steps as `AllocatorModel.advance`.
    private func advanceInTransaction(to now: Moment) async throws {
        let moment = SQLiteData.integer(Int(now.milliseconds))
        try await end(leaseWhere: "state = 'leased' AND expires <= ?", [moment], at: nil)
        try await run(
            """
            UPDATE slices SET state = CASE WHEN (SELECT draining FROM addresses a WHERE a.address = slices.address) = 1
                THEN 'draining' ELSE 'free' END, quarantine_until = NULL
            WHERE state = 'quarantined' AND quarantine_until <= ?
            """, [moment])
    }

    /// Closes the log records of the matching leased slices and quarantines the slices, at
    /// `moment`, or at each lease's own expiry when `moment` is nil.
    private func end(leaseWhere condition: String, _ binds: [SQLiteData], at moment: SQLiteData?) async throws {
        let endedAt = moment.map { _ in "?" } ?? "expires"
        let quarantineMilliseconds = quarantine.components.seconds * 1000
        try await run(
            "UPDATE assignments SET ended = (SELECT \(endedAt) FROM slices s WHERE s.lease_id = assignments.lease_id) "
                + "WHERE lease_id IN (SELECT lease_id FROM slices WHERE \(condition))",
            (moment.map { [$0] } ?? []) + binds)
        try await run(
            "UPDATE slices SET state = 'quarantined', quarantine_until = \(endedAt) + \(quarantineMilliseconds), "
                + "lease_id = NULL, host = NULL, expires = NULL WHERE \(condition)",
            (moment.map { [$0] } ?? []) + binds)
    }

    private func owned(_ id: Int64, by host: String) async throws -> Lease {
        let leases = try await leases(where: "s.lease_id = ?", [.integer(Int(id))], locked: true)
        guard let lease = leases.first else {
            let known = try await query("SELECT 1 FROM assignments WHERE lease_id = ?", [.integer(Int(id))])
            throw known.isEmpty ? AllocationError.unknownLease(id) : AllocationError.leaseExpired(id)
        }
        guard lease.host == host else { throw AllocationError.notYourLease(id, host: host) }
        return lease
    }

    /// Leased slices with their log records; `locked` when already inside a transaction.
    private func leases(where condition: String, _ binds: [SQLiteData], locked: Bool = false) async throws -> [Lease] {
        let sql = """
            SELECT s.lease_id, s.host, s.address, s.slice_index, s.ports, s.expires, a.started
            FROM slices s JOIN assignments a ON a.lease_id = s.lease_id
            WHERE s.state = 'leased' AND \(condition) ORDER BY s.lease_id
            """
        let rows = locked ? try await query(sql, binds) : try await gate.run { try await self.query(sql, binds) }
        return try rows.map { row in
            Lease(
                id: Int64(row.column("lease_id")?.integer ?? 0), host: row.column("host")?.string ?? "",
                slice: SliceID(address: Self.address(row), index: row.column("slice_index")?.integer ?? 0),
                ports: try Self.ports(row),
                start: Moment(milliseconds: Int64(row.column("started")?.integer ?? 0)),
                expires: Moment(milliseconds: Int64(row.column("expires")?.integer ?? 0)))
        }
    }

    private func poolRow(_ address: IPv4Address) async throws -> SQLiteRow? {
        try await query("SELECT address FROM addresses WHERE address = ?", [.integer(Int(address.bits))]).first
    }

    /// Runs `body` in one `BEGIN IMMEDIATE` transaction, rolled back on any error.
    private func transaction<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await gate.run {
            try await self.run("BEGIN IMMEDIATE")
            do {
                let result = try await body()
                try await self.run("COMMIT")
                return result
            } catch {
                try? await self.run("ROLLBACK")
                throw error
            }
        }
    }

    private func query(_ sql: String, _ binds: [SQLiteData] = []) async throws -> [SQLiteRow] {
        do {
            return try await connection.query(sql, binds)
        } catch {
            throw StoreError("SQLite: \(error) in \(sql.prefix(80))")
        }
    }

    private func run(_ sql: String, _ binds: [SQLiteData] = []) async throws {
        _ = try await query(sql, binds)
    }

    private static func address(_ row: SQLiteRow) -> IPv4Address {
        IPv4Address(bits: UInt32(truncatingIfNeeded: row.column("address")?.integer ?? 0))
    }

    private static func ports(_ row: SQLiteRow) throws -> PortSet {
        try PortSet(parsing: row.column("ports")?.string ?? "")
    }

    private static func json(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    private static func decode<T: Decodable>(_ type: T.Type, _ text: String?) throws -> T {
        guard let text else { throw StoreError("a stored \(T.self) is missing") }
        return try JSONDecoder().decode(T.self, from: Data(text.utf8))
    }
}
