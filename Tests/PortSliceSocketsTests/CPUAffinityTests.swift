import Foundation
import Synchronization
import Testing
@testable import PortSliceSockets

/// Keeping a thread on one CPU, as the proxy's loops do.
@Suite("CPU affinity")
struct CPUAffinityTests {
    /// What `body`, run on a thread of its own (so that a pinning holds no thread of the
    /// tests), returns.
    func onNewThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) throws -> T {
        let result = Mutex<Result<T, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        Thread {
            result.withLock { $0 = Result { try body() } }
            done.signal()
        }.start()
        done.wait()
        return try result.withLock { $0! }.get()
    }

    /// This thread's CPUs as the kernel lists them in /proc (`0-3,6`), spelled out.
    func listedCPUs() throws -> [Int] {
        let status = try String(contentsOfFile: "/proc/thread-self/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("Cpus_allowed_list:") })
        return try line.dropFirst("Cpus_allowed_list:".count).trimmingCharacters(in: .whitespaces).split(separator: ",").flatMap { part -> [Int] in
            let bounds = part.split(separator: "-").compactMap { Int($0) }
            let low = try #require(bounds.first, "\(line)"), high = try #require(bounds.last, "\(line)")
            return Array(low...high)
        }
    }

    @Test("the allowed CPUs are the kernel's list for this thread; a pinned thread may use its CPU alone, and only that thread")
    func pinsAThread() throws {
        let allowed = try CPUAffinity.allowedCPUs()
        #expect(allowed == (try listedCPUs()) && !allowed.isEmpty)
        let last = try #require(allowed.last)
        #expect(try onNewThread { try CPUAffinity.pinCurrentThread(to: last); return try CPUAffinity.allowedCPUs() } == [last])
        #expect(try CPUAffinity.allowedCPUs() == allowed)
    }

    @Test("a CPU that no machine here has, or a negative one, is refused with EINVAL and changes nothing")
    func refusesCPUsThatAreNotThere() throws {
        let allowed = try CPUAffinity.allowedCPUs()
        for cpu in [1 << 16, -1, Int(Int32.max) + 1] {
            let (pinning, after) = try onNewThread { () throws -> (Result<Void, CPUAffinityError>, [Int]) in
                (Result { () throws(CPUAffinityError) in try CPUAffinity.pinCurrentThread(to: cpu) }, try CPUAffinity.allowedCPUs())
            }
            #expect(throws: CPUAffinityError.unpinnable(cpu: cpu, .invalidArgument)) { try pinning.get() }
            #expect(after == allowed, "CPU \(cpu)")
        }
    }
}
