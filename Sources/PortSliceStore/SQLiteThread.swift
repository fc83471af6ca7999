import CPortSlice
import Foundation

/// A thread that runs the jobs of tasks preferring it, in the order they come: where a SQLite
/// connection's calls block (for the file lock, for `fsync`) without holding a thread of
/// Swift's cooperative pool, which has one per core.
final class SQLiteThread: TaskExecutor, @unchecked Sendable {
    private let condition = NSCondition()
    private var jobs: [UnownedJob] = []
    private var stopped = false

    /// - Parameter name: what `ps -L`, `top -H` and `perf` show for the thread (at most 15
    ///   bytes, the kernel's limit).
    /// - Parameter yielding: the thread takes the lowest scheduling weight, for work that may
    ///   wait while the others need the cores.
    init(name: String, yielding: Bool = false) {
        // The thread holds the executor until it is stopped. It names itself through prctl:
        // Foundation's `Thread.name`, set before the start, never reached the kernel here (and
        // set from inside, it races; see PortSliceSockets' `CPUAffinity.nameCurrentThread`).
        Thread {
            _ = cportslice_name_current_thread(name)
            if yielding { _ = cportslice_yield_current_thread() }
            self.serve()
        }.start()
    }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    /// Ends the thread once the jobs already queued have run.
    func stop() {
        condition.lock()
        stopped = true
        condition.signal()
        condition.unlock()
    }

    private func serve() {
        while true {
            condition.lock()
            while jobs.isEmpty && !stopped { condition.wait() }
            let batch = jobs
            jobs = []
            let done = stopped && batch.isEmpty
            condition.unlock()
            if done { return }
            for job in batch { job.runSynchronously(on: asUnownedTaskExecutor()) }
        }
    }
}
