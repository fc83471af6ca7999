import Logging
import Synchronization
import VaporCSQLite

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
