import Foundation

/// A `portslice` subcommand the lab runs as a process of its own (allocator, edge, guards),
/// optionally inside a network namespace, with its output in a log file. Stopped with SIGTERM
/// so it cleans up as in production; interrupted (SIGINT) if it does not end within 10 seconds.
final class LabProcess: @unchecked Sendable {
    let name: String
    let log: String
    private let process = Process()

    /// This executable, so the lab runs the same build it was started from.
    static var executable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    init(_ name: String, _ arguments: [String], namespace: String? = nil, environment: [String: String] = [:], logDirectory: String) throws {
        self.name = name
        log = "\(logDirectory)/\(name).log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        if let namespace {
            process.executableURL = URL(fileURLWithPath: "/usr/sbin/ip").resolvingSymlinksInPath()
            process.arguments = ["netns", "exec", namespace, Self.executable] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: Self.executable)
            process.arguments = arguments
        }
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let handle = FileHandle(forWritingAtPath: log)
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        do { try process.run() } catch {
            throw CommandFailure("cannot start \(name) (\(arguments.joined(separator: " "))): \(error)")
        }
    }

    var isRunning: Bool { process.isRunning }

    /// The last lines of the log, for error messages.
    var logTail: String {
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").suffix(5).joined(separator: "\n")
    }

    /// Sends SIGTERM and waits for the exit; returns the exit status.
    @discardableResult
    func stop() -> Int32 {
        guard process.isRunning else { return process.terminationStatus }
        process.terminate()
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if process.isRunning {
            process.interrupt()
            process.waitUntilExit()
        }
        return process.terminationStatus
    }

    deinit { stop() }
}
