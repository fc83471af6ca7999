import PortSliceTestSupport
import Testing
@testable import PortSliceStore

/// The writer's log appends are gathered and written together (`GatheredLogWrites`); another
/// connection, on SQLite's own VFS, must find every commit whole the moment it is made, and
/// nothing of one still being made.
@Suite("SQLite log writes gathered")
struct GatheredLogWritesTests {
    /// A writer (gathering) and a reader (SQLite's own VFS) on one new file.
    static func connections() async throws -> (writer: any SQLConnection, reader: any SQLConnection) {
        let path = ScratchSpace.path("portslice-gathered", suffix: ".sqlite")
        let writer = try await SQLConnections.sqlite(path: path)
        _ = try await writer.query("CREATE TABLE rows (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)", [])
        return (writer, try await SQLConnections.sqliteReader(path: path))
    }

    static func count(_ connection: any SQLConnection) async throws -> (rows: Int64, bytes: Int64) {
        let row = try await connection.query("SELECT COUNT(*) AS rows, COALESCE(SUM(LENGTH(payload)), 0) AS bytes FROM rows", []).first
        return (row?.integer("rows") ?? -1, row?.integer("bytes") ?? -1)
    }

    /// Transactions from one page to past the gathering's capacity (4 MiB): the reader sees
    /// each whole once it commits, never a part before, and the file is sound.
    @Test func everyCommitIsReadWholeByAnotherConnection() async throws {
        let (writer, reader) = try await Self.connections()
        var expected: (rows: Int64, bytes: Int64) = (0, 0)
        // 700 bytes a row: rows straddle the 1 KiB pages; 7,000 rows are about 6 MiB of log.
        for rows in [1, 3, 90, 187, 1_000, 7_000] {
            _ = try await writer.query("BEGIN IMMEDIATE", [])
            for index in 0..<rows {
                _ = try await writer.query("INSERT INTO rows (payload) VALUES (?)", [.text(String(repeating: "\(index % 10)", count: 700))])
            }
            #expect(try await Self.count(reader) == expected, "nothing of a transaction under way is read (\(rows) rows)")
            _ = try await writer.query("COMMIT", [])
            expected = (expected.rows + Int64(rows), expected.bytes + Int64(rows) * 700)
            #expect(try await Self.count(reader) == expected, "a commit of \(rows) rows is read whole at once")
        }
        #expect(try await reader.query("PRAGMA integrity_check", []).first?.text("integrity_check") == "ok")
        try await reader.close()
        try await writer.close()
    }

    /// A transaction rolled back leaves nothing a reader can see, and the next commit is read.
    @Test func aRolledBackTransactionLeavesNothing() async throws {
        let (writer, reader) = try await Self.connections()
        _ = try await writer.query("BEGIN IMMEDIATE", [])
        for _ in 0..<500 { _ = try await writer.query("INSERT INTO rows (payload) VALUES (?)", [.text(String(repeating: "r", count: 900))]) }
        _ = try await writer.query("ROLLBACK", [])
        #expect(try await Self.count(reader) == (0, 0))
        _ = try await writer.query("INSERT INTO rows (payload) VALUES ('kept')", [])
        #expect(try await Self.count(reader) == (1, 4))
        try await reader.close()
        try await writer.close()
    }

    /// The file is written with SQLite's own VFS too: a new connection after the writer closed
    /// (which copies the log into the file) reads everything.
    @Test func aClosedFileOpensWithEverythingInIt() async throws {
        let path = ScratchSpace.path("portslice-gathered", suffix: ".sqlite")
        let writer = try await SQLConnections.sqlite(path: path)
        _ = try await writer.query("CREATE TABLE rows (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)", [])
        _ = try await writer.query("BEGIN IMMEDIATE", [])
        for index in 0..<3_000 { _ = try await writer.query("INSERT INTO rows (payload) VALUES (?)", [.text("row \(index)")]) }
        _ = try await writer.query("COMMIT", [])
        try await writer.close()
        let reader = try await SQLConnections.sqliteReader(path: path)
        let row = try await reader.query("SELECT COUNT(*) AS rows, (SELECT payload FROM rows WHERE id = 3000) AS last FROM rows", []).first
        #expect(row?.integer("rows") == 3_000 && row?.text("last") == "row 2999")
        try await reader.close()
    }
}
