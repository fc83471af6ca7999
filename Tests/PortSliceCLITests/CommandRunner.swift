import Foundation
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

    static func run(_ arguments: [String], environment: [String: String] = [:]) async throws -> Result {
        guard FileManager.default.isExecutableFile(atPath: executable.path) else {
            throw RunnerError("portslice is not built at \(executable.path); run `swift build` first")
        }
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let output = Pipe(), errorOutput = Pipe()
        process.standardOutput = output
        process.standardError = errorOutput
        try process.run()
        // Read both pipes before waiting, so a large output cannot fill a pipe and stall the child.
        let errorData = Task.detached { errorOutput.fileHandleForReading.readDataToEndOfFile() }
        let outputData = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let errors = await errorData.value
        return Result(
            status: process.terminationStatus, output: String(decoding: outputData, as: UTF8.self),
            errorOutput: String(decoding: errors, as: UTF8.self))
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
        url = FileManager.default.temporaryDirectory.appendingPathComponent("portslice-test-\(UUID().uuidString)")
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
