import Foundation
import PortSliceCore
import Testing
@testable import PortSliceBenchmarks

@Suite("bench alloc")
struct AllocBenchmarkTests {
    /// A small run end to end on SQLite, on the store: every host gets its slices and renews
    /// them (the benchmark throws if a renewal finds fewer), and both rows carry numbers.
    @Test func smallRunOnTheStore() async throws {
        var benchmark = AllocBenchmark()
        benchmark.hosts = 40
        benchmark.addresses = 4
        benchmark.slicesPerHost = 3
        benchmark.renewalPeriod = .milliseconds(300)
        benchmark.paths = [.store]
        let directory = try temporaryDirectory("portslice-bench-test")
        defer { try? FileManager.default.removeItem(at: directory) }
        let rows = try await benchmark.run(on: .sqlite(directory: directory.path)) { _ in }
        #expect(rows.map(\.operation) == ["acquire (3 slices)", "renew all of a host's leases"])
        #expect(rows.allSatisfy { $0.path == "store" && $0.requests == 40 && $0.peerRequests == 40 })
        #expect(rows.allSatisfy { $0.p99Milliseconds >= $0.p50Milliseconds && $0.p50Milliseconds > 0 && $0.peerOperationsPerSecond > 0 })
        #expect(rows[1].corePercentPerPeriod != nil && rows[1].generatorCorePercentPerPeriod != nil && rows[1].peerCorePercentPerPeriod != nil)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).isEmpty, "the stores are removed afterwards")
    }

    /// A small run through HTTP on SQLite, with `portslice serve` and the peer's server as
    /// processes (the executable beside the test bundle): every row has exactly one request
    /// per host, answered as expected, at a positive rate, and nothing is left behind.
    @Test func smallRunThroughHTTP() async throws {
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("portslice").path
        try #require(FileManager.default.isExecutableFile(atPath: executable), "portslice is not built at \(executable); run `swift build` first")
        var benchmark = AllocBenchmark()
        benchmark.hosts = 30
        benchmark.addresses = 3
        benchmark.slicesPerHost = 2
        benchmark.clients = 4
        benchmark.renewalPeriod = .milliseconds(500)
        benchmark.paths = [.http]
        benchmark.executable = executable
        let directory = try temporaryDirectory("portslice-bench-http-test")
        defer { try? FileManager.default.removeItem(at: directory) }
        let rows = try await benchmark.run(on: .sqlite(directory: directory.path)) { _ in }
        #expect(rows.map(\.operation) == ["acquire (2 slices)", "renew all of a host's leases", "release one lease"])
        #expect(rows.map(\.load) == ["4 clients", "30 hosts over 0.5 s", "4 clients"])
        for row in rows {
            #expect(row.path == "http")
            #expect(row.requests == 30 && row.peerRequests == 30)
            #expect(row.operationsPerSecond > 0 && row.peerOperationsPerSecond > 0)
            #expect(row.p50Milliseconds > 0 && row.p99Milliseconds >= row.p50Milliseconds)
            #expect(row.peerP50Milliseconds > 0 && row.peerP99Milliseconds >= row.peerP50Milliseconds)
        }
        #expect(rows[1].corePercentPerPeriod.map { $0 > 0 } == true && rows[1].peerCorePercentPerPeriod.map { $0 > 0 } == true)
        #expect(rows[1].idleCorePercent != nil && rows[1].peerIdleCorePercent != nil)
        #expect(rows[0].meetsTarget != nil && rows[1].meetsTarget != nil && rows[2].meetsTarget == nil)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).isEmpty, "the servers' files are removed afterwards")
    }

    /// The peer hands out distinct free slices, lowest first, and refuses, taking nothing,
    /// once fewer are free than asked for.
    @Test func peerIsFirstFitAndRunsOut() async throws {
        let directory = try temporaryDirectory("portslice-peer-test")
        defer { try? FileManager.default.removeItem(at: directory) }
        let database = FirstFitPeer.Database.sqlite(path: directory.appendingPathComponent("peer.sqlite").path)
        try await FirstFitPeer.createSchema(database)
        let peer = try await FirstFitPeer.open(database)
        try await peer.add(IPv4Address(198, 18, 0, 1), plan: AllocBenchmark.plan)
        let moment = Moment(milliseconds: 1_800_000_000_000), expires = moment + .seconds(3_600)
        var granted: [PeerLease] = []
        for host in 0..<10 { granted += try await peer.acquire(host: "h\(host)", count: 3, expires: expires, now: moment) }
        #expect(granted.map(\.sliceIndex) == Array(0..<30))
        await #expect(throws: PeerRefusal.noCapacity) { try await peer.acquire(host: "h10", count: 2, expires: expires, now: moment) }
        #expect(try await peer.acquire(host: "h10", count: 1, expires: expires, now: moment).map(\.sliceIndex) == [30])
        // A released slice is the lowest free one again; renewals answer only the host's leases.
        #expect(try await peer.release(granted[4].id, host: "h1", now: moment))
        #expect(try await !peer.release(granted[4].id, host: "h1", now: moment))
        #expect(try await peer.acquire(host: "h11", count: 1, expires: expires, now: moment).map(\.sliceIndex) == [4])
        let renewed = try await peer.renewAll(host: "h1", expires: expires + .seconds(60), now: moment)
        #expect(renewed.map(\.sliceIndex) == [3, 5] && renewed.allSatisfy { $0.expires == (expires + .seconds(60)).milliseconds })
        let open = try await peer.query("SELECT COUNT(*) AS n FROM log WHERE ended IS NULL", [])
        #expect(open.first?.integer("n") == 31)
        try await peer.close()
    }

    private func temporaryDirectory(_ prefix: String) throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }
}
