import CSQLitePageCache
import Foundation
import Logging
import Synchronization
import VaporCSQLite

/// One SQLite connection, called through SQLite's C API (the library sqlite-nio builds) on a
/// thread of its own.
///
/// Not sqlite-nio's `SQLiteConnection`: that one prepares every statement anew and runs each
/// on a thread pool, answering through an event loop, so a statement cost three thread
/// switches and a parse. An acquire is about a dozen statements under the store's gate, and
/// those switches and parses were most of its time (profiled through HTTP with 32 clients:
/// futex waits and wakes 23% of the server's CPU, `sqlite3Prepare` 11%). Here prepared
/// statements are kept by their text, and a statement runs on the connection's thread: at
/// once when the caller is already there (the store moves a whole operation there, see
/// `withConnection`), else after one switch. Waiting for the file lock (`busy_timeout`) or
/// for `fsync` blocks that thread only, never Swift's cooperative pool.
final class SQLiteConnectionAdapter: SQLConnection, @unchecked Sendable {
    private struct Prepared {
        let statement: OpaquePointer
        let columns: [String]
        /// How often SQLite had prepared it again when `columns` were read.
        let repreparations: Int32

        init(_ statement: OpaquePointer) {
            self.statement = statement
            columns = (0..<sqlite_nio_sqlite3_column_count(statement)).map { column in
                sqlite_nio_sqlite3_column_name(statement, column).map { String(cString: $0) } ?? ""
            }
            repreparations = sqlite_nio_sqlite3_stmt_status(statement, SQLITE_STMTSTATUS_REPREPARE, 0)
        }
    }

    /// The handle and the kept statements, used by one statement at a time (the lock) on the
    /// connection's thread.
    private struct Handle {
        var database: OpaquePointer?
        var prepared: [String: Prepared] = [:]
        /// Who copies this connection's commits from the log into the file; see `checkpointElsewhere`.
        var checkpoints: WALCheckpoints?
        /// Who is told of rows changed in a table; see `watchRows`.
        var rowWatch: RowWatch?
    }

    /// A table whose changed rows are told to `changed`, by their rowid.
    final class RowWatch: Sendable {
        let table: [CChar]
        let changed: @Sendable (Int64) -> Void

        init(table: String, changed: @escaping @Sendable (Int64) -> Void) {
            self.table = Array(table.utf8CString)
            self.changed = changed
        }
    }

    private let handle: Mutex<Handle>
    private let thread: SQLiteThread
    var dialect: SQLDialect { .sqlite }

    /// Statements kept prepared at most; past it the kept ones are dropped (statements whose
    /// text holds a count of placeholders come in many spellings).
    static let keptStatements = 512
    /// A statement with more placeholders is prepared for its one run and not kept: one that
    /// names hundreds of items one by one (addresses whose traits are read) is seldom spelled
    /// the same twice, so keeping those would fill the cache with large one-off statements and
    /// drop the acquire's. Lists that come every time (a renewal batch's hosts) are one
    /// parameter instead (`SQLDialect.isIn(textList:)`).
    static let mostPlaceholdersKept = 64

    /// SQLite set up once, before any connection: opens racing to do it race on its global
    /// configuration (sqlite-nio does the same). Its page cache is chosen first, as it can be
    /// only before (`CSQLitePageCache`); should anything have set SQLite up earlier, it keeps
    /// its default cache, which differs only in speed.
    private static let initialized: Void = {
        _ = cportslice_sqlite_use_keyed_page_cache()
        _ = sqlite_nio_sqlite3_initialize()
    }()

    /// Whether this process's SQLite keeps pages in the wrapped cache (`CSQLitePageCache`).
    static var keepsPagesInKeyedCache: Bool {
        _ = initialized
        return cportslice_sqlite_keyed_page_cache_in_use() != 0
    }

    /// - Throws: `StoreError` when the file cannot be opened.
    init(path: String?, role: Role = .writer) throws {
        _ = Self.initialized
        var database: OpaquePointer?
        let access = role == .reader ? SQLITE_OPEN_READONLY : SQLITE_OPEN_CREATE | SQLITE_OPEN_READWRITE
        // No mutex of SQLite's around each call: every call is made under `handle`'s lock
        // already, and SQLite's own (a lock and an unlock per bind, step and column read)
        // was 5% of the writer's time in an acquire batch.
        let flags = access | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI | SQLITE_OPEN_EXRESCODE
        // The writer's log appends are gathered into a few large writes per commit (`GatheredLogWrites`).
        let opened = sqlite_nio_sqlite3_open_v2(path ?? ":memory:", &database, flags, role == .writer ? GatheredLogWrites.register() : nil)
        guard opened == SQLITE_OK, let database else {
            let message = database.map { String(cString: sqlite_nio_sqlite3_errmsg($0)) } ?? "code \(opened)"
            sqlite_nio_sqlite3_close_v2(database)
            throw StoreError("cannot open the SQLite database \(path ?? ":memory:"): \(message)")
        }
        handle = Mutex(Handle(database: database))
        thread = SQLiteThread(name: "sqlite-\(role.rawValue)", yielding: role == .checkpointer)
    }

    /// What a connection is for; its thread is named after it.
    enum Role: String {
        /// The store's one connection that writes.
        case writer
        /// Opened read-only: lookups beside the writer.
        case reader
        /// Copies the writer's log into the file (see `WALCheckpoints`), on a thread that runs
        /// on what the others leave of the cores.
        case checkpointer = "ckpt"
    }

    deinit {
        handle.withLock { close(handle: &$0) }
        thread.stop()
    }

    /// Runs `body` on the connection's thread, so that its statements need no switch.
    func withConnection<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        try await withTaskExecutorPreference(thread) { try await body() }
    }

    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [SQLRow] {
        try await withTaskExecutorPreference(thread) { try self.run(sql, binds) }
    }

    /// Prepares (or takes the kept) statement, binds, steps through every row.
    private func run(_ sql: String, _ binds: [SQLValue]) throws -> [SQLRow] {
        try handle.withLock { handle in
            guard let database = handle.database else { throw StoreError("the SQLite connection is closed") }
            let keeps = binds.count <= Self.mostPlaceholdersKept
            var prepared: Prepared
            if let kept = handle.prepared[sql] {
                prepared = kept
            } else {
                var statement: OpaquePointer?
                let code = sqlite_nio_sqlite3_prepare_v3(database, sql, -1, keeps ? UInt32(SQLITE_PREPARE_PERSISTENT) : 0, &statement, nil)
                guard code == SQLITE_OK else { throw Self.error(database, code) }
                // An empty text (only a comment) prepares to nothing.
                guard let statement else { return [] }
                prepared = Prepared(statement)
                if keeps {
                    if handle.prepared.count >= Self.keptStatements {
                        for kept in handle.prepared.values { sqlite_nio_sqlite3_finalize(kept.statement) }
                        handle.prepared = [:]
                    }
                    handle.prepared[sql] = prepared
                }
            }
            let statement = prepared.statement
            defer {
                if keeps {
                    sqlite_nio_sqlite3_reset(statement)
                    sqlite_nio_sqlite3_clear_bindings(statement)
                } else {
                    sqlite_nio_sqlite3_finalize(statement)
                }
            }
            for (index, value) in binds.enumerated() {
                let position = Int32(index + 1)
                let code = switch value {
                case .integer(let integer): sqlite_nio_sqlite3_bind_int64(statement, position, integer)
                case .text(let text): sqlite_nio_sqlite3_bind_text64(statement, position, text, UInt64(text.utf8.count), Self.transient, UInt8(SQLITE_UTF8))
                case .null: sqlite_nio_sqlite3_bind_null(statement, position)
                }
                guard code == SQLITE_OK else { throw Self.error(database, code) }
            }
            var rows: [SQLRow] = []
            while true {
                let code = sqlite_nio_sqlite3_step(statement)
                if code == SQLITE_DONE { return rows }
                guard code == SQLITE_ROW else { throw Self.error(database, code) }
                // A kept statement whose tables changed since (another process migrated the
                // file) is prepared again by its first step; `SELECT *` may then name other columns.
                if rows.isEmpty, sqlite_nio_sqlite3_stmt_status(statement, SQLITE_STMTSTATUS_REPREPARE, 0) != prepared.repreparations {
                    prepared = Prepared(statement)
                    if keeps { handle.prepared[sql] = prepared }
                }
                var values: [SQLValue] = []
                values.reserveCapacity(prepared.columns.count)
                for offset in prepared.columns.indices {
                    let column = Int32(offset)
                    let value: SQLValue = switch sqlite_nio_sqlite3_column_type(statement, column) {
                    case SQLITE_INTEGER: .integer(sqlite_nio_sqlite3_column_int64(statement, column))
                    case SQLITE_FLOAT: .integer(Int64(sqlite_nio_sqlite3_column_double(statement, column)))
                    case SQLITE_TEXT:
                        .text(sqlite_nio_sqlite3_column_text(statement, column).map { text in
                            String(decoding: UnsafeBufferPointer(start: text, count: Int(sqlite_nio_sqlite3_column_bytes(statement, column))), as: UTF8.self)
                        } ?? "")
                    default: .null
                    }
                    values.append(value)
                }
                rows.append(SQLRow(columns: prepared.columns, values: values))
            }
        }
    }

    /// SQLite's message for a failed call, and its (extended) result code.
    private static func error(_ database: OpaquePointer, _ code: Int32) -> StoreError {
        StoreError("\(String(cString: sqlite_nio_sqlite3_errmsg(database))) (SQLite code \(code))")
    }

    /// `SQLITE_TRANSIENT`: SQLite copies a bound text before the call returns.
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    /// Leaves checkpoints (copying the write-ahead log back into the database file) to
    /// `checkpointer`, another connection to the same file with a thread of its own, rather
    /// than making them in the commit that filled the log (see `WALCheckpoints`).
    func checkpointElsewhere(_ checkpointer: SQLiteConnectionAdapter, thresholds: WALCheckpoints.Thresholds, logger: Logger) async {
        let checkpoints = WALCheckpoints(checkpointer: checkpointer, thresholds: thresholds, logger: logger)
        await withTaskExecutorPreference(thread) {
            handle.withLock { handle in
                guard let database = handle.database else { return }
                // Replaces SQLite's own hook, which checkpoints in the commit (`wal_autocheckpoint`).
                sqlite_nio_sqlite3_wal_hook(database, { context, database, _, frames in
                    guard let context, let database else { return SQLITE_OK }
                    Unmanaged<WALCheckpoints>.fromOpaque(context).takeUnretainedValue().committed(frames: Int(frames), on: database)
                    return SQLITE_OK
                }, Unmanaged.passUnretained(checkpoints).toOpaque())
                handle.checkpoints = checkpoints
            }
        }
    }

    /// Tells `changed` the rowid of every row of `table` that a statement on this connection
    /// inserts, updates or deletes, triggers' changes included, while the statement runs (on
    /// the connection's thread, inside the statement's step: `changed` must not use the
    /// connection). Changes later rolled back are told too. One table per connection.
    func watchRows(of table: String, _ changed: @escaping @Sendable (Int64) -> Void) async {
        let watch = RowWatch(table: table, changed: changed)
        await withTaskExecutorPreference(thread) {
            handle.withLock { handle in
                guard let database = handle.database else { return }
                _ = sqlite_nio_sqlite3_update_hook(database, { context, _, _, table, rowid in
                    guard let context, let table else { return }
                    let watch = Unmanaged<RowWatch>.fromOpaque(context).takeUnretainedValue()
                    if strcmp(table, watch.table) == 0 { watch.changed(rowid) }
                }, Unmanaged.passUnretained(watch).toOpaque())
                handle.rowWatch = watch
            }
        }
    }

    /// Copies into the database file whatever of the log no reader still needs, waiting for
    /// nobody. - Returns: how many frames of the log are now in the file; nil when another
    /// connection was checkpointing (SQLite then copies nothing and says -1).
    func checkpointPassively() async throws -> Int? {
        let row = try await query("PRAGMA wal_checkpoint(PASSIVE)", []).first
        guard row?.integer("busy") == 0, let copied = row?.integer("checkpointed"), copied >= 0 else { return nil }
        return Int(copied)
    }

    /// Who copies this connection's log into the file, if not SQLite in the commit (tests).
    var checkpoints: WALCheckpoints? { handle.withLock { $0.checkpoints } }

    /// A file on this machine is never away.
    func connectIfNeeded(within timeout: Duration) async throws {}

    func abort() {}

    /// Closes the file; the thread ends with the adapter, so that a call made after this fails
    /// (the connection is closed) instead of waiting forever for a thread that has ended. A
    /// checkpointing connection is closed first (a checkpoint under way ends on its thread), so
    /// that this one, closing last, copies the rest of the log and removes it at full speed.
    func close() async throws {
        let checkpoints = await withTaskExecutorPreference(thread) {
            handle.withLock { handle in
                if let database = handle.database { sqlite_nio_sqlite3_wal_hook(database, nil, nil) }
                return handle.checkpoints
            }
        }
        checkpoints?.stop()
        let checkpointerClosed: Result<Void, any Error>
        do {
            try await checkpoints?.checkpointer.close()
            checkpointerClosed = .success(())
        } catch {
            checkpointerClosed = .failure(error)
        }
        await withTaskExecutorPreference(thread) {
            handle.withLock { close(handle: &$0) }
        }
        try checkpointerClosed.get()
    }

    private func close(handle: inout Handle) {
        for kept in handle.prepared.values { sqlite_nio_sqlite3_finalize(kept.statement) }
        handle.prepared = [:]
        if let database = handle.database {
            sqlite_nio_sqlite3_wal_hook(database, nil, nil)
            _ = sqlite_nio_sqlite3_update_hook(database, nil, nil)
            sqlite_nio_sqlite3_close_v2(database)
        }
        handle.database = nil
        handle.checkpoints = nil
        handle.rowWatch = nil
    }
}
