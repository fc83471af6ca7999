import PortSliceCore
import PortSliceStore
import ServiceLifecycle

/// Closes expired leases and ends quarantines on a timer, so the log, the slice states and
/// the slice table's version are current within a second even when no request arrives.
public struct ExpiryReaper: Service {
    let store: any SliceStore
    let interval: Duration
    let now: @Sendable () -> Moment

    public init(store: any SliceStore, interval: Duration = .seconds(1), now: @escaping @Sendable () -> Moment = { .current }) {
        self.store = store
        self.interval = interval
        self.now = now
    }

    public func run() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    try await Task.sleep(for: interval)
                    try await store.advance(to: now())
                }
            }
        } catch is CancellationError {
            // Shutting down: nothing is lost, the next start applies expiries up to then.
        }
    }
}
