import Foundation

/// A failure to program the kernel or to read a slice table, worded for the operator.
public struct EdgeError: Error, Hashable, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Runs one of the system's network tools (`nft`, `ip`) and returns what it printed. These
/// tools are the kernel's supported interface to nftables and policy routing; each call is one
/// process, so a script is passed whole on standard input rather than a command at a time.
public enum SystemTool {
    public struct Failure: Error, CustomStringConvertible {
        public let status: Int32
        public let message: String
        public var description: String { "exit status \(status): \(message)" }
    }

    /// - Throws: `EdgeError` when the tool is missing; `Failure` with its standard error when
    ///   it exits with a non-zero status.
    ///   `namespace` names a network namespace (`ip netns`) to run the tool in.
    public static func run(_ tool: String, _ arguments: [String], input: String? = nil, in namespace: String? = nil) throws -> String {
        let process = Process()
        if let namespace {
            process.executableURL = URL(fileURLWithPath: try path(of: "ip"))
            process.arguments = ["netns", "exec", namespace, try path(of: tool)] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: try path(of: tool))
            process.arguments = arguments
        }
        let output = Pipe(), errors = Pipe(), feed = Pipe()
        process.standardOutput = output
        process.standardError = errors
        process.standardInput = feed
        try process.run()
        // Both pipes are drained while the tool runs, so a long listing cannot fill one and stall it.
        let collected = DispatchGroup()
        nonisolated(unsafe) var outputData = Data(), errorData = Data()
        DispatchQueue.global().async(group: collected) { outputData = output.fileHandleForReading.readDataToEndOfFile() }
        DispatchQueue.global().async(group: collected) { errorData = errors.fileHandleForReading.readDataToEndOfFile() }
        if let input { feed.fileHandleForWriting.write(Data(input.utf8)) }
        try? feed.fileHandleForWriting.close()
        process.waitUntilExit()
        collected.wait()
        guard process.terminationStatus == 0 else {
            let message = String(decoding: errorData, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw Failure(status: process.terminationStatus, message: message)
        }
        return String(decoding: outputData, as: UTF8.self)
    }

    /// The tool's path: searched in PATH and in the sbin directories, which a non-root PATH
    /// often lacks.
    public static func path(of tool: String) throws(EdgeError) -> String {
        let directories = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
            + ["/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        for directory in directories where FileManager.default.isExecutableFile(atPath: "\(directory)/\(tool)") {
            return "\(directory)/\(tool)"
        }
        let package = tool == "nft" ? "nftables" : "iproute2"
        throw EdgeError("'\(tool)' is not installed; install it (apt-get install \(package))")
    }
}
