import Foundation
import PortSliceCore
import PortSliceSockets
import Testing
@testable import PortSliceBenchmarks

enum Python3 {
    static let installed = FileManager.default.isExecutableFile(atPath: "/usr/bin/python3")
    static let missing: Comment = "needs python3 (the idle destination and the stand-in proxy run in it)"
}

/// The pieces `bench proxy` builds its held-connection and fill rows from.
@Suite("bench proxy")
struct ProxyBenchmarkTests {
    @Test func memoryFieldsAreReadFromProcTexts() {
        let status = "Name:\tdanted\nVmPeak:\t   20480 kB\nVmRSS:\t    1752 kB\nRssAnon:\t     116 kB\n"
        #expect(ProcessMemory.kilobytes(of: "VmRSS", in: status) == 1752)
        // "Rss" must not match "RssAnon", nor "VmRSS" "VmRSSx".
        #expect(ProcessMemory.kilobytes(of: "RssAnon", in: status) == 116)
        let rollup = "5640bbf24000-7ffc470fc000 ---p 00000000 00:00 0   [rollup]\nRss:                1768 kB\nPss:                 250 kB\nPss_Dirty:           116 kB\n"
        #expect(ProcessMemory.kilobytes(of: "Pss", in: rollup) == 250)
        // A kernel thread's status has no VmRSS line.
        #expect(ProcessMemory.kilobytes(of: "VmRSS", in: "Name:\tkthreadd\nState:\tS (sleeping)\n") == nil)
        #expect(ProcessMemory.kilobytes(of: "VmRSS", in: "VmRSS:\t garbage kB\n") == nil)
    }

    @Test func memoryOfThisProcessGroupIsCounted() {
        let memory = ProcessMemory.kilobytes(ofGroup: getpgrp())
        #expect(memory.resident > 1_000 && memory.proportional > 0 && memory.proportional <= memory.resident)
    }

    @Test func percentilesOfConnectionTimes() {
        let times = (1...100).reversed().map { Duration.milliseconds($0) }
        let latencies = Latencies(times, elapsed: .zero)
        #expect(latencies.count == 100)
        #expect(abs(latencies.p50 - 51) < 1e-9)
        #expect(abs(latencies.p99 - 100) < 1e-9)
        #expect(Latencies([], elapsed: .zero).p99 == 0)
    }

    /// As many relays as the proxy's descriptors allow (two each), the rest slow clients (one
    /// each), and never fewer than one in twenty slow.
    @Test func holdPlanFitsTheOpenFileLimit() {
        let plan = ProxyBenchmark.HoldPlan(held: 10_000, openFileLimit: 20_000)
        #expect(plan.relays == 9_500 && plan.slowClients == 500)
        #expect(2 * plan.relays + plan.slowClients + ProxyBenchmark.HoldPlan.reserve <= 20_000)
        let small = ProxyBenchmark.HoldPlan(held: 2_000, openFileLimit: 20_000)
        #expect(small.relays == 1_900 && small.slowClients == 100)
        // More than this process could hold itself: capped, and all slow clients.
        let capped = ProxyBenchmark.HoldPlan(held: 50_000, openFileLimit: 20_000)
        #expect(capped.total == 19_500 && capped.relays == 0)
        #expect(ProxyBenchmark.HoldPlan(held: 0, openFileLimit: 20_000).total == 0)
    }

    /// Kept connections stay open and unread; the others, and those already waiting when the
    /// listener is told to keep more, are closed at once.
    @Test(.enabled(if: Python3.installed, Python3.missing))
    func idleDestinationKeepsOnlyWhatItIsTold() throws {
        let destination = try IdleDestination(keepingFirst: 1)
        let kept = HeldSocket(try UnslicedConnect.tcp(to: destination.endpoint))
        let closed = try UnslicedConnect.tcp(to: destination.endpoint)
        #expect(try closed.receive(timeout: .seconds(5)).isEmpty, "closed at once")
        let waiting = try UnslicedConnect.tcp(to: destination.endpoint, timeout: .seconds(5))
        try destination.keep(next: 1)
        let keptLater = HeldSocket(try UnslicedConnect.tcp(to: destination.endpoint))
        let closedLater = try UnslicedConnect.tcp(to: destination.endpoint)
        #expect(try waiting.receive(timeout: .seconds(5)).isEmpty, "waiting before the command: closed")
        #expect(try closedLater.receive(timeout: .seconds(5)).isEmpty, "past what it keeps: closed")
        for open in [kept, keptLater] {
            #expect(throws: DialError.self, "kept: open and idle") { try open.socket.receive(timeout: .milliseconds(200)) }
        }
        destination.stop()
    }

    /// The load generator's exchanges against a stand-in SOCKS5 proxy: kept connections, a
    /// count limit, the destination's close passed on, and a refusal reported.
    @Test(.enabled(if: Python3.installed, Python3.missing))
    func loadGeneratorDrivesSOCKSExchanges() throws {
        let proxy = try StandInProxy()
        defer { proxy.stop() }
        let target = Endpoint(IPv4Address(127, 0, 0, 1), 9)
        let kept = try SOCKSConnectLoad(proxy: proxy.endpoint, target: target, concurrency: 4, completion: .keep).run(for: .seconds(10), limit: 10)
        #expect(kept.failure == nil && kept.completed == 10 && kept.kept.count == 10)

        let closing = try SOCKSConnectLoad(proxy: proxy.closingEndpoint, target: target, concurrency: 2,
                                           completion: .resetAfterDestinationCloses).run(for: .seconds(10), limit: 6)
        #expect(closing.failure == nil && closing.completed == 6 && closing.kept.isEmpty)

        let refusedTarget = Endpoint(IPv4Address(127, 0, 0, 1), StandInProxy.refusedPort)
        let refused = try SOCKSConnectLoad(proxy: proxy.endpoint, target: refusedTarget, concurrency: 1, completion: .reset).run(for: .seconds(10), limit: 5)
        #expect(refused.completed == 0 && refused.failure?.contains("reply 5") == true)
    }
}

/// A SOCKS5 proxy in python3 that answers every greeting and CONNECT without connecting
/// anywhere: success, except reply 5 (refused) for port `refusedPort`; on its second port it
/// closes each connection right after the reply, as a destination closing at once would.
final class StandInProxy {
    static let refusedPort: UInt16 = 7
    let endpoint: Endpoint
    /// Where each connection is closed right after the CONNECT reply.
    let closingEndpoint: Endpoint
    private let process: Process

    static let script = """
        import selectors, socket, struct
        keeping = socket.create_server(("127.0.0.1", 0))
        closing = socket.create_server(("127.0.0.1", 0))
        print(keeping.getsockname()[1], closing.getsockname()[1], flush=True)
        events = selectors.DefaultSelector()
        for listener in (keeping, closing):
            events.register(listener, selectors.EVENT_READ)
        held = []
        def exactly(connection, count):
            data = b""
            while len(data) < count:
                more = connection.recv(count - len(data))
                if not more:
                    raise EOFError
                data += more
            return data
        while True:
            for key, _ in events.select():
                connection, _ = key.fileobj.accept()
                try:
                    exactly(connection, 3)
                    connection.sendall(bytes([5, 0]))
                    port = struct.unpack(">H", exactly(connection, 10)[8:10])[0]
                    connection.sendall(bytes([5, 5 if port == \(refusedPort) else 0, 0, 1, 0, 0, 0, 0, 0, 0]))
                except EOFError:
                    connection.close()
                    continue
                if key.fileobj is closing:
                    connection.close()
                else:
                    held.append(connection)
        """

    init() throws {
        let output = Pipe()
        process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = ["-c", Self.script]
        process.standardOutput = output
        try process.run()
        let ports: [UInt16]
        do {
            ports = try readLine(from: output.fileHandleForReading, of: "the stand-in proxy").split(separator: " ").compactMap { UInt16($0) }
            guard ports.count == 2 else { throw BenchmarkFailure("the stand-in proxy did not print its two ports") }
        } catch {
            ProxyBenchmark.stop(process)
            throw error
        }
        endpoint = Endpoint(IPv4Address(127, 0, 0, 1), ports[0])
        closingEndpoint = Endpoint(IPv4Address(127, 0, 0, 1), ports[1])
    }

    func stop() { ProxyBenchmark.stop(process) }
}
