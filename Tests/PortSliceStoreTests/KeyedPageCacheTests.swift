import CSQLitePageCache
import PortSliceTestSupport
import Testing
@testable import PortSliceStore

/// SQLite's page cache behind `CSQLitePageCache`'s wrapper, which keeps the lock page's number
/// (the temporary one of a page swap) under another key: pages must be found as SQLite numbers
/// them, whatever the key.
@Suite("SQLite's page cache with the lock page kept under another key")
struct KeyedPageCacheTests {
    /// The lock page of a file of 1 KiB pages: the page holding byte 2^30, plus one.
    static let lockPage: UInt32 = 1_048_577

    @Test("the store's SQLite uses the wrapped cache")
    func chosenBeforeSQLiteStarts() async throws {
        let (store, _) = try await GroupCommitTests.sqliteStore()
        #expect(SQLiteConnectionAdapter.keepsPagesInKeyedCache)
        try await store.close()
    }

    @Test("a page renamed to the lock page's number and on is found under each number in turn, and truncation drops it as its number says")
    func renamesThroughTheLockPage() throws {
        _ = SQLiteConnectionAdapter.keepsPagesInKeyedCache  // SQLite, and so its caches, set up
        let methods = try #require(cportslice_sqlite_keyed_page_cache_methods()).pointee
        let cache = try #require(methods.xCreate(1024, 64, 1))
        defer { methods.xDestroy(cache) }
        methods.xCachesize(cache, 100)  // unpinned pages are kept, up to 100
        let page = try #require(methods.xFetch(cache, 5, 2))
        let other = try #require(methods.xFetch(cache, 9, 2))

        methods.xRekey(cache, page, 5, Self.lockPage)
        #expect(methods.xFetch(cache, Self.lockPage, 0) == page)
        #expect(methods.xFetch(cache, 5, 0) == nil)
        #expect(methods.xFetch(cache, 0, 0) == page, "kept under key 0")
        methods.xRekey(cache, other, 9, 5)
        methods.xRekey(cache, page, Self.lockPage, 9)
        #expect(methods.xFetch(cache, 9, 0) == page)
        #expect(methods.xFetch(cache, 5, 0) == other)
        #expect(methods.xFetch(cache, Self.lockPage, 0) == nil)
        #expect(methods.xFetch(cache, 0, 0) == nil)

        methods.xUnpin(cache, page, 0)
        methods.xUnpin(cache, other, 0)
        methods.xTruncate(cache, 6)
        #expect(methods.xFetch(cache, 9, 0) == nil, "page 9 is past the limit")
        #expect(methods.xFetch(cache, 5, 0) == other)
        #expect(methods.xPagecount(cache) == 1)
    }

    @Test("a file whose B-trees split thousands of times through the cache reads back whole and passes SQLite's integrity check")
    func splitsKeepTheFileWhole() async throws {
        let connection = try await SQLConnections.sqlite(path: ScratchSpace.path("portslice-split", suffix: ".sqlite"))
        _ = try await connection.query("CREATE TABLE rows (id INTEGER PRIMARY KEY, key INTEGER NOT NULL, text TEXT NOT NULL)", [])
        _ = try await connection.query("CREATE INDEX rows_by_key ON rows (key, text)", [])
        // Keys in a scattered order (a multiplier prime to the count), so that inserts land
        // all over the index and split its pages where they are full.
        let count = 20_000
        for batch in stride(from: 0, to: count, by: 500) {
            _ = try await connection.query("BEGIN", [])
            for id in batch..<(batch + 500) {
                let key = (id * 7_919) % count
                _ = try await connection.query("INSERT INTO rows (id, key, text) VALUES (?, ?, ?)", [.int(id), .int(key), .text("row \(key) of the split test")])
            }
            _ = try await connection.query("COMMIT", [])
        }
        let summary = try #require(try await connection.query("SELECT COUNT(*) AS rows, SUM(key) AS keys, COUNT(DISTINCT key) AS distinct_keys FROM rows", []).first)
        #expect(summary.integer("rows") == Int64(count))
        #expect(summary.integer("keys") == Int64(count * (count - 1) / 2))
        #expect(summary.integer("distinct_keys") == Int64(count))
        let check = try await connection.query("PRAGMA integrity_check", [])
        #expect(check.map { $0.text("integrity_check") } == ["ok"])
        try await connection.close()
    }
}
