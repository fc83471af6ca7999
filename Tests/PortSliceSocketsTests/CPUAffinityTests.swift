import Foundation
import PortSliceCore
import Testing
@testable import PortSliceSockets

/// Keeping a thread on one CPU, as the proxy's loops do.
@Suite("CPU affinity")
struct CPUAffinityTests {
    /// This thread's CPUs as the kernel lists them in /proc (`0-3,6`: a port set's syntax).
    func listedCPUs() throws -> [Int] {
        let status = try String(contentsOfFile: "/proc/thread-self/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("Cpus_allowed_list:") })
        return try PortSet(parsing: String(line.dropFirst("Cpus_allowed_list:".count))).ports.map(Int.init)
    }

    @Test("the allowed CPUs are the kernel's list for this thread; a pinned thread may use its CPU alone, and only that thread")
    func pinsAThread() throws {
        let allowed = try CPUAffinity.allowedCPUs()
        #expect(allowed == (try listedCPUs()) && !allowed.isEmpty)
        let last = try #require(allowed.last)
        #expect(try OwnThread.run { try CPUAffinity.pinCurrentThread(to: last); return try CPUAffinity.allowedCPUs() } == [last])
        #expect(try CPUAffinity.allowedCPUs() == allowed)
    }

    @Test("a CPU that no machine here has, or a negative one, is refused with EINVAL and changes nothing")
    func refusesCPUsThatAreNotThere() throws {
        let allowed = try CPUAffinity.allowedCPUs()
        for cpu in [1 << 16, -1, Int(Int32.max) + 1] {
            let (pinning, after) = try OwnThread.run { () throws -> (Result<Void, CPUAffinityError>, [Int]) in
                (Result { () throws(CPUAffinityError) in try CPUAffinity.pinCurrentThread(to: cpu) }, try CPUAffinity.allowedCPUs())
            }
            #expect(throws: CPUAffinityError.unpinnable(cpu: cpu, .invalidArgument)) { try pinning.get() }
            #expect(after == allowed, "CPU \(cpu)")
        }
    }
}
