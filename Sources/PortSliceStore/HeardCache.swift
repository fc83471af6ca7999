import Synchronization

/// Answers kept from the database while this process hears every change that could make
/// them wrong (on PostgreSQL, through the listener's announcements; on SQLite, every change
/// is made here). A lookup that began before a change was heard does not store its answer:
/// each change moves the generation on. The process making a change hears it in its
/// transaction and again once it commits, so a lookup that began in between and read the
/// state before the commit (SQLite's reading connection runs beside the writer) stores
/// nothing either.
final class HeardCache<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    private struct State {
        var entries: [Key: Value] = [:]
        var generation = 0
    }

    private let state = Mutex(State())
    /// Past this many entries the cache starts again (it holds live tokens or pool addresses).
    private let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
    }

    func value(for key: Key) -> Value? { state.withLock { $0.entries[key] } }

    var generation: Int { state.withLock { $0.generation } }

    /// Keeps `value` unless a change was heard since `generation` was read.
    func keep(_ value: Value, for key: Key, ifStill generation: Int) {
        state.withLock { state in
            guard state.generation == generation else { return }
            if state.entries.count >= capacity { state.entries.removeAll() }
            state.entries[key] = value
        }
    }

    func forget(where shouldForget: (Key, Value) -> Bool) {
        state.withLock { state in
            state.entries = state.entries.filter { !shouldForget($0.key, $0.value) }
            state.generation += 1
        }
    }

    func forgetAll() { forget { _, _ in true } }
}
