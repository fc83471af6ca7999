import Logging
import PortSliceCore

extension SQLConnections {
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
