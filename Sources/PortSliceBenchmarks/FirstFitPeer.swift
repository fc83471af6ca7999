import Foundation
import PortSliceCore
import PortSliceStore
import Synchronization

/// The allocation benchmark's peer: the least a durable, logged allocator must do, done the
/// way a competent plain-SQL implementation would, on the same engine with the same settings.
///
/// One row per slice; the free ones are found through a partial index in id order (first
/// fit). On PostgreSQL an acquire is one statement, `UPDATE ... WHERE id IN (SELECT ... FOR
/// UPDATE SKIP LOCKED) RETURNING` with the log rows appended in the same statement, and a peer
/// process keeps `postgresConnections` connections, so concurrent acquires (and replicas) do
/// not wait for each other; on SQLite, a single writer, the same in a `BEGIN IMMEDIATE`
/// transaction on one connection. Renewals are gathered over the same window as the store's
/// (`SQLSliceStore.defaultRenewalWindow`) into one statement per window. Hosts authenticate
/// with `NAME.SECRET` tokens stored as SHA-256, looked up in the database on every request,
/// as the allocator does. No trait matching, spreading, quarantine or expiry.
final class FirstFitPeer: Sendable {
    /// Where the peer's table lives.
    typealias Database = FirstFitPeerServer.Database

    /// Connections one peer process keeps to PostgreSQL (SQLite has one writer, so one).
    static let postgresConnections = FirstFitPeerServer.defaultPostgresConnections

    let dialect: SQLDialect
    private let pool: ConnectionPool
    /// The store's own group commit, so the peer batches renewals exactly as the store does.
    private let renewals: Coalescer<PeerRenewal, [PeerLease]>

    private init(dialect: SQLDialect, connections: [any SQLConnection]) {
        self.dialect = dialect
        pool = ConnectionPool(connections)
        renewals = Coalescer(window: SQLSliceStore.defaultRenewalWindow)
    }

    /// Opens the peer on a database whose schema `createSchema` made.
    static func open(_ database: Database, connections: Int = postgresConnections) async throws -> FirstFitPeer {
        switch database {
        case .sqlite(let path):
            return FirstFitPeer(dialect: .sqlite, connections: [try await SQLConnections.sqlite(path: path)])
        case .postgres(let url):
            var opened: [any SQLConnection] = []
            for _ in 0..<max(1, connections) { opened.append(try await SQLConnections.postgres(url: url)) }
            return FirstFitPeer(dialect: .postgres, connections: opened)
        }
    }

    /// Creates the peer's tables in an empty database (once, before any peer process opens it).
    static func createSchema(_ database: Database) async throws {
        let connection: any SQLConnection = switch database {
        case .sqlite(let path): try await SQLConnections.sqlite(path: path)
        case .postgres(let url): try await SQLConnections.postgres(url: url)
        }
        let key = connection.dialect == .sqlite ? "INTEGER PRIMARY KEY" : "BIGSERIAL PRIMARY KEY"
        do {
            for statement in [
                "CREATE TABLE hosts (name TEXT PRIMARY KEY, token_hash TEXT NOT NULL)",
                """
                CREATE TABLE slices (id \(key), address BIGINT NOT NULL, slice_index BIGINT NOT NULL, ports TEXT NOT NULL,
                    host TEXT, expires BIGINT, started BIGINT, UNIQUE (address, slice_index))
                """,
                "CREATE INDEX slices_free ON slices (id) WHERE host IS NULL",
                "CREATE INDEX slices_by_host ON slices (host) WHERE host IS NOT NULL",
                "CREATE TABLE log (id \(key), host TEXT NOT NULL, slice_id BIGINT NOT NULL, started BIGINT NOT NULL, ended BIGINT)",
                "CREATE INDEX log_open ON log (slice_id) WHERE ended IS NULL",
            ] {
                _ = try await connection.query(statement, [])
            }
        } catch {
            try? await connection.close()
            throw error
        }
        try await connection.close()
    }

    func close() async throws {
        for connection in pool.connections { try await connection.close() }
    }

    // MARK: - Hosts and pool

    /// Registers a host; its token, which is stored only as a hash.
    func addHost(_ name: String) async throws -> String {
        var random = SystemRandomNumberGenerator()
        let token = name + "." + (0..<4).map { _ in
            let hex = String(random.next() as UInt64, radix: 16)
            return String(repeating: "0", count: 16 - hex.count) + hex
        }.joined()
        try await pool.use { connection in
            _ = try await connection.query("INSERT INTO hosts (name, token_hash) VALUES (?, ?)", [.text(name), .text(HostToken.hash(of: token))])
        }
        return token
    }

    /// The host a token belongs to, or nil.
    func host(authenticatedBy token: String) async throws -> String? {
        guard let dot = token.lastIndex(of: "."), token.utf8.count <= 200 else { return nil }
        let name = String(token[..<dot])
        let rows = try await pool.use { try await $0.query("SELECT token_hash FROM hosts WHERE name = ?", [.text(name)]) }
        return rows.contains { HostToken.matches(token, hash: $0.text("token_hash") ?? "") } ? name : nil
    }

    /// Adds an address's allocatable slices, in one statement.
    func add(_ address: IPv4Address, plan: SlicePlan) async throws {
        let slices = plan.allocatable
        guard !slices.isEmpty else { return }
        try await pool.use { connection in
            _ = try await connection.query(
                "INSERT INTO slices (address, slice_index, ports) VALUES " + Array(repeating: "(?, ?, ?)", count: slices.count).joined(separator: ", "),
                slices.flatMap { [.integer(Int64(address.bits)), .integer(Int64($0.index)), .text($0.ports.description)] as [SQLValue] })
        }
    }

    // MARK: - Leases

    /// The lowest `count` free slices for `host`, with a log row each.
    /// - Throws: `PeerRefusal.noCapacity` when fewer are free (nothing is then taken).
    func acquire(host: String, count: Int, expires: Moment, now: Moment) async throws -> [PeerLease] {
        let leases: [PeerLease] = try await pool.use { connection in
            switch connection.dialect {
            case .postgres:
                // One statement, so one round trip and its own transaction.
                return try await connection.query(
                    """
                    WITH taken AS (
                        UPDATE slices SET host = ?, expires = ?, started = ? WHERE id IN (
                            SELECT id FROM slices WHERE host IS NULL ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED)
                        RETURNING id, host, address, slice_index, ports, started, expires),
                    logged AS (INSERT INTO log (host, slice_id, started) SELECT ?, id, ? FROM taken)
                    SELECT id, host, address, slice_index, ports, started, expires FROM taken ORDER BY id
                    """,
                    [.text(host), .integer(expires.milliseconds), .integer(now.milliseconds), .integer(Int64(count)),
                     .text(host), .integer(now.milliseconds)]
                ).map(PeerLease.init)
            case .sqlite:
                return try await Self.transaction(connection) {
                    // The count is written into the statement: SQLite prepared the statement
                    // again every time its LIMIT parameter was bound (seen with
                    // SQLITE_STMTSTATUS_REPREPARE), and the kept one of each count is reused as
                    // ours are.
                    let taken = try await connection.query(
                        """
                        UPDATE slices SET host = ?, expires = ?, started = ? WHERE id IN (
                            SELECT id FROM slices WHERE host IS NULL ORDER BY id LIMIT \(count))
                        RETURNING id, host, address, slice_index, ports, started, expires
                        """,
                        [.text(host), .integer(expires.milliseconds), .integer(now.milliseconds)]
                    ).map(PeerLease.init).sorted { $0.id < $1.id }
                    guard taken.count == count else { throw PeerRefusal.noCapacity }
                    _ = try await connection.query(
                        "INSERT INTO log (host, slice_id, started) VALUES " + Array(repeating: "(?, ?, ?)", count: taken.count).joined(separator: ", "),
                        taken.flatMap { [.text(host), .integer($0.id), .integer(now.milliseconds)] as [SQLValue] })
                    return taken
                }
            }
        }
        if leases.count < count {
            // Only PostgreSQL gets here (SQLite rolled back): give the few back.
            for lease in leases { _ = try await release(lease.id, host: host, now: now) }
            throw PeerRefusal.noCapacity
        }
        return leases
    }

    /// Extends every lease `host` holds; gathered with other hosts' renewals over one window.
    func renewAll(host: String, expires: Moment, now: Moment) async throws -> [PeerLease] {
        try await renewals.submit(PeerRenewal(host: host, expires: expires, now: now)) { try await self.renew($0) }
    }

    /// One statement per lease time, the hosts one parameter (as the store's).
    private func renew(_ batch: [PeerRenewal]) async throws -> [[PeerLease]] {
        let now = batch.map(\.now).max()!
        var renewed: [String: [PeerLease]] = [:]
        for (expires, renewals) in Dictionary(grouping: batch, by: \.expires) {
            let hosts = try SQLValue.textList(Array(Set(renewals.map(\.host))))
            let rows = try await pool.use { connection in
                try await connection.query(
                    """
                    UPDATE slices SET expires = ? WHERE \(connection.dialect.isIn(textList: "host"))
                    AND expires > ? RETURNING id, host, address, slice_index, ports, started, expires
                    """,
                    [.integer(expires.milliseconds), hosts, .integer(now.milliseconds)])
            }
            for lease in rows.map(PeerLease.init) { renewed[lease.host, default: []].append(lease) }
        }
        return batch.map { renewed[$0.host, default: []].sorted { $0.id < $1.id } }
    }

    /// Frees a slice `host` holds and closes its log row; false when it holds no such lease.
    func release(_ id: Int64, host: String, now: Moment) async throws -> Bool {
        try await pool.use { connection in
            switch connection.dialect {
            case .postgres:
                return try await !connection.query(
                    """
                    WITH freed AS (UPDATE slices SET host = NULL, expires = NULL, started = NULL WHERE id = ? AND host = ? RETURNING id),
                    ended AS (UPDATE log SET ended = ? WHERE slice_id IN (SELECT id FROM freed) AND ended IS NULL)
                    SELECT id FROM freed
                    """,
                    [.integer(id), .text(host), .integer(now.milliseconds)]
                ).isEmpty
            case .sqlite:
                return try await Self.transaction(connection) {
                    let freed = try await connection.query(
                        "UPDATE slices SET host = NULL, expires = NULL, started = NULL WHERE id = ? AND host = ? RETURNING id",
                        [.integer(id), .text(host)])
                    guard !freed.isEmpty else { return false }
                    _ = try await connection.query("UPDATE log SET ended = ? WHERE slice_id = ? AND ended IS NULL", [.integer(now.milliseconds), .integer(id)])
                    return true
                }
            }
        }
    }

    /// SQLite's write transaction (the peer needs none on PostgreSQL: each change is one statement).
    private static func transaction<T: Sendable>(_ connection: any SQLConnection, _ body: () async throws -> T) async throws -> T {
        _ = try await connection.query("BEGIN IMMEDIATE", [])
        do {
            let result = try await body()
            _ = try await connection.query("COMMIT", [])
            return result
        } catch {
            _ = try? await connection.query("ROLLBACK", [])
            throw error
        }
    }

    /// A statement on one connection while others go on on the rest: for tests.
    func query(_ sql: String, _ binds: [SQLValue] = []) async throws -> [SQLRow] {
        try await pool.use { try await $0.query(sql, binds) }
    }
}

/// A slice the peer leased: its lease id is the slice's row id.
struct PeerLease: Sendable, Hashable {
    let id: Int64
    let host: String
    let address: IPv4Address
    let sliceIndex: Int
    let ports: String
    let started: Int64
    let expires: Int64

    init(_ row: SQLRow) {
        id = row.integer("id") ?? 0
        host = row.text("host") ?? ""
        address = IPv4Address(bits: UInt32(truncatingIfNeeded: row.integer("address") ?? 0))
        sliceIndex = Int(row.integer("slice_index") ?? 0)
        ports = row.text("ports") ?? ""
        started = row.integer("started") ?? 0
        expires = row.integer("expires") ?? 0
    }
}

enum PeerRefusal: Error, Equatable {
    case noCapacity
}

struct PeerRenewal: Sendable {
    let host: String
    let expires: Moment
    let now: Moment
}

/// Connections lent to one operation at a time, in the order asked for.
final class ConnectionPool: Sendable {
    private struct State {
        var idle: [any SQLConnection]
        var waiting: [CheckedContinuation<any SQLConnection, Never>] = []
    }

    let connections: [any SQLConnection]
    private let state: Mutex<State>

    init(_ connections: [any SQLConnection]) {
        self.connections = connections
        state = Mutex(State(idle: connections))
    }

    func use<T: Sendable>(_ body: (any SQLConnection) async throws -> T) async throws -> T {
        let connection = await take()
        defer { give(connection) }
        return try await body(connection)
    }

    private func take() async -> any SQLConnection {
        await withCheckedContinuation { (continuation: CheckedContinuation<any SQLConnection, Never>) in
            let idle: (any SQLConnection)? = state.withLock { state in
                if let connection = state.idle.popLast() { return connection }
                state.waiting.append(continuation)
                return nil
            }
            if let idle { continuation.resume(returning: idle) }
        }
    }

    private func give(_ connection: any SQLConnection) {
        let next: CheckedContinuation<any SQLConnection, Never>? = state.withLock { state in
            guard !state.waiting.isEmpty else {
                state.idle.append(connection)
                return nil
            }
            return state.waiting.removeFirst()
        }
        next?.resume(returning: connection)
    }
}
