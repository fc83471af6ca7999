import Foundation

/// Runs blocking work (reading a child's pipes, waiting for it) on a Dispatch thread rather
/// than on one of Swift concurrency's few cooperative threads: tests run in parallel, and a
/// blocked pool stalls every other test's tasks (a long poll, a load loop) meanwhile.
public func offThePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
    }
}
