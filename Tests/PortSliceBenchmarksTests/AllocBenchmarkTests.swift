import Foundation
import PortSliceCore
import Testing
@testable import PortSliceBenchmarks

@Suite("bench alloc")
struct AllocBenchmarkTests {
    /// A small run end to end on SQLite: every host gets its slices and renews them (the
    /// benchmark throws if a renewal finds nothing), and both rows carry numbers.
    @Test func smallRunOnSQLite() async throws {
        var benchmark = AllocBenchmark()
        benchmark.hosts = 40
        benchmark.addresses = 4
        benchmark.slicesPerHost = 3
        benchmark.renewalPeriod = .milliseconds(300)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("portslice-bench-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let rows = try await benchmark.run(on: .sqlite(directory: directory.path)) { _ in }
        #expect(rows.map(\.operation) == ["acquire (3 slices)", "renew all of a host's leases"])
        #expect(rows.allSatisfy { $0.p99Milliseconds >= $0.p50Milliseconds && $0.p50Milliseconds > 0 && $0.peerOperationsPerSecond > 0 })
        #expect(rows[1].corePercentPerPeriod != nil && rows[1].generatorCorePercentPerPeriod != nil)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.path).isEmpty, "the stores are removed afterwards")
    }

    /// The peer hands out distinct free slices, first fit, and refuses once the pool is full.
    @Test func peerIsFirstFitAndRunsOut() async throws {
        var benchmark = AllocBenchmark()
        benchmark.addresses = 1
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("portslice-peer-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let peer = try await FirstFitPeer(engine: .sqlite(directory: directory.path), benchmark: benchmark)
        let moment = Moment(milliseconds: 1_800_000_000_000)
        for host in 0..<10 { try await peer.acquire(host: "h\(host)", count: 3, expires: moment, now: moment) }
        try await peer.acquire(host: "h10", count: 1, expires: moment, now: moment)
        await #expect(throws: BenchmarkFailure.self) { try await peer.acquire(host: "h11", count: 1, expires: moment, now: moment) }
        let leased = try await peer.connection.query("SELECT COUNT(DISTINCT slice_index) AS n FROM slices WHERE state = 'leased'", [])
        #expect(leased.first?.integer("n") == 31)
        try await peer.close()
    }
}
