import Foundation
import PortSliceTestSupport
import Testing

/// Runs the built `portslice` executable, as a user or script would.
struct CommandRunner {
    struct Result {
        let status: Int32
        let output: String
        let errorOutput: String
    }

    /// The executable beside the test bundle (both are products of the same build).
    static let executable: URL = {
        let buildDirectory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        return buildDirectory.appendingPathComponent("portslice")
    }()

    /// The program and arguments that run `command`, inside network namespace `namespace`
    /// (`ip netns exec`, root only) when one is given.
    static func invocation(_ command: [String], namespace: String?) -> (program: URL, arguments: [String]) {
        guard let namespace else { return (URL(fileURLWithPath: command[0]), Array(command.dropFirst())) }
        return (URL(fileURLWithPath: "/usr/sbin/ip").resolvingSymlinksInPath(), ["netns", "exec", namespace] + command)
    }

    /// Runs `portslice arguments` (in `namespace`, when given); `input`, when given, is its
    /// standard input (closed after it).
    static func run(_ arguments: [String], environment: [String: String] = [:], input: String? = nil, namespace: String? = nil) async throws -> Result {
        guard FileManager.default.isExecutableFile(atPath: executable.path) else {
            throw RunnerError("portslice is not built at \(executable.path); run `swift build` first")
        }
        let process = Process()
        (process.executableURL, process.arguments) = invocation([executable.path] + arguments, namespace: namespace)
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let output = Pipe(), errorOutput = Pipe()
        process.standardOutput = output
        process.standardError = errorOutput
        let inputPipe = input.map { _ in Pipe() }
        if let inputPipe { process.standardInput = inputPipe }
        try process.run()
        if let input, let inputPipe {
            try inputPipe.fileHandleForWriting.write(contentsOf: Data(input.utf8))
            try inputPipe.fileHandleForWriting.close()
        }
        // Read both pipes before waiting, so a large output cannot fill a pipe and stall the child.
        let (outputData, errors) = try await offThePool { () -> (Data, Data) in
            let errors = ErrorOutput()
            DispatchQueue.global().async {
                errors.data = errorOutput.fileHandleForReading.readDataToEndOfFile()
                errors.done.signal()
            }
            let outputData = output.fileHandleForReading.readDataToEndOfFile()
            errors.done.wait()
            process.waitUntilExit()
            return (outputData, errors.data)
        }
        return Result(
            status: process.terminationStatus, output: String(decoding: outputData, as: UTF8.self),
            errorOutput: String(decoding: errors, as: UTF8.self))
    }

    /// The child's standard error, read on a thread of its own.
    private final class ErrorOutput: @unchecked Sendable {
        var data = Data()
        let done = DispatchSemaphore(value: 0)
    }

    /// curl with `arguments` (silent, at most 10 s; in `namespace`, when given); its exit
    /// status and body.
    static func curl(_ arguments: [String], namespace: String? = nil) async throws -> (status: Int32, body: String) {
        try await offThePool {
            let curl = Process()
            (curl.executableURL, curl.arguments) = invocation(["/usr/bin/env", "curl", "-s", "--max-time", "10"] + arguments, namespace: namespace)
            let pipe = Pipe()
            curl.standardOutput = pipe
            curl.standardError = FileHandle.nullDevice
            try curl.run()
            let body = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            curl.waitUntilExit()
            return (curl.terminationStatus, body)
        }
    }

    struct RunnerError: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }
}

/// A temporary directory removed when the value is released.
final class TemporaryDirectory {
    let url: URL

    init() throws {
        url = URL(fileURLWithPath: ScratchSpace.path("portslice-test"))
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    /// Writes `text` to `name` inside the directory and returns its path.
    @discardableResult
    func write(_ name: String, _ text: String) throws -> String {
        let file = url.appendingPathComponent(name)
        try Data(text.utf8).write(to: file)
        return file.path
    }

    deinit { try? FileManager.default.removeItem(at: url) }
}

/// A `portslice` process left running (a server, an agent): started with `arguments`, ready
/// once its standard output shows `readyPattern`, whose first number is kept as `port`.
/// Standard error goes to a file, read back by `errors`, so a chatty process never blocks.
final class RunningCommand: @unchecked Sendable {
    let process = Process()
    let port: Int
    /// What it printed on standard output up to the ready line.
    let readyOutput: String
    private let errorFile: URL

    init(_ arguments: [String], readyPattern: String, environment: [String: String] = [:], directory: URL? = nil, namespace: String? = nil) throws {
        errorFile = URL(fileURLWithPath: ScratchSpace.path("portslice-stderr"))
        guard FileManager.default.createFile(atPath: errorFile.path, contents: nil) else {
            throw CommandRunner.RunnerError("cannot create \(errorFile.path) for the command's standard error")
        }
        (process.executableURL, process.arguments) = CommandRunner.invocation([CommandRunner.executable.path] + arguments, namespace: namespace)
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        if let directory { process.currentDirectoryURL = directory }
        let output = Pipe()
        process.standardOutput = output
        process.standardError = try FileHandle(forWritingTo: errorFile)
        try process.run()
        var text = "", found = 0
        let deadline = Date().addingTimeInterval(30)
        while found == 0 && Date() < deadline && process.isRunning {
            text += String(decoding: output.fileHandleForReading.availableData, as: UTF8.self)
            if let range = text.range(of: readyPattern, options: .regularExpression),
               let number = text[range].split(whereSeparator: { !$0.isNumber }).last.flatMap({ Int($0) }) {
                found = number
            }
        }
        port = found
        readyOutput = text
        guard found != 0 else {
            process.terminate()
            throw CommandRunner.RunnerError("`portslice \(arguments.joined(separator: " "))` did not print /\(readyPattern)/ within 30 s: \(text)")
        }
    }

    /// What the process wrote to standard error so far.
    var errors: String { (try? String(contentsOf: errorFile, encoding: .utf8)) ?? "" }

    /// Sends `signal` and waits for the exit status.
    @discardableResult
    func stop(_ signal: Int32 = SIGTERM) -> Int32 {
        kill(process.processIdentifier, signal)
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit {
        if process.isRunning { stop(SIGKILL) }
        try? FileManager.default.removeItem(at: errorFile)
    }
}
