#if DEBUG
import Synchronization
import SystemPackage

/// Errnos injected into the syscall layer in debug builds, so exhaustion, conflict and EINTR
/// paths are tested without root or a special kernel. The plan is task-local: tests running
/// in parallel do not see each other's faults.
enum SyscallFaults {
    @TaskLocal static var plan: FaultPlan?

    /// Runs `body` with `faults` queued: each listed call fails with the next errno in its
    /// list, in order, then behaves normally again.
    static func inject<T>(_ faults: [Syscalls.Call: [Errno]], _ body: () throws -> T) rethrows -> T {
        try $plan.withValue(FaultPlan(faults), operation: body)
    }

    static func take(_ call: Syscalls.Call) -> Errno? { plan?.take(call) }

    static func record(_ call: Syscalls.Call) { plan?.record(call) }
}

final class FaultPlan: Sendable {
    private let pending: Mutex<[Syscalls.Call: [Errno]]>
    private let completed = Mutex<[Syscalls.Call: Int]>([:])

    init(_ faults: [Syscalls.Call: [Errno]]) { pending = Mutex(faults) }

    func record(_ call: Syscalls.Call) { completed.withLock { $0[call, default: 0] += 1 } }

    /// How many `call`s succeeded under this plan (`close` counts every call), so a test can
    /// check that every socket it opened was closed, whatever other tests do meanwhile.
    func succeeded(_ call: Syscalls.Call) -> Int { completed.withLock { $0[call, default: 0] } }

    func take(_ call: Syscalls.Call) -> Errno? {
        pending.withLock { pending in
            guard var queue = pending[call], !queue.isEmpty else { return nil }
            let next = queue.removeFirst()
            pending[call] = queue
            return next
        }
    }

    /// Faults not yet delivered, so a test can check each one was reached.
    var remaining: Int { pending.withLock { $0.values.reduce(0) { $0 + $1.count } } }
}
#endif
