import Synchronization

/// Lets one operation at a time use a connection, in the order they came. A waiting operation
/// that is cancelled (its deadline passed) leaves the queue at once. An actor alone is not
/// enough: it lets a second call in while the first awaits the database.
final class TransactionGate: Sendable {
    private struct State {
        var busy = false
        var waiting: [(id: Int, turn: CheckedContinuation<Void, any Error>)] = []
        var nextID = 0
    }

    private let state = Mutex(State())

    func run<T>(_ body: () async throws -> T) async throws -> T {
        try await enter()
        defer { leave() }
        return try await body()
    }

    private func enter() async throws {
        let ticket: Int? = state.withLock { state in
            guard state.busy else {
                state.busy = true
                return nil
            }
            state.nextID += 1
            return state.nextID
        }
        guard let ticket else { return }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (turn: CheckedContinuation<Void, any Error>) in
                let cancelled = state.withLock { state in
                    if Task.isCancelled { return true }
                    state.waiting.append((ticket, turn))
                    return false
                }
                if cancelled { turn.resume(throwing: CancellationError()) }
            }
        } onCancel: {
            let turn = state.withLock { state in
                state.waiting.firstIndex { $0.id == ticket }.map { state.waiting.remove(at: $0).turn }
            }
            turn?.resume(throwing: CancellationError())
        }
    }

    /// Hands the gate to the next in line (it stays busy), or opens it.
    private func leave() {
        let next = state.withLock { state -> CheckedContinuation<Void, any Error>? in
            guard !state.waiting.isEmpty else {
                state.busy = false
                return nil
            }
            return state.waiting.removeFirst().turn
        }
        next?.resume()
    }
}
