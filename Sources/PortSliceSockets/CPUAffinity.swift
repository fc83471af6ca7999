import SystemPackage

/// Which CPUs a thread runs on: what an event loop per CPU uses to stay on its own one.
///
/// A loop left to the scheduler is moved between CPUs as the load around it shifts, and each
/// move costs its caches and a cross-CPU wake-up on the next event; held on one CPU, the
/// proxy's loops spent 74-79 us per connection instead of 86-88 with one client (`bench proxy`).
public enum CPUAffinity {
    /// The CPUs this thread may run on: all of the machine's, or fewer where a cpuset,
    /// `taskset` or a container narrows them.
    public static func allowedCPUs() throws(CPUAffinityError) -> [Int] {
        switch Syscalls.allowedCPUs() {
        case .success(let cpus): cpus
        case .failure(let errno): throw .unreadable(errno)
        }
    }

    /// Keeps the calling thread on `cpu` alone, from now until it ends.
    public static func pinCurrentThread(to cpu: Int) throws(CPUAffinityError) {
        if case .failure(let errno) = Syscalls.pinCurrentThread(toCPU: cpu) { throw .unpinnable(cpu: cpu, errno) }
    }

    /// Names the calling thread for `top -H`, `ps -L` and /proc/PID/task/TID/comm (15 bytes
    /// show). Not Foundation's `Thread.name`: on Linux it reaches the kernel only when the
    /// starting thread has recorded the new thread's handle before the new thread sets it, a
    /// race a proxy loop lost in CI. A name the kernel will not take is no reason to stop.
    public static func nameCurrentThread(_ name: String) {
        _ = Syscalls.nameCurrentThread(name)
    }
}

public enum CPUAffinityError: Error, Hashable, Sendable, CustomStringConvertible {
    case unreadable(Errno)
    case unpinnable(cpu: Int, Errno)

    public var description: String {
        switch self {
        case .unreadable(let errno): "cannot read which CPUs this process may use (sched_getaffinity): \(errno)"
        case .unpinnable(let cpu, let errno): "cannot keep a thread on CPU \(cpu) (sched_setaffinity): \(errno)"
        }
    }
}
