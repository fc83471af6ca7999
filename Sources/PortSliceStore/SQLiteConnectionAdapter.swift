import CPortSlice
import CSQLitePageCache
import Foundation
import Logging
import PortSliceCore
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

/// Checkpoints of one SQLite file's write-ahead log, made on a connection of their own so
/// that no commit waits for one.
///
/// SQLite's own (`wal_autocheckpoint`) runs inside the commit that fills the log past its
/// limit: that commit, and every request queued behind the writer, waited while 64 MiB of log
/// were copied into the file and the file synced, about once per 1,100 acquires (through HTTP
/// with 32 clients, the 32 requests in flight took 11-17 ms instead of 5-7, which made the
/// p99). Here the committing connection only signals, and a PASSIVE checkpoint on another
/// connection, whose thread runs on what the others leave of the cores, copies the log while
/// commits go on. One thing it cannot do alone: a log is started over only by a writer that
/// finds every frame of it copied, which a checkpoint racing steady commits never leaves
/// behind. So once the log is `restartFrames` long, checkpoints follow one another, each
/// copying what came during the last (less each time), until at most `finalFrames` are left:
/// the committing connection copies those itself (its one wait: a copy of up to 512 KiB and
/// an `fsync` of the file), and its next transaction writes from the log's start.
final class WALCheckpoints: Sendable {
    struct Thresholds: Sendable {
        /// Frames (pages) written since the last checkpoint that start the next. A page
        /// rewritten many times between checkpoints is copied once.
        var backgroundFrames: Int
        /// A log this long is brought to an end and started over. The file keeps its size, so
        /// that the log is written over rather than extended, which cost the writer a fifth more.
        var restartFrames: Int
        /// The most frames the committing connection copies itself.
        var finalFrames: Int
        /// A log this long is reported: checkpoints are not keeping up (their thread starved
        /// of cores, or a reader holding on to old frames), and the log grows until they do.
        var longFrames: Int { 4 * restartFrames }

        init(backgroundFrames: Int, restartFrames: Int, finalFrames: Int) {
            (self.backgroundFrames, self.restartFrames, self.finalFrames) = (backgroundFrames, restartFrames, finalFrames)
        }

        /// For a file of `pageSize`-byte pages: a checkpoint per 64 MiB of log, a start over
        /// per 256 MiB (about once per 17,000 acquires of 1 KiB pages through HTTP with 32
        /// clients), and at most 512 KiB copied in a commit. Each checkpoint (its `fsync` of
        /// the log and of the file) slowed the commits beside it: at a quarter of these sizes,
        /// two to three times as many requests took over 10 ms (`bench alloc --http-only`).
        init(pageSize: Int) {
            let page = max(pageSize, 512)
            self.init(backgroundFrames: (64 << 20) / page, restartFrames: (256 << 20) / page, finalFrames: (512 << 10) / page)
        }
    }

    /// What has happened, for tests and for the one warning about a long log.
    struct Counts: Sendable, Equatable {
        var background = 0, final = 0, restarts = 0, failures = 0
    }

    private struct State {
        /// A background checkpoint is under way.
        var running = false
        /// Frames of the log known to be in the file.
        var copied = 0
        /// After a failed checkpoint, the next waits until the log is this long.
        var retryAt = 0
        /// After the committing connection copied the rest, another copy of its own waits
        /// until the log has started over or grown this long (a reader can keep it from
        /// starting over, and each copy ends with an `fsync`).
        var finalAgainAt = 0
        var warnedLong = false
        var stopped = false
        var counts = Counts()
    }

    let checkpointer: SQLiteConnectionAdapter
    private let thresholds: Thresholds
    private let logger: Logger
    private let state = Mutex(State())

    init(checkpointer: SQLiteConnectionAdapter, thresholds: Thresholds, logger: Logger) {
        self.checkpointer = checkpointer
        self.thresholds = thresholds
        self.logger = logger
    }

    var counts: Counts { state.withLock { $0.counts } }

    /// Whether a background checkpoint is under way.
    var isCopying: Bool { state.withLock { $0.running } }

    /// No checkpoint starts after this; one under way ends quietly.
    func stop() { state.withLock { $0.stopped = true } }

    /// Called by SQLite on the committing connection's thread after each commit, with the
    /// frames now in the log.
    func committed(frames: Int, on database: OpaquePointer) {
        enum Step { case none, background, here }
        let (step, warnLong) = state.withLock { state -> (Step, Bool) in
            if frames < state.copied {
                // The log has started over from its beginning.
                state.counts.restarts += 1
                (state.copied, state.retryAt, state.finalAgainAt, state.warnedLong) = (0, 0, 0, false)
            }
            let warn = frames >= thresholds.longFrames && !state.warnedLong
            if warn { state.warnedLong = true }
            if state.running || state.stopped || frames < state.retryAt { return (.none, warn) }
            let left = frames - state.copied
            if frames >= thresholds.restartFrames && left <= thresholds.finalFrames && frames >= state.finalAgainAt {
                state.finalAgainAt = frames + thresholds.backgroundFrames
                return (.here, warn)
            }
            guard left >= thresholds.backgroundFrames || frames >= thresholds.restartFrames && left > thresholds.finalFrames else { return (.none, warn) }
            state.running = true
            state.counts.background += 1
            return (.background, warn)
        }
        if warnLong {
            logger.warning("the SQLite log is long: checkpoints are not keeping up", metadata: ["frames": "\(frames)"])
        }
        switch step {
        case .none: break
        case .here:
            var copied: Int32 = -1
            let code = sqlite_nio_sqlite3_wal_checkpoint_v2(database, nil, SQLITE_CHECKPOINT_PASSIVE, nil, &copied)
            state.withLock { state in
                state.counts.final += 1
                if code == SQLITE_OK, copied >= 0 { state.copied = Int(copied) }
            }
            if code != SQLITE_OK { logger.debug("the committing connection could not copy the end of the log", metadata: ["code": "\(code)"]) }
        case .background:
            Task {
                var copied: Int?
                var failure: (any Error)?
                do {
                    copied = try await checkpointer.checkpointPassively()
                } catch {
                    failure = error
                }
                let (report, streak) = state.withLock { state -> (Bool, Int) in
                    state.running = false
                    if let copied { state.copied = max(state.copied, copied) }
                    guard failure != nil else {
                        state.counts.failures = 0
                        return (false, 0)
                    }
                    // Retried once the log has grown by as much again, not at every commit.
                    state.retryAt = frames + thresholds.backgroundFrames
                    state.counts.failures += 1
                    return (!state.stopped && state.counts.failures == 1, state.counts.failures)
                }
                if report, let failure {
                    logger.warning("a checkpoint of the SQLite log failed; retried as the log grows", metadata: ["error": "\(failure)", "failures": "\(streak)"])
                }
            }
        }
    }
}

/// A thread that runs the jobs of tasks preferring it, in the order they come: where a SQLite
/// connection's calls block (for the file lock, for `fsync`) without holding a thread of
/// Swift's cooperative pool, which has one per core.
final class SQLiteThread: TaskExecutor, @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var stopped = false

    /// - Parameter name: what `ps -L`, `top -H` and `perf` show for the thread (at most 15
    ///   bytes, the kernel's limit).
    /// - Parameter yielding: the thread takes the lowest scheduling weight, for work that may
    ///   wait while the others need the cores.
    init(name: String, yielding: Bool = false) {
        // The thread holds the executor until it is stopped. It names itself through prctl:
        // Foundation's `Thread.name`, set before the start, never reached the kernel here (and
        // set from inside, it races; see PortSliceSockets' `CPUAffinity.nameCurrentThread`).
        Thread {
            _ = cportslice_name_current_thread(name)
            if yielding { _ = cportslice_yield_current_thread() }
            self.serve()
        }.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// Ends the thread once the jobs already queued have run.
    func stop() {
        condition.lock()
        stopped = true
        condition.signal()
        condition.unlock()
    }

    private func serve() {
        while true {
            condition.lock()
            while jobs.isEmpty && !stopped { condition.wait() }
            let batch = jobs
            jobs = []
            let done = stopped && batch.isEmpty
            condition.unlock()
            if done { return }
            for job in batch { job.runSynchronously(on: asUnownedTaskExecutor()) }
        }
    }
}

/// Opens database connections for the store, or for anything else that wants the same
/// engine with the same settings (the allocation benchmark's plain-SQL peer).
public enum SQLConnections {
    /// One SQLite file (or memory, when `path` is nil) in write-ahead-log mode: a commit is one
    /// durable append to the log rather than a rollback journal written and removed. A file's
    /// log is copied back into it by a second connection (see `WALCheckpoints`).
    public static func sqlite(path: String?, logger: Logger = Logger(label: "portslice.store")) async throws -> any SQLConnection {
        try await sqlite(path: path, checkpoints: nil, logger: logger)
    }

    /// - Parameter checkpoints: nil for the sizes that suit the file's pages.
    static func sqlite(path: String?, checkpoints: WALCheckpoints.Thresholds?, logger: Logger) async throws -> SQLiteConnectionAdapter {
        let (adapter, inWAL) = try await sqliteAdapter(path: path)
        if let path, inWAL {
            let pageSize = try await adapter.query("PRAGMA page_size", []).first?.integer("page_size") ?? 4096
            // The checkpointer needs none of the writer's settings: SQLite's default
            // `synchronous` (FULL) syncs the file before a checkpoint counts as made.
            await adapter.checkpointElsewhere(
                try SQLiteConnectionAdapter(path: path, role: .checkpointer),
                thresholds: checkpoints ?? WALCheckpoints.Thresholds(pageSize: Int(pageSize)), logger: logger)
        }
        return adapter
    }

    /// A writing connection with the store's settings, and whether its file is in WAL mode (SQLite
    /// answers the mode it is in: "memory" for a database in memory, or the old mode when
    /// the file cannot change).
    private static func sqliteAdapter(path: String?) async throws -> (SQLiteConnectionAdapter, inWAL: Bool) {
        let adapter = try SQLiteConnectionAdapter(path: path)
        // A new file gets 1 KiB pages (an existing file keeps its own): an acquire changes a
        // row or an index entry on each of a dozen pages, and the log gets each whole page
        // again. At SQLite's default of 4 KiB, a batch of 32 acquires appended 1.6 MiB, and
        // writing, summing and syncing it took the writer about a third longer per acquire
        // (5,200-5,500 acquires/s through HTTP with 32 clients at 1 KiB, 4,200-4,800 at 4 KiB;
        // 512 and 2 KiB both did worse than 1 KiB).
        _ = try await adapter.query("PRAGMA page_size = 1024", [])
        let mode = path == nil ? nil : try await adapter.query("PRAGMA journal_mode = WAL", []).first?.text("journal_mode")
        // Every commit is durable (`fsync` of the log): the default, stated because WAL mode
        // would allow NORMAL, which loses the last commits on a power cut.
        _ = try await adapter.query("PRAGMA synchronous = FULL", [])
        // Up to 64 MiB of pages in memory (the default is 2 MiB): a pool of thousands of
        // addresses is read on every acquire and should not come through read(2) each time.
        _ = try await adapter.query("PRAGMA cache_size = -65536", [])
        // Statement journals in memory: a statement that changes several rows inside a
        // transaction journals the pages it touches, so that it can fail alone, and once a
        // journal passed 64 KiB SQLite spilled it to a temporary file, written page by page
        // and never truncated until the commit (7% of the writer's time with a savepoint per
        // batched acquire, profiled through HTTP with 32 clients).
        _ = try await adapter.query("PRAGMA temp_store = MEMORY", [])
        _ = try await adapter.query("PRAGMA busy_timeout = 5000", [])
        _ = try await adapter.query("PRAGMA foreign_keys = ON", [])
        // sqlite-nio builds SQLite with deleted content always overwritten, which also writes
        // pages freed from the B-trees into the log. FAST still zeroes what is deleted from a
        // page being written anyway, and writes nothing more for it (every acquire deletes
        // an index entry; 7,150-7,290 acquires/s and p99 8.6-8.9 ms in three runs through
        // HTTP with 32 clients, 6,830-7,540/s and 9.9-10.9 ms without).
        _ = try await adapter.query("PRAGMA secure_delete = FAST", [])
        return (adapter, mode == "wal")
    }

    /// A connection that only reads the file `sqlite(path:)` opened (already in WAL mode): its
    /// reads see the last commit and wait for no writer.
    static func sqliteReader(path: String) async throws -> any SQLConnection {
        let adapter = try SQLiteConnectionAdapter(path: path, role: .reader)
        _ = try await adapter.query("PRAGMA busy_timeout = 5000", [])
        return adapter
    }
}

extension SQLSliceStore {
    /// The embedded store: one SQLite file (or memory, when `path` is nil), no server to run,
    /// served by this process alone until `close` (see `DatabaseOwnership`).
    /// - Throws: `StoreError` when another process serves the file, or it cannot be opened.
    public static func openSQLite(path: String?, quarantine: Duration = .seconds(240), renewalWindow: Duration = defaultRenewalWindow,
                                  logger: Logger = Logger(label: "portslice.store")) async throws -> SQLSliceStore {
        try AllocatorModel.validate(quarantine: quarantine)
        let ownership = try path.map { try DatabaseOwnership(databasePath: $0) }
        let connection = try await SQLConnections.sqlite(path: path, checkpoints: nil, logger: logger)
        var reader: (any SQLConnection)?
        do {
            // Only a file in WAL mode (the one kind that has checkpoints of its own) can be read
            // beside its writer; a database in memory is the connection's alone.
            if let path, connection.checkpoints != nil {
                do {
                    reader = try await SQLConnections.sqliteReader(path: path)
                } catch {
                    logger.notice("token lookups wait for the writer: no read-only connection", metadata: ["path": "\(path)", "error": "\(error)"])
                }
            }
            return try await SQLSliceStore(
                connection: connection, reader: reader, ownership: ownership, quarantine: quarantine, renewalWindow: renewalWindow, logger: logger)
        } catch {
            // The writer last, so that it removes the log when it closes.
            try? await reader?.close()
            try? await connection.close()
            throw error
        }
    }
}
