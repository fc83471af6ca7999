import Foundation
import PortSliceCore
import PortSliceSockets
import Synchronization

/// `portslice bench proxy`: one load generator against portslice's SOCKS5 proxy, microsocks
/// and Dante on loopback, in one run: new connections per second (SOCKS handshake, CONNECT,
/// reply, reset) and bytes per second sent through the proxy to a sink, each with 1 and with
/// 64 concurrent clients.
public struct ProxyBenchmark: Sendable {
    public var seconds = 3.0
    public var concurrencies = [1, 64]
    /// The proxies measured, by name, in this order.
    public var contenders = contenderNames

    public static let contenderNames = ["portslice", "microsocks", "dante"]

    public init() {}

    public struct Row: Sendable, Encodable {
        public let proxy: String
        public let clients: Int
        public let connectionsPerSecond: Double
        /// CPU time (user and system) the proxy's processes spent per connection while the
        /// connection rate was measured: what each new connection costs the proxy itself,
        /// apart from the load generator sharing the machine.
        public let proxyMicrosecondsPerConnection: Double
        /// The part of it spent in the proxy's own code and libraries (user time); the rest is
        /// the kernel's, mostly TCP on loopback.
        public let proxyUserMicrosecondsPerConnection: Double
        public let bytesPerSecond: Double
    }

    /// A proxy under test: how to start it on `port`.
    struct Contender {
        let name: String
        let start: (_ port: UInt16, _ directory: String) throws -> Process
    }

    static let portsliceSlice = "127.0.0.2:10000-60999"

    /// Runs every contender; `portslice` is the executable to start our proxy from.
    public func run(portslice: String, progress: (String) -> Void) throws -> [Row] {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("portslice-bench-proxy-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let all = [
            Contender(name: "portslice") { port, directory in
                let pool = "\(directory)/pool.csv"
                try "127.0.0.2/32,US,US-CA,San Jose,,hosting,high\n".write(toFile: pool, atomically: true, encoding: .utf8)
                return try Self.launch(portslice, ["proxy", "--listen", "127.0.0.1:\(port)", "--slice", Self.portsliceSlice, "--pool", pool,
                                                   "--allow", "127.0.0.1/32", "--connections-per-client", "100000"])
            },
            Contender(name: "microsocks") { port, _ in
                try Self.launch(try Self.installed("microsocks", package: "microsocks"), ["-i", "127.0.0.1", "-p", "\(port)"])
            },
            Contender(name: "dante") { port, directory in
                let configuration = "\(directory)/danted.conf"
                try """
                    logoutput: /dev/null
                    internal: 127.0.0.1 port = \(port)
                    external: lo
                    socksmethod: none
                    clientmethod: none
                    user.privileged: root
                    user.unprivileged: nobody
                    client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }
                    socks pass { from: 127.0.0.0/8 to: 0.0.0.0/0 command: connect }

                    """.write(toFile: configuration, atomically: true, encoding: .utf8)
                return try Self.launch(try Self.installed("danted", package: "dante-server"), ["-f", configuration, "-N", "2"])
            },
        ]
        let contenders = all.filter { self.contenders.contains($0.name) }
        _ = HostNetwork.raiseOpenFileLimit(to: 65536)
        let closing = try AcceptingListener(Endpoint(IPv4Address(127, 0, 0, 1), 0))
        let sink = try EchoServers(Endpoint(IPv4Address(127, 0, 0, 1), 0), mode: .tcpSink)
        var rows: [Row] = []
        for (number, contender) in contenders.enumerated() {
            let port = UInt16(31080 + number)
            let process = try contender.start(port, directory)
            defer { Self.stop(process) }
            let proxy = Endpoint(IPv4Address(127, 0, 0, 1), port)
            try Self.waitUntilListening(proxy, process: process, name: contender.name)
            for clients in concurrencies {
                progress("\(contender.name), \(clients) client(s): connections")
                let before = Self.cpuSeconds(ofGroup: process.processIdentifier)
                let (rate, elapsed) = try connectionRate(via: proxy, to: closing.endpoint, clients: clients)
                let after = Self.cpuSeconds(ofGroup: process.processIdentifier)
                progress("\(contender.name), \(clients) client(s): throughput")
                let throughput = try self.throughput(via: proxy, to: sink, clients: clients)
                let perConnection = { (seconds: Double) in rate > 0 ? seconds * 1e6 / (rate * elapsed) : 0 }
                rows.append(Row(proxy: contender.name, clients: clients, connectionsPerSecond: rate,
                                proxyMicrosecondsPerConnection: perConnection(after.user + after.system - before.user - before.system),
                                proxyUserMicrosecondsPerConnection: perConnection(after.user - before.user), bytesPerSecond: throughput))
            }
        }
        return rows
    }

    /// A SOCKS5 CONNECT through `proxy` to `target`, without authentication.
    static func socksConnect(via proxy: Endpoint, to target: Endpoint) throws -> ConnectedSocket {
        let socket = try UnslicedConnect.tcp(to: proxy)
        try socket.send([5, 1, 0])
        guard try receive(socket, exactly: 2) == [5, 0] else { throw BenchmarkFailure("the proxy refused SOCKS5 without authentication") }
        let (a, b, c, d) = target.address.octets
        try socket.send([5, 1, 0, 1, a, b, c, d, UInt8(target.port >> 8), UInt8(target.port & 0xff)])
        let reply = try receive(socket, exactly: 10)
        guard reply[1] == 0 else { throw BenchmarkFailure("the proxy answered CONNECT with reply \(reply[1])") }
        return socket
    }

    static func receive(_ socket: borrowing ConnectedSocket, exactly count: Int) throws -> [UInt8] {
        var bytes: [UInt8] = []
        while bytes.count < count {
            let more = try socket.receive(upTo: count - bytes.count, timeout: .seconds(10))
            guard !more.isEmpty else { throw BenchmarkFailure("the proxy closed the connection during the SOCKS exchange") }
            bytes += more
        }
        return bytes
    }

    /// New connections per second, and the seconds it measured.
    func connectionRate(via proxy: Endpoint, to target: Endpoint, clients: Int) throws -> (rate: Double, seconds: Double) {
        let total = Atomic<Int>(0)
        let elapsed = try onThreads(clients) {
            let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
            var made = 0
            while ContinuousClock.now < deadline && made < 10_000_000 {
                let socket = try Self.socksConnect(via: proxy, to: target)
                try socket.resetOnClose()
                made += 1
            }
            total.add(made, ordering: .relaxed)
        }
        return (Double(total.load(ordering: .relaxed)) / elapsed, elapsed)
    }

    func throughput(via proxy: Endpoint, to sink: EchoServers, clients: Int) throws -> Double {
        let before = sink.byteCount
        let chunk = [UInt8](repeating: 0x5a, count: 256 * 1024)
        let elapsed = try onThreads(clients) {
            let socket = try Self.socksConnect(via: proxy, to: sink.endpoint)
            let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
            // A proxy that stops reading ends this client's part at the deadline.
            while ContinuousClock.now < deadline {
                do { try socket.send(chunk, timeout: max(deadline - ContinuousClock.now, .milliseconds(100))) } catch DialError.timedOut { break }
            }
        }
        // Bytes still in flight arrive within moments; count what reached the sink.
        Thread.sleep(forTimeInterval: 0.3)
        return Double(sink.byteCount - before) / elapsed
    }

    /// Runs `body` on `count` threads at once; returns the seconds they took together.
    func onThreads(_ count: Int, _ body: @escaping @Sendable () throws -> Void) throws -> Double {
        let failure = Mutex<String?>(nil)
        let group = DispatchGroup()
        let started = ContinuousClock.now
        for _ in 0..<count {
            group.enter()
            Thread {
                defer { group.leave() }
                do { try body() } catch { failure.withLock { $0 = $0 ?? "\(error)" } }
            }.start()
        }
        group.wait()
        let elapsed = ContinuousClock.now - started
        if let message = failure.withLock({ $0 }) { throw BenchmarkFailure(message) }
        return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
    }

    /// Starts `executable`; Foundation makes it the leader of a process group of its own, so
    /// `stop` can end it with everything it forked (Dante forks a family of processes).
    static func launch(_ executable: String, _ arguments: [String]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    /// Kills the process's whole group. SIGKILL, because a child started from a Swift
    /// concurrency thread inherits its blocked signal mask, SIGTERM included, and would never
    /// see a SIGTERM (the benchmark hung waiting for microsocks and Dante to exit).
    static func stop(_ process: Process) {
        kill(-process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// User and system CPU seconds of every process in process group `group`, from
    /// `/proc/PID/stat`; threads that ended are included in their process's count.
    static func cpuSeconds(ofGroup group: Int32) -> (user: Double, system: Double) {
        ProcessCPU.processIDs.compactMap(ProcessCPU.record(of:)).filter { $0.group == group }
            .reduce((user: 0, system: 0)) { ($0.user + $1.user, $0.system + $1.system) }
    }

    static func installed(_ tool: String, package: String) throws -> String {
        for directory in ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"] where FileManager.default.isExecutableFile(atPath: "\(directory)/\(tool)") {
            return "\(directory)/\(tool)"
        }
        throw BenchmarkFailure("\(tool) is not installed; apt-get install \(package) (scripts/bench-proxy.sh installs the peers and runs this benchmark)")
    }

    static func waitUntilListening(_ endpoint: Endpoint, process: Process, name: String) throws {
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline {
            guard process.isRunning else { throw BenchmarkFailure("\(name) exited at start (status \(process.terminationStatus)); is port \(endpoint.port) free?") }
            if (try? UnslicedConnect.tcp(to: endpoint, timeout: .milliseconds(200))) != nil { return }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw BenchmarkFailure("\(name) did not listen on \(endpoint) within 15 s")
    }
}
