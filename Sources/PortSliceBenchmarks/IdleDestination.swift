import Foundation
import PortSliceCore

/// A TCP listener on 127.0.0.1 that keeps a given number of the connections it accepts open
/// and idle (never reading them) and closes every other one at once, run by python3 in a
/// child process.
///
/// A child process because of descriptors: a held-connection row keeps up to 10,000 client
/// ends in this process, and the limit is 20,000 per process here (raising it takes
/// CAP_SYS_RESOURCE), so the ~9,500 relays' far ends must count against another process's
/// limit. Closing the connections it does not keep makes it the destination of a rate loop
/// too (the destination closing first keeps TIME_WAIT off the proxy's side), which the fill
/// row needs: towards one destination, first a rate loop, then 990 held relays, then the
/// rate loop again. The child exits when its standard input closes, which is when the
/// benchmark and every child started after it (they inherit the pipe's end) have ended.
final class IdleDestination {
    let endpoint: Endpoint
    private let process: Process
    private let commands: FileHandle
    private let answers: FileHandle
    private let stopped = Once()

    /// Reads the number to keep from its arguments, prints its port; each line on standard
    /// input ("N") closes what is waiting to be accepted, then keeps the next N, and is
    /// acknowledged with "keeping N".
    static let script = """
        import selectors, socket, sys
        keep = int(sys.argv[1])
        listener = socket.create_server(("127.0.0.1", 0), backlog=4096)
        listener.setblocking(False)
        print(listener.getsockname()[1], flush=True)
        held = []
        def accept_waiting(keeping):
            global keep
            while True:
                try:
                    connection, _ = listener.accept()
                except BlockingIOError:
                    return
                if keeping and keep > 0:
                    keep -= 1
                    held.append(connection)
                else:
                    connection.close()
        events = selectors.DefaultSelector()
        events.register(listener, selectors.EVENT_READ)
        events.register(sys.stdin, selectors.EVENT_READ)
        while True:
            for key, _ in events.select():
                if key.fileobj is listener:
                    accept_waiting(True)
                    continue
                line = sys.stdin.readline()
                if not line:
                    sys.exit(0)
                accept_waiting(False)
                keep = int(line)
                print("keeping", keep, flush=True)
        """

    /// Starts the listener keeping the first `count` connections it accepts.
    init(keepingFirst count: Int) throws {
        let python = try ProxyBenchmark.installed("python3", package: "python3-minimal")
        let input = Pipe(), output = Pipe()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-c", Self.script, String(count)]
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        do {
            let line = try readLine(from: output.fileHandleForReading, of: "the idle destination (python3)")
            guard let port = UInt16(line) else { throw BenchmarkFailure("the idle destination printed '\(line)', not its port") }
            endpoint = Endpoint(IPv4Address(127, 0, 0, 1), port)
        } catch {
            ProxyBenchmark.stop(process)
            throw error
        }
        self.process = process
        commands = input.fileHandleForWriting
        answers = output.fileHandleForReading
    }

    /// Closes the connections already waiting to be accepted (those of a rate loop that just
    /// ended), then keeps the next `count`; returns once the listener has done so.
    func keep(next count: Int) throws {
        try commands.write(contentsOf: Data("\(count)\n".utf8))
        let answer = try readLine(from: answers, of: "the idle destination (python3)")
        guard answer == "keeping \(count)" else { throw BenchmarkFailure("the idle destination answered '\(answer)' to keeping \(count)") }
    }

    /// Ends the child, and with it every connection it holds; later calls do nothing. Stop a
    /// proxy started after it first: Foundation reaps one child at a time, and it waits for
    /// Dante from the moment Dante closes the descriptors it inherited (as daemons do), so a
    /// listener stopped while Dante still runs would never be seen to exit.
    func stop() {
        guard stopped.claim() else { return }
        try? commands.close()
        ProxyBenchmark.stop(process)
    }

    deinit { stop() }
}

/// The next line a child process prints on `output` (without its newline), waiting at most
/// 10 s. A line may arrive in pieces: unbuffered (PYTHONUNBUFFERED), python writes each
/// argument of a `print` on its own.
func readLine(from output: FileHandle, of child: String) throws -> String {
    let deadline = ContinuousClock.now + .seconds(10)
    var text = ""
    while !text.contains("\n") {
        guard ContinuousClock.now < deadline else { throw BenchmarkFailure("\(child) printed no line within 10 s") }
        guard !PollSet.ready([output.fileDescriptor], timeoutMilliseconds: 100).isEmpty else { continue }
        let chunk = output.availableData
        guard !chunk.isEmpty else { throw BenchmarkFailure("\(child) exited") }
        text += String(decoding: chunk, as: UTF8.self)
    }
    return String(text.prefix { $0 != "\n" })
}
