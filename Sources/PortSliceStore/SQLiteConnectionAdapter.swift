import Logging
import PortSliceCore
import SQLiteNIO

/// sqlite-nio's connection as a `SQLConnection`.
struct SQLiteConnectionAdapter: SQLConnection {
    let connection: SQLiteConnection
    var dialect: SQLDialect { .sqlite }

    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [SQLRow] {
        let rows = try await connection.query(sql, binds.map { value -> SQLiteData in
            switch value {
            case .integer(let integer): .integer(Int(integer))
            case .text(let text): .text(text)
            case .null: .null
            }
        })
        return rows.map { row in
            SQLRow(values: Dictionary(row.columns.map { column -> (String, SQLValue) in
                switch column.data {
                case .integer(let integer): (column.name, .integer(Int64(integer)))
                case .text(let text): (column.name, .text(text))
                case .float(let double): (column.name, .integer(Int64(double)))
                case .blob, .null: (column.name, .null)
                }
            }, uniquingKeysWith: { first, _ in first }))
        }
    }

    /// A file on this machine is never away.
    func connectIfNeeded(within timeout: Duration) async throws {}

    func abort() {}

    func close() async throws { try await connection.close() }
}

/// Opens database connections for the store, or for anything else that wants the same
/// engine with the same settings (the allocation benchmark's plain-SQL peer).
public enum SQLConnections {
    /// One SQLite file (or memory, when `path` is nil) in write-ahead-log mode: a commit is one
    /// durable append to the log rather than a rollback journal written and removed.
    public static func sqlite(path: String?) async throws -> any SQLConnection {
        let connection: SQLiteConnection
        do {
            connection = try await SQLiteConnection.open(storage: path.map { .file(path: $0) } ?? .memory)
        } catch {
            throw StoreError("cannot open the SQLite database \(path ?? ":memory:"): \(error)")
        }
        let adapter = SQLiteConnectionAdapter(connection: connection)
        if path != nil { _ = try await adapter.query("PRAGMA journal_mode = WAL", []) }
        // Up to 64 MiB of pages in memory (the default is 2 MiB): a pool of thousands of
        // addresses is read on every acquire and should not come through read(2) each time.
        _ = try await adapter.query("PRAGMA cache_size = -65536", [])
        _ = try await adapter.query("PRAGMA busy_timeout = 5000", [])
        _ = try await adapter.query("PRAGMA foreign_keys = ON", [])
        return adapter
    }
}

extension SQLSliceStore {
    /// The embedded store: one SQLite file (or memory, when `path` is nil), no server to run.
    /// Changes run in `BEGIN IMMEDIATE` transactions, which also serialise several processes
    /// sharing the file.
    public static func openSQLite(path: String?, quarantine: Duration = .seconds(240), renewalWindow: Duration = defaultRenewalWindow,
                                  logger: Logger = Logger(label: "portslice.store")) async throws -> SQLSliceStore {
        try AllocatorModel.validate(quarantine: quarantine)
        return try await SQLSliceStore(connection: try await SQLConnections.sqlite(path: path), quarantine: quarantine, renewalWindow: renewalWindow, logger: logger)
    }
}
