import Synchronization

/// Lets one operation at a time use a connection, in the order they came. A waiting operation
/// that is cancelled (its deadline passed) leaves the queue at once, and one cancelled just as
/// its turn came passes the turn on without running. An actor alone is not enough: it lets a
/// second call in while the first awaits the database.
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
        try Task.checkCancellation()
        return try await body()
    }

    private func enter() async throws {
        let ticket = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (turn: CheckedContinuation<Void, any Error>) in
                // One decision under one lock: a gate opened since the ticket was taken is
                // entered now, never missed.
                enum Outcome { case entered, queued, cancelled }
                let outcome = state.withLock { state -> Outcome in
                    if Task.isCancelled { return .cancelled }
                    guard state.busy else {
                        state.busy = true
                        return .entered
                    }
                    state.waiting.append((ticket, turn))
                    return .queued
                }
                switch outcome {
                case .entered: turn.resume()
                case .cancelled: turn.resume(throwing: CancellationError())
                case .queued: break
                }
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
