import Foundation
import Logging
import PortSliceCore
import PortSliceTestSupport
import Synchronization
import Testing
@testable import PortSliceStore

/// On SQLite a second connection only reads: tokens are looked up there, beside the writer
/// (see `SQLSliceStore.reader`).
@Suite("SQLite's reading connection")
struct ReadingConnectionTests {
    static let start = Moment(milliseconds: 1_800_000_000_000)

    /// A token is verified while a write transaction holds the store's connection: the lookup
    /// does not queue behind the writer.
    @Test func tokensAreVerifiedWhileTheWriterIsBusy() async throws {
        let (store, _) = try await GroupCommitTests.sqliteStore()
        let token = try await store.addHost("h1", labels: [:], now: Self.start)
        let writing = Signal(), verified = Signal()
        let writer = Task {
            try await store.transaction {
                writing.send()
                // Held until the lookup is done, or for a minute if the lookup waits for this.
                return await verified.wait(upTo: Signal.patience)
            }
        }
        #expect(await writing.wait(upTo: Signal.patience))
        #expect(try await store.principal(authenticatedBy: token) == .host("h1"))
        verified.send()
        #expect(try await writer.value, "the lookup waited for the write transaction to end")
        try await store.close()
    }

    /// Rotating a token while the old one is being looked up over and over: once `rotateToken`
    /// returns, the old token is refused every time. A lookup on the reading connection that
    /// began after the rotation was first heard, but read the table before its commit, must
    /// not leave the old token verified.
    @Test func rotationRacingLookupsLeavesNoOldTokenVerified() async throws {
        let (store, _) = try await GroupCommitTests.sqliteStore()
        var token = try await store.addHost("h1", labels: [:], now: Self.start)
        let current = Mutex(token)
        let lookups = Task {
            while !Task.isCancelled { _ = try await store.principal(authenticatedBy: current.withLock { $0 }) }
        }
        defer { lookups.cancel() }
        for _ in 0..<50 {
            let rotated = try await store.rotateToken(of: .host("h1"))
            #expect(try await store.principal(authenticatedBy: token) == nil, "an old token still verified after its rotation")
            #expect(try await store.principal(authenticatedBy: rotated) == .host("h1"))
            token = rotated
            current.withLock { $0 = rotated }
        }
        lookups.cancel()
        _ = await lookups.result
        try await store.close()
    }

    /// The same race with removals: a host or edge removed while its token is being looked up
    /// is refused once the removal returns.
    @Test func removalRacingLookupsLeavesNoTokenVerified() async throws {
        let (store, _) = try await GroupCommitTests.sqliteStore()
        for round in 0..<25 {
            let hostToken = try await store.addHost("h\(round)", labels: [:], now: Self.start)
            let edgeToken = try await store.addEdge("e\(round)", now: Self.start)
            let lookups = Task {
                while !Task.isCancelled {
                    _ = try await store.principal(authenticatedBy: hostToken)
                    _ = try await store.principal(authenticatedBy: edgeToken)
                }
            }
            defer { lookups.cancel() }
            try await store.removeHost("h\(round)", now: Self.start)
            try await store.removeEdge("e\(round)")
            #expect(try await store.principal(authenticatedBy: hostToken) == nil, "a removed host's token still verified")
            #expect(try await store.principal(authenticatedBy: edgeToken) == nil, "a removed edge's token still verified")
            lookups.cancel()
            _ = await lookups.result
        }
        try await store.close()
    }
}

/// Something a task waits for, sent once from another.
private final class Signal: Sendable {
    /// How long to wait for what another task sends: long, though only reached when something
    /// is wrong. On two cores a task can wait over ten seconds for a thread of the cooperative
    /// pool while the suite's synchronous tests hold both (seen in the whole suite's runs).
    static let patience = Duration.seconds(60)

    private let sent = Mutex(false)

    func send() { sent.withLock { $0 = true } }

    var wasSent: Bool { sent.withLock { $0 } }

    /// Whether it was sent within `limit`, checked every millisecond.
    @discardableResult
    func wait(upTo limit: Duration) async -> Bool {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if sent.withLock({ $0 }) { return true }
            try? await Task.sleep(for: .milliseconds(1))
        }
        return sent.withLock { $0 }
    }
}

/// The store's SQLite threads carry names that tell them apart in `ps -L` and `perf`.
@Suite("SQLite threads")
struct SQLiteThreadNameTests {
    @Test func theWriterAndTheReaderAreNamed() async throws {
        func names() throws -> [String] {
            try FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").compactMap { task in
                try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            }
        }
        let (store, _) = try await GroupCommitTests.sqliteStore()
        // The threads name themselves as they start; the store has run statements on both by now
        // (a token lookup is the reader's).
        _ = try await store.principal(authenticatedBy: try await store.addHost("h1", labels: [:], now: ReadingConnectionTests.start))
        // Other tests' stores run beside this one, so only the names are certain, not how many.
        let named = try names()
        #expect(named.contains("sqlite-writer") && named.contains("sqlite-reader"), "\(named)")
        try await store.close()
    }
}

/// A statement runs on its connection's thread, never on the caller's: SQLite's calls block
/// (for the file lock, for `fsync`) where no cooperative or event-loop thread waits with them.
@Suite("SQLite connection thread")
struct SQLiteConnectionThreadTests {
    @Test func aStatementWaitsForTheConnectionsThread() async throws {
        let connection = try SQLiteConnectionAdapter(path: nil)
        let holding = Signal(), released = Signal()
        // Holds the connection's thread itself (a blocking wait, as a long `fsync` would).
        let holder = Task {
            try await connection.withConnection {
                holding.send()
                while !released.wasSent { usleep(1_000) }
            }
        }
        #expect(await holding.wait(upTo: Signal.patience))
        let answered = Signal()
        let statement = Task {
            _ = try await connection.query("SELECT 1", [])
            answered.send()
        }
        // Given the time to run elsewhere, the statement must still be waiting for the thread.
        #expect(await !answered.wait(upTo: .milliseconds(200)), "the statement ran off the connection's thread")
        released.send()
        try await holder.value
        try await statement.value
        #expect(answered.wasSent)
        try await connection.close()
    }
}

/// The log is copied back into the file by a connection of its own, and started over.
@Suite("SQLite checkpoints")
struct SQLiteCheckpointTests {
    /// With small thresholds, 2,000 commits of two pages each, pausing now and then as a
    /// writer does between bursts: checkpoints ran in the background, the log started over
    /// again and again (so the file stays short), every row is still
    /// there once reopened, and the checkpoints' thread has the lowest scheduling weight.
    @Test func theLogIsCopiedElsewhereAndStartedOver() async throws {
        let path = ScratchSpace.path("portslice-checkpoints", suffix: ".sqlite")
        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
        let thresholds = WALCheckpoints.Thresholds(backgroundFrames: 64, restartFrames: 256, finalFrames: 64)
        let writer = try await SQLConnections.sqlite(path: path, checkpoints: thresholds, logger: Logger(label: "test"))
        let checkpoints = try #require(writer.checkpoints)
        _ = try await writer.query("CREATE TABLE rows (id INTEGER PRIMARY KEY, filler TEXT NOT NULL)", [])
        let filler = String(repeating: "x", count: 5_000)
        var longestLog = 0
        for id in 0..<2_000 {
            _ = try await writer.query("INSERT INTO rows (id, filler) VALUES (?, ?)", [.int(id), .text(filler)])
            longestLog = max(longestLog, (try? FileManager.default.attributesOfItem(atPath: path + "-wal")[.size] as? Int) ?? 0)
            if id % 20 == 0 {
                // A pause: the background checkpoint ends (on a busy machine its thread waits).
                let deadline = ContinuousClock.now + .seconds(10)
                while checkpoints.isCopying && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(1)) }
            }
        }
        let counts = checkpoints.counts
        // The log starts over after the committing connection copied its end, or (when a pause
        // let a background checkpoint copy all of it) at once: either way it starts over.
        #expect(counts.background > 0 && counts.restarts > 0 && counts.failures == 0, "\(counts)")
        // Without these checkpoints the log would hold every commit (over 4,000 frames), and
        // SQLite's own would let it reach 1,000.
        let frame = 4_096 + 24
        #expect(longestLog <= 600 * frame, "the log grew to \(longestLog / frame) frames")
        let threads = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").compactMap { task -> (name: String, nice: Int)? in
            guard let name = try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8),
                  let stat = try? String(contentsOfFile: "/proc/self/task/\(task)/stat", encoding: .utf8),
                  let afterName = stat.range(of: ") ", options: .backwards) else { return nil }
            // The fields after the name start with the 3rd (state); nice is the 19th.
            let fields = stat[afterName.upperBound...].split(separator: " ")
            return (name.trimmingCharacters(in: .whitespacesAndNewlines), Int(fields[16]) ?? 0)
        }
        #expect(threads.contains { $0.name == "sqlite-ckpt" && $0.nice == 19 }, "\(threads)")
        try await writer.close()
        let reopened = try await SQLConnections.sqlite(path: path)
        #expect(try await reopened.query("SELECT COUNT(*) AS count FROM rows", []).first?.integer("count") == 2_000)
        try await reopened.close()
    }
}
