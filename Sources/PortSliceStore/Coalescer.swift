/// Gathers requests that arrive within a short window into one batch, handled by one call:
/// group commit for requests that are frequent, cheap to combine and in no hurry (renewals).
/// Public so that the allocation benchmark's peer batches exactly as the store does.
public actor Coalescer<Request: Sendable, Answer: Sendable> {
    private let window: Duration
    private var pending: [(request: Request, answer: CheckedContinuation<Answer, any Error>)] = []
    private var flushScheduled = false

    public init(window: Duration) {
        self.window = window
    }

    /// Waits for `request`'s answer. `handle` answers a batch, one answer per request in the
    /// same order; the batch is handled by the handler its first request brought.
    public func submit(_ request: Request, handledBy handle: @escaping @Sendable ([Request]) async throws -> [Answer]) async throws -> Answer {
        try await withCheckedThrowingContinuation { continuation in
            pending.append((request, continuation))
            if !flushScheduled {
                flushScheduled = true
                Task { await self.flushAfterWindow(handle) }
            }
        }
    }

    private func flushAfterWindow(_ handle: @Sendable ([Request]) async throws -> [Answer]) async {
        try? await Task.sleep(for: window)
        let batch = pending
        pending = []
        flushScheduled = false
        do {
            let answers = try await handle(batch.map(\.request))
            for (waiting, answer) in zip(batch, answers) { waiting.answer.resume(returning: answer) }
        } catch {
            for waiting in batch { waiting.answer.resume(throwing: error) }
        }
    }
}
