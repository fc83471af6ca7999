import Foundation
import PortSliceCore
import PortSliceSockets
import Testing
@testable import PortSliceBenchmarks

/// The `portslice` executable beside the test bundle (both are products of the same build).
enum BuiltPortslice {
    static let path = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("portslice").path
    static let built = FileManager.default.isExecutableFile(atPath: path)
    static let missing: Comment = "needs the portslice executable beside the test bundle (swift build)"
}

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

        // By name (address type 3): the stand-in reads the name's length to find the port.
        let byName = try SOCKSConnectLoad(proxy: proxy.endpoint, target: target, names: ["a.example", "bb.example"], concurrency: 3,
                                          completion: .reset).run(for: .seconds(10), limit: 7)
        #expect(byName.failure == nil && byName.completed == 7)
        let refusedByName = try SOCKSConnectLoad(proxy: proxy.endpoint, target: refusedTarget, names: ["a.example"], concurrency: 1,
                                                 completion: .reset).run(for: .seconds(10), limit: 2)
        #expect(refusedByName.completed == 0 && refusedByName.failure?.contains("reply 5") == true)
    }

    @Test func connectRequestByName() throws {
        #expect(try ProxyBenchmark.socksConnectRequest(toName: "ab.c", port: 0x1F90) == [5, 1, 0, 3, 4, 0x61, 0x62, 0x2E, 0x63, 0x1F, 0x90])
        #expect(throws: BenchmarkFailure.self) { try ProxyBenchmark.socksConnectRequest(toName: "", port: 80) }
        #expect(throws: BenchmarkFailure.self) { try ProxyBenchmark.socksConnectRequest(toName: String(repeating: "a", count: 256), port: 80) }
    }

    /// A query as the proxy's resolver sends it: ID, RD, one question, an OPT record with a
    /// client subnet (127.0.0.0/24) after it.
    static func query(id: UInt16, name: String, type: UInt16) -> [UInt8] {
        var bytes: [UInt8] = [UInt8(id >> 8), UInt8(id & 0xff), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]
        for label in name.split(separator: ".") { bytes += [UInt8(label.utf8.count)] + Array(label.utf8) }
        bytes += [0, UInt8(type >> 8), UInt8(type & 0xff), 0, 1]
        bytes += [0, 0, 41, 0x04, 0xD0, 0, 0, 0, 0, 0, 11, 0, 8, 0, 7, 0, 1, 24, 0, 127, 0, 0]
        return bytes
    }

    /// A for a name in the zone (any case) gets the address for 300 s, the question echoed
    /// and no OPT; AAAA gets NOERROR with nothing; a name outside the zone REFUSED; responses
    /// and broken messages nothing.
    @Test func nameServerAnswers() throws {
        let address = IPv4Address(127, 0, 0, 1)
        let zone = "bench.test"
        let a = Self.query(id: 0xBEEF, name: "Host7.Bench.test", type: 1)
        let reply = try #require(a.withUnsafeBytes { BenchmarkNameServer.answer(to: $0, zone: zone, address: address) })
        let question = Array(a[12..<(a.count - 22)])
        #expect(reply.answeredName == "host7.bench.test")
        #expect(reply.message == [0xBE, 0xEF, 0x85, 0x00, 0, 1, 0, 1, 0, 0, 0, 0] + question
                    + [0xC0, 12, 0, 1, 0, 1, 0, 0, 0x01, 0x2C, 0, 4, 127, 0, 0, 1])

        let aaaa = Self.query(id: 2, name: "host7.bench.test", type: 28)
        let noData = try #require(aaaa.withUnsafeBytes { BenchmarkNameServer.answer(to: $0, zone: zone, address: address) })
        #expect(noData.answeredName == nil)
        #expect(noData.message == [0, 2, 0x85, 0x00, 0, 1, 0, 0, 0, 0, 0, 0] + Array(aaaa[12..<(aaaa.count - 22)]))

        let outside = Self.query(id: 3, name: "example.com", type: 1)
        let refused = try #require(outside.withUnsafeBytes { BenchmarkNameServer.answer(to: $0, zone: zone, address: address) })
        #expect(refused.answeredName == nil && refused.message[3] & 0x0F == 5 && refused.message[7] == 0)
        // "notbench.test" is not under "bench.test".
        let lookalike = Self.query(id: 4, name: "notbench.test", type: 1)
        #expect(lookalike.withUnsafeBytes { BenchmarkNameServer.answer(to: $0, zone: zone, address: address) }?.message[3] == 0x05)

        var response = a
        response[2] |= 0x80
        #expect(response.withUnsafeBytes { BenchmarkNameServer.answer(to: $0, zone: zone, address: address) } == nil)
        let cut = Array(a[..<20])
        #expect(cut.withUnsafeBytes { BenchmarkNameServer.answer(to: $0, zone: zone, address: address) } == nil)
    }

    /// The by-name row, briefly, through the built proxy: connections complete, and the name
    /// server was asked for each name used at least once and at most once per proxy loop (each
    /// loop keeps the answer for its TTL), for no other name.
    @Test(.enabled(if: BuiltPortslice.built, BuiltPortslice.missing))
    func connectionsByNameThroughPortslice() throws {
        let closing = try AcceptingListener(Endpoint(IPv4Address(127, 0, 0, 1), 0))
        let nameServer = try BenchmarkNameServer(zone: ProxyBenchmark.benchmarkZone, answering: closing.endpoint.address)
        defer { nameServer.stop() }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("portslice-names-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let port = try AcceptingListener(Endpoint(IPv4Address(127, 0, 0, 1), 0)).endpoint.port  // free a moment ago
        let process = try ProxyBenchmark.startPortslice(BuiltPortslice.path, port: port, slice: "127.0.0.5:40000-44999",
                                                        nameServer: nameServer.endpoint, directory: directory)
        defer { GuardedProcess.stop([process]) }
        let proxy = Endpoint(IPv4Address(127, 0, 0, 1), port)
        try ProxyBenchmark.waitUntilListening(proxy, process: process, name: "portslice")

        var benchmark = ProxyBenchmark()
        benchmark.seconds = 0.5
        // 16 clients on a cold cache (lookups of one name on one loop share its query), then 1.
        var completed = 0
        for clients in [16, 1] {
            let row = try benchmark.sampleConnections(of: process) {
                let measured = try benchmark.connectionRate(via: proxy, to: closing.endpoint, names: ProxyBenchmark.destinationNames, clients: clients)
                completed = max(completed, Int((measured.rate * measured.seconds).rounded()))
                return measured
            }.row(proxy: ProxyBenchmark.namesRowProxy, clients: clients)
            #expect(row.connectionsPerSecond > 0 && row.proxy == ProxyBenchmark.namesRowProxy && row.bytesPerSecond == nil)
        }
        // Each run takes the names in turn from the first, so the longer used these.
        let used = ProxyBenchmark.destinationNames.prefix(completed)
        let answered = nameServer.answeredQueries
        let loops = ProcessInfo.processInfo.activeProcessorCount
        #expect(completed > 0)
        #expect(Set(answered.keys) == Set(used), "asked for exactly the names used")
        for name in used { #expect((1...loops).contains(answered[name] ?? 0), "\(name): \(answered[name] ?? 0) queries, \(loops) loops") }
    }
}

/// A SOCKS5 proxy in python3 that answers every greeting and CONNECT (to an IPv4 address or a
/// name) without connecting anywhere: success, except reply 5 (refused) for port `refusedPort`; on its second port it
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
                    head = exactly(connection, 5)
                    rest = exactly(connection, 5 if head[3] == 1 else head[4] + 2)
                    port = struct.unpack(">H", rest[-2:])[0]
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
