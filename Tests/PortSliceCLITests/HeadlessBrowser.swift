import Foundation
import Testing

/// A headless Chromium page, driven through `Tests/Helpers/cdp_driver.py` (the DevTools
/// protocol over a pipe): evaluate JavaScript in the page, wait for a condition, take a
/// screenshot. Every call is bounded: the driver times out each protocol call, and this side
/// stops waiting for an answer a little after that. The driver kills Chromium when its input
/// closes, so a test that fails half-way leaves no browser behind.
final class HeadlessBrowser: @unchecked Sendable {
    struct Failure: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// The Chromium the driver would start: `PORTSLICE_CHROMIUM`, else the first of the usual
    /// names on `PATH`; nil when that is not an executable.
    static let chromiumPath: String? = {
        if let explicit = ProcessInfo.processInfo.environment["PORTSLICE_CHROMIUM"] {
            return FileManager.default.isExecutableFile(atPath: explicit) ? explicit : nil
        }
        return ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"].lazy.compactMap(onPath).first
    }()
    static let python3Path: String? = onPath("python3")
    static var available: Bool { chromiumPath != nil && python3Path != nil }
    static let skipReason: Comment = "needs chromium and python3 for the headless browser (apt-get install chromium python3)"

    /// The driver script, found beside this file's folder.
    static let driverScript: String = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Helpers/cdp_driver.py").path

    private let process = Process()
    private let input = Pipe()
    private let lines = DriverLines()
    /// How long to wait for the driver's answer beyond the time it was given.
    private static let slack: TimeInterval = 5

    /// Starts Chromium and opens `url`; returns once the page has loaded.
    init(url: String) throws {
        guard let python3 = Self.python3Path else { throw Failure("python3 is not on PATH") }
        process.executableURL = URL(fileURLWithPath: python3)
        process.arguments = [Self.driverScript, url]
        let output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.standardError
        try process.run()
        lines.start(output.fileHandleForReading)
        let ready: [String: Any]
        do {
            ready = try answer(within: 40).object
        } catch {
            close()
            throw error
        }
        guard ready["ok"] as? Bool == true else {
            close()
            throw Failure("the browser did not start: \(ready["error"] ?? ready)")
        }
    }

    /// The value of `expression` (a promise is awaited), as JSONSerialization gives it: `nil`,
    /// a number, `String`, an array or a dictionary.
    /// - Throws: `Failure` with the page's exception, or when the driver does not answer.
    @discardableResult
    func evaluate(_ expression: String, timeout: TimeInterval = 10) throws -> Any? {
        let reply = try send(["cmd": "eval", "expr": expression, "timeout": timeout], timeout: timeout).object
        return reply["value"] is NSNull ? nil : reply["value"]
    }

    /// The value of `expression` decoded as `T` (`Int`, `String`, `Bool`, `[Int]`...): a
    /// JSON `true` is not an `Int`, nor `1` a `Bool`.
    /// - Throws: `Failure` when it is something else.
    func evaluate<T: Decodable>(_ expression: String, as type: T.Type, timeout: TimeInterval = 10) throws -> T {
        let line = try send(["cmd": "eval", "expr": expression, "timeout": timeout], timeout: timeout).line
        do {
            return try JSONDecoder().decode(EvaluationReply<T>.self, from: line).value
        } catch {
            throw Failure("`\(expression)` is not \(type): \(String(decoding: line, as: UTF8.self))")
        }
    }

    /// Polls `expression` every 50 ms until it is `true`.
    /// - Throws: `Failure` naming the expression when `timeout` passes first.
    func waitUntil(_ expression: String, timeout: Duration = .seconds(10)) throws {
        let deadline = ContinuousClock.now + timeout
        var lastError: Error?
        while ContinuousClock.now < deadline {
            do {
                if try evaluate("Boolean(\(expression))", as: Bool.self) { return }
            } catch {
                lastError = error
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw Failure("`\(expression)` did not become true within \(timeout)\(lastError.map { " (last error: \($0))" } ?? "")")
    }

    /// Opens `url` in the same page; returns once it has loaded.
    func navigate(to url: String) throws {
        try send(["cmd": "navigate", "url": url, "timeout": 20], timeout: 20)
    }

    /// Writes a PNG of the page at `width` x `height` (the whole page's height when `fullPage`).
    func screenshot(to path: String, width: Int = 1400, height: Int = 900, fullPage: Bool = false) throws {
        try send(["cmd": "screenshot", "path": path, "width": width, "height": height, "full": fullPage, "timeout": 20], timeout: 20)
    }

    /// What the page wrote to its console and the exceptions it threw, oldest first.
    func consoleMessages() throws -> [String] {
        try send(["cmd": "console"], timeout: 10).object["value"] as? [String] ?? []
    }

    /// Stops the driver, which stops Chromium; waits at most a few seconds.
    func close() {
        guard process.isRunning else { return }
        try? input.fileHandleForWriting.write(contentsOf: Data(#"{"cmd":"quit"}"#.utf8 + [0x0A]))
        try? input.fileHandleForWriting.close()
        let deadline = Date().addingTimeInterval(8)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    deinit { close() }

    // MARK: - The driver's protocol

    /// Sends one command and waits for its answer line.
    @discardableResult
    private func send(_ command: [String: Any], timeout: TimeInterval) throws -> (line: Data, object: [String: Any]) {
        guard process.isRunning else { throw Failure("the browser driver has exited") }
        var line = try JSONSerialization.data(withJSONObject: command)
        line.append(0x0A)
        try input.fileHandleForWriting.write(contentsOf: line)
        let reply = try answer(within: timeout + Self.slack)
        guard reply.object["ok"] as? Bool == true else {
            throw Failure("\(command["cmd"] ?? "?"): \(reply.object["error"] ?? "failed")")
        }
        return reply
    }

    private func answer(within timeout: TimeInterval) throws -> (line: Data, object: [String: Any]) {
        guard let line = lines.next(timeout: timeout) else {
            throw Failure("the browser driver did not answer within \(Int(timeout)) s")
        }
        let data = Data(line.utf8)
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw Failure("the browser driver answered something that is not JSON: \(line)")
        }
        return (data, object)
    }

    private static func onPath(_ name: String) -> String? {
        let directories = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
        return directories.map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }
}

/// The driver's answer to an `eval`, decoded as the caller expects.
private struct EvaluationReply<T: Decodable>: Decodable {
    let value: T
}

/// Lines of a pipe, read on a thread of their own so that waiting for one can time out.
private final class DriverLines: @unchecked Sendable {
    private let condition = NSCondition()
    private var buffer = Data()
    private var lines: [String] = []
    private var ended = false

    func start(_ handle: FileHandle) {
        Thread.detachNewThread { [self] in
            while true {
                let chunk = handle.availableData
                condition.lock()
                if chunk.isEmpty {
                    ended = true
                } else {
                    buffer.append(chunk)
                    while let newline = buffer.firstIndex(of: 0x0A) {
                        lines.append(String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self))
                        buffer.removeSubrange(buffer.startIndex...newline)
                    }
                }
                condition.broadcast()
                condition.unlock()
                if chunk.isEmpty { return }
            }
        }
    }

    /// The next line, or nil when none comes within `timeout` or the pipe has ended.
    func next(timeout: TimeInterval) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        condition.lock()
        defer { condition.unlock() }
        while lines.isEmpty && !ended {
            if !condition.wait(until: deadline) { break }
        }
        return lines.isEmpty ? nil : lines.removeFirst()
    }
}
