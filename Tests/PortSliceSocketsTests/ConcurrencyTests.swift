import Foundation
import PortSliceCore
import Testing
@testable import PortSliceSockets

/// Two processes with several threads each open and close connected UDP flows on one slice
/// for a bounded time; audits with `ss` while they run find no duplicate 4-tuple.
@Suite("Concurrent UDP flows (root, network namespace)", .enabled(if: TestNamespace.isRoot, TestNamespace.skipReason))
struct ConcurrencyTests {
    struct Tally: Decodable {
        let opened: Int
        let exhausted: Int
        let failures: [String]
        let outsideSlice: Int
        let descriptorsBefore: Int
        let descriptorsAfter: Int
    }

    /// Connected UDP sockets in one `ss -u -a -n -H -e` snapshot: (local, peer) text and the
    /// socket's inode. A dump that resumes after the table changed can list one socket twice,
    /// so a duplicate 4-tuple counts only when two different sockets (inodes) hold it.
    private func connectedSockets(_ snapshot: String) -> [(tuple: String, inode: String)] {
        snapshot.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 5, fields[0] == "ESTAB", let inode = fields.first(where: { $0.hasPrefix("ino:") }) else { return nil }
            return ("\(fields[3]) \(fields[4])", String(inode))
        }
    }

    // Synchronous on purpose: the audit must not wait for a turn on the shared task pool,
    // which other tests keep busy, while the churn runs.
    @Test func twoProcessesNeverCreateADuplicateTuple() throws {
        let namespace = try TestNamespace(addresses: ["203.0.113.10", "198.51.100.1", "198.51.100.2", "198.51.100.3"])
        let helper = CommandLineHelper.path("slice-churn")
        // 16 ports x 3 destinations = 48 flows; 2 processes x 4 threads x up to 8 flows want 64.
        let arguments = [
            "ip", "netns", "exec", namespace.name, helper, "203.0.113.10:40000-40015", "5", "4", "60000",
            "198.51.100.1:7000", "198.51.100.2:7000", "198.51.100.3:7000",
        ]
        let processes = try (0..<2).map { _ in try CommandLineHelper.start(arguments) }

        var snapshots = 0
        var duplicates: Set<String> = []
        var outside: Set<String> = []
        while processes.contains(where: { $0.process.isRunning }) && snapshots < 200 {
            let sockets = connectedSockets(try TestNamespace.command("ss", "-N", namespace.name, "-u", "-a", "-n", "-H", "-e"))
            snapshots += 1
            var holders: [String: Set<String>] = [:]
            for socket in sockets { holders[socket.tuple, default: []].insert(socket.inode) }
            for (tuple, inodes) in holders where inodes.count > 1 { duplicates.insert("\(tuple) held by \(inodes.sorted())") }
            for (tuple, _) in sockets {
                let port = tuple.split(separator: " ")[0].split(separator: ":")[1]
                if !(40000...40015).contains(Int(port) ?? 0) { outside.insert(tuple) }
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
        let tallies = try processes.map { running in
            running.process.waitUntilExit()
            #expect(running.process.terminationStatus == 0)
            return try JSONDecoder().decode(Tally.self, from: running.output.fileHandleForReading.readDataToEndOfFile())
        }
        #expect(snapshots >= 3, "the audit must see the churn while it runs")
        #expect(duplicates.isEmpty, "duplicate 4-tuples: \(duplicates)")
        #expect(outside.isEmpty, "flows outside the slice: \(outside)")
        for tally in tallies {
            #expect(tally.failures.isEmpty, "\(tally.failures)")
            #expect(tally.opened > 100)
            #expect(tally.exhausted > 0, "the slice should run out under this load")
            #expect(tally.outsideSlice == 0)
            #expect(tally.descriptorsAfter == tally.descriptorsBefore, "descriptors leaked")
        }
    }
}

/// Starts programs (through `env`, so PATH applies), such as those built beside the test bundle.
enum CommandLineHelper {
    struct Running {
        let process: Process
        let output: Pipe
    }

    static func path(_ name: String) -> String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent(name).path
    }

    /// - Parameter includingErrors: send standard error into `output` too.
    static func start(_ arguments: [String], includingErrors: Bool = false) throws -> Running {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        if includingErrors { process.standardError = output }
        try process.run()
        return Running(process: process, output: output)
    }
}
