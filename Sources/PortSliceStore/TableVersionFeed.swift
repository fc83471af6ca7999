import Synchronization

/// The slice table's version as this process knows it, and the long polls waiting for a
/// newer one. Changes made here are published after their commit; on PostgreSQL the store's
/// listener also publishes what other replicas commit (`LISTEN`/`NOTIFY`), so a waiting poll
/// costs the database nothing until the table changes.
public final class TableVersionFeed: Sendable {
    private struct State {
        var version: Int64 = 0
        /// False while the PostgreSQL listener is reconnecting: changes by other replicas may
        /// be unheard until it is back (it then reads the version and publishes it).
        var live = true
        var waiting: [Int: (after: Int64, wake: CheckedContinuation<Void, Never>)] = [:]
        var nextID = 0
    }

    private let state = Mutex(State())

    public init() {}

    public var version: Int64 { state.withLock { $0.version } }

    /// Whether changes made by other replicas are heard now.
    public var isLive: Bool { state.withLock { $0.live } }

    func setLive(_ live: Bool) {
        state.withLock { $0.live = live }
    }

    /// Records `version` if it is newer and wakes the polls it satisfies.
    public func publish(_ version: Int64) {
        let woken = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            guard version > state.version else { return [] }
            state.version = version
            let ready = state.waiting.filter { $0.value.after < version }
            for id in ready.keys { state.waiting[id] = nil }
            return ready.map(\.value.wake)
        }
        for wake in woken { wake.resume() }
    }

    /// How many polls are waiting now.
    public var waiters: Int { state.withLock { $0.waiting.count } }

    /// Waits until the version is newer than `version`, `timeout` passes or the task is
    /// cancelled; returns the version then.
    public func wait(newerThan version: Int64, timeout: Duration) async -> Int64 {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.waitUntil(newerThan: version) }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
        }
        return self.version
    }

    private func waitUntil(newerThan version: Int64) async {
        let id = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (wake: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state in
                    if state.version > version || Task.isCancelled { return true }
                    state.waiting[id] = (version, wake)
                    return false
                }
                if now { wake.resume() }
            }
        } onCancel: {
            state.withLock { $0.waiting.removeValue(forKey: id) }?.wake.resume()
        }
    }
}
