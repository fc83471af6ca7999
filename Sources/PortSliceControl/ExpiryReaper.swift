import Logging
import PortSliceCore
import PortSliceStore
import ServiceLifecycle

/// Closes expired leases and ends quarantines on a timer, so the log, the slice states and
/// the slice table's version are current within a second even when no request arrives.
/// A round that fails (the database is away) is logged and retried with a growing pause, at
/// most `maximumBackoff`, so the reaper resumes soon after the database does; it never stops
/// the allocator.
public struct ExpiryReaper: Service {
    let store: any SliceStore
    let interval: Duration
    let now: @Sendable () -> Moment
    let logger: Logger
    public static let maximumBackoff = Duration.seconds(2)

    public init(store: any SliceStore, interval: Duration = .seconds(1), now: @escaping @Sendable () -> Moment = { .current },
                logger: Logger = Logger(label: "portslice.reaper")) {
        self.store = store
        self.interval = interval
        self.now = now
        self.logger = logger
    }

    public func run() async throws {
        // Shutting down loses nothing: the next start applies expiries up to then.
        try? await cancelWhenGracefulShutdown {
            var pause = interval
            var failures = 0
            while !Task.isCancelled {
                try await Task.sleep(for: pause)
                do {
                    try await store.advance(to: now())
                    if failures > 0 { logger.notice("expiry rounds work again", metadata: ["failedRounds": "\(failures)"]) }
                    failures = 0
                    pause = interval
                } catch is CancellationError {
                    return
                } catch {
                    failures += 1
                    pause = min(pause * 2, Self.maximumBackoff)
                    logger.warning("expiry round failed; retrying", metadata: ["error": "\(error)", "retry": "\(pause)", "failedRounds": "\(failures)"])
                }
            }
        }
    }
}
