import Foundation
import Synchronization

/// Waits for TCP handshakes under way, all of them on one thread with epoll: a destination that
/// is slow or never answers holds a descriptor until its deadline, not a thread. (A thread per
/// wait allowed only as many handshakes in flight as there were threads: a client dialing that
/// many unanswering addresses stalled every other remote connect until the timeout.)
///
/// `whenWritable` calls back once per descriptor: when the handshake has ended, well or not
/// (writable, or an error), or when its deadline passes, whichever comes first. The caller then
/// finishes the connection without waiting (`PendingConnection.finish(timeout: .zero)`), which
/// tells success, refusal and timeout apart. The callback gets an error only when the waiter
/// itself could not watch (the kernel refused, or the waiter was stopped). The waiter's thread
/// lives until `stop`, which its owner calls when done with it (the proxy's service does as it
/// stops).
public final class HandshakeWaiter: Sendable {
    private struct Waiting {
        let deadline: ContinuousClock.Instant
        let ready: @Sendable (DialError?) -> Void
    }

    private struct State {
        var waiting: [CInt: Waiting] = [:]
        /// When the thread's current `epoll_wait` ends by itself (nil: not before an event).
        var sleepingUntil: ContinuousClock.Instant?
        var stopping = false
    }

    private let epoll: CInt
    /// Wakes the thread when a registration's deadline comes before its current sleep ends, or
    /// when it should stop.
    private let wakeup: CInt
    private let state = Mutex(State())
    private let stopped = DispatchSemaphore(value: 0)

    public init() throws(DialError) {
        let epoll: CInt, wakeup: CInt
        switch Syscalls.epollCreate() {
        case .success(let descriptor): epoll = descriptor
        case .failure(let errno): throw DialError.from(.epollCreate, errno)
        }
        switch Syscalls.eventDescriptor() {
        case .success(let descriptor): wakeup = descriptor
        case .failure(let errno):
            Syscalls.close(epoll)
            throw DialError.from(.eventfd, errno)
        }
        if case .failure(let errno) = Syscalls.epollAdd(epoll, wakeup, .readable) {
            Syscalls.close(wakeup)
            Syscalls.close(epoll)
            throw DialError.from(.epollCtl, errno)
        }
        self.epoll = epoll
        self.wakeup = wakeup
        let thread = Thread { [self] in run() }
        thread.name = "portslice-handshakes"
        thread.start()
    }

    /// Handshakes being waited for now.
    public var count: Int { state.withLock { $0.waiting.count } }

    /// Calls `ready` (on the waiter's thread; keep it short) once `descriptor` is writable or
    /// has failed, or once `deadline` has passed. The descriptor must stay open until then.
    /// After `stop`, or if the kernel refuses to watch it, `ready` is called at once with why.
    public func whenWritable(_ descriptor: CInt, deadline: ContinuousClock.Instant, _ ready: @escaping @Sendable (DialError?) -> Void) {
        let wake: Bool? = state.withLock { state in
            guard !state.stopping else { return nil }
            state.waiting[descriptor] = Waiting(deadline: deadline, ready: ready)
            // Extra wake-ups cost a system call; a missing one would leave a deadline unnoticed.
            return state.sleepingUntil.map { deadline < $0 } ?? true
        }
        guard let wake else { return ready(Self.stoppedFailure) }
        if case .failure(let errno) = Syscalls.epollAdd(epoll, descriptor, .writableOnce) {
            let waiting = state.withLock { $0.waiting.removeValue(forKey: descriptor) }
            waiting?.ready(DialError.from(.epollCtl, errno))
            return
        }
        if wake { Syscalls.signalEvent(wakeup) }
    }

    private static let stoppedFailure = DialError.system(call: "handshake waiter (stopped)", errno: .canceled)

    /// Ends the thread; handshakes still waited for are called back at once, with an error.
    public func stop() {
        let first = state.withLock { state in
            defer { state.stopping = true }
            return !state.stopping
        }
        guard first else { return }
        Syscalls.signalEvent(wakeup)
        stopped.wait()
        Syscalls.close(wakeup)
        Syscalls.close(epoll)
    }

    private func run() {
        while true {
            let timeout: CInt? = state.withLock { state in
                guard !state.stopping else { return nil }
                let earliest = state.waiting.values.lazy.map(\.deadline).min()
                state.sleepingUntil = earliest
                guard let earliest else { return -1 }
                let left = max(earliest - .now, .zero)
                // Rounded up: waking a moment early would only find nothing due yet.
                return CInt(clamping: left.components.seconds * 1000 + (left.components.attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
            }
            guard let timeout else { break }
            let ready = (try? Syscalls.epollWait(epoll, limit: 256, timeoutMilliseconds: timeout).get()) ?? []
            if ready.contains(wakeup) { Syscalls.drainEvent(wakeup) }
            let due: [(CInt, Waiting)] = state.withLock { state in
                var due = ready.compactMap { descriptor in state.waiting.removeValue(forKey: descriptor).map { (descriptor, $0) } }
                let now = ContinuousClock.now
                for (descriptor, waiting) in state.waiting where waiting.deadline <= now {
                    state.waiting[descriptor] = nil
                    due.append((descriptor, waiting))
                }
                return due
            }
            callBack(due)
        }
        let left = state.withLock { state in
            defer { state.waiting = [:] }
            return Array(state.waiting)
        }
        callBack(left.map { ($0.key, $0.value) }, failure: Self.stoppedFailure)
        stopped.signal()
    }

    /// Stops watching each descriptor (its owner may hand it on or close it), then calls back.
    private func callBack(_ due: [(CInt, Waiting)], failure: DialError? = nil) {
        for (descriptor, waiting) in due {
            _ = Syscalls.epollRemove(epoll, descriptor)
            waiting.ready(failure)
        }
    }
}
