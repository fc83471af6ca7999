import Foundation
import PortSliceAPI
import PortSliceCore
import Synchronization
import Testing

/// `portslice serve` on a PostgreSQL server that goes away and comes back, as in a restart
/// or a fail-over: fast 503s and "not ready" while it is away, recovery with no restart of
/// the allocator, a shutdown that the outage cannot hold, and a host agent that keeps its
/// leases throughout.
@Suite("The allocator survives its database", .serialized, .enabled(if: ThrowawayPostgres.available, ThrowawayPostgres.unavailable))
struct DatabaseOutageTests {
    static let adminToken = ServeTests.adminToken

    static func serve(_ database: String, dataDir: String, pool: String? = nil) throws -> RunningCommand {
        try RunningCommand(["serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--database", database] + (pool.map { ["--pool", $0, "--slice-size", "1000"] } ?? []),
                           readyPattern: #"allocator listening on 127\.0\.0\.1:\d+"#, environment: ["PORTSLICE_ADMIN_TOKEN": adminToken])
    }

    /// Times `body`, which must not throw.
    /// curl with `arguments`: the HTTP status, the body, and the seconds curl measured for
    /// the whole exchange.
    static func curlTimed(_ arguments: [String]) async throws -> (status: Int, body: String, seconds: Double) {
        let (_, output) = try await CommandRunner.curl(arguments + ["-w", "\n%{http_code} %{time_total}"])
        let lines = output.split(separator: "\n", omittingEmptySubsequences: false)
        let measured = lines.last?.split(separator: " ") ?? []
        guard measured.count == 2, let status = Int(measured[0]), let seconds = Double(measured[1]) else {
            throw CommandRunner.RunnerError("curl said: \(output)")
        }
        return (status, lines.dropLast().joined(separator: "\n"), seconds)
    }

    static func timed<T>(_ body: () async throws -> T) async rethrows -> (T, Duration) {
        let start = ContinuousClock.now
        let value = try await body()
        return (value, ContinuousClock.now - start)
    }

    /// A URL listing a standby first (as after a fail-over, when the old primary returns as
    /// one): the allocator skips it and writes to the primary.
    @Test func aStandbyListedFirstIsSkipped() async throws {
        let primary = try ThrowawayPostgres()
        let standby = try ThrowawayPostgres(standbyOf: primary)
        #expect(try standby.psql("SELECT pg_is_in_recovery()") == "t")
        let directory = try TemporaryDirectory()
        let url = "postgres://postgres@127.0.0.1:\(standby.port),127.0.0.1:\(primary.port)/postgres"
        let server = try Self.serve(url, dataDir: directory.url.appendingPathComponent("a").path)
        let admin = try AllocatorClient(base: "http://127.0.0.1:\(server.port)", token: Self.adminToken)
        #expect(try await admin.readiness().ready)
        let token = try await admin.addHost(NewHost(name: "h1")).token
        #expect(token.hasPrefix("h1."))
        #expect(try primary.psql("SELECT count(*) FROM hosts") == "1", "the host was written to the primary")
        #expect(server.stop() == 0)
    }

    @Test func restartUnderAnAgentAndALongPoll() async throws {
        let postgres = try ThrowawayPostgres()
        let directory = try TemporaryDirectory()
        let pool = try directory.write("pool.csv", "127.0.0.2/32,US,US-CA,San Jose,,residential,high\n127.0.0.3/32,US,US-CA,San Jose,,residential,high\n")
        // Two replicas on the same database, and a third that is stopped during the outage.
        let first = try Self.serve(postgres.url, dataDir: directory.url.appendingPathComponent("a").path, pool: pool)
        let second = try Self.serve(postgres.url, dataDir: directory.url.appendingPathComponent("b").path)
        let third = try Self.serve(postgres.url, dataDir: directory.url.appendingPathComponent("c").path)
        let admin = try AllocatorClient(base: "http://127.0.0.1:\(first.port)", token: Self.adminToken)
        let adminOnSecond = try AllocatorClient(base: "http://127.0.0.1:\(second.port)", token: Self.adminToken)
        let hostToken = try await admin.addHost(NewHost(name: "h1")).token
        let otherToken = try await admin.addHost(NewHost(name: "h2")).token
        let otherHost = try AllocatorClient(base: admin.base, token: otherToken)

        let agent = try RunningCommand(
            ["agent", "--server", admin.base, "--token", hostToken, "--want", "1", "--lease-time", "20", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
             "--allow", "127.0.0.1/32", "--no-host-setup"],
            // In the test's directory: the agent keeps its address key in ./portslice-data.
            readyPattern: #"proxy listening on 127\.0\.0\.1:\d+"#, directory: directory.url)
        let held = try await admin.leases().filter { $0.host == "h1" }.map(\.id)
        #expect(held.count == 1)

        // A long poll waiting on the second replica when the database goes.
        let version = try await adminOnSecond.sliceTable().version
        let poll = Task { try await adminOnSecond.sliceTable(since: version) }

        try postgres.stop()
        // While it is away: 503 within 2 s on both replicas, "not ready", alive. Timed by curl,
        // in a process of its own, so that what is measured is the allocator's answer and not
        // how soon this test process gets a thread back while other tests keep it busy.
        for replica in [first, second] {
            let base = "http://127.0.0.1:\(replica.port)"
            let acquire = try await Self.curlTimed(["-X", "POST", "-H", "Authorization: Bearer \(otherToken)", "-H", "Content-Type: application/json",
                                                     "-d", #"{"count":1}"#, "\(base)/v1/leases"])
            #expect(acquire.status == 503 && acquire.body == #"{"error":"database unavailable"}"#, "\(acquire)")
            #expect(acquire.seconds < 2, "answered after \(acquire.seconds) s")
            let readiness = try await Self.curlTimed(["\(base)/readyz"])
            #expect(readiness.status == 503 && readiness.body.contains(#""ready":false"#) && readiness.seconds < 2, "\(readiness)")
            let client = try AllocatorClient(base: base, token: Self.adminToken)
            #expect(await client.isAlive(), "/healthz is about the process, not the database")
            let leases = try await Self.curlTimed(["-H", "Authorization: Bearer \(Self.adminToken)", "\(base)/v1/leases"])
            #expect(leases.status == 503 && leases.seconds < 2, "\(leases)")
        }
        // SIGTERM stops a replica within 5 s although its database is away.
        let (status, stopTook) = await Self.timed { third.stop() }
        #expect(status == 0 && stopTook < .seconds(5), "exit \(status) after \(stopTook): \(third.errors)")

        try postgres.start()
        let back = ContinuousClock.now
        for client in [admin, adminOnSecond] {
            while ContinuousClock.now - back < .seconds(10), (try? await client.readiness().ready) != true {
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(ContinuousClock.now - back < .seconds(5), "ready again after \(ContinuousClock.now - back)")
        }
        // Serving again: a new lease through the first replica wakes the poll on the second.
        let granted = try await otherHost.acquire(AcquireRequest(count: 1))
        #expect(granted.count == 1)
        let woken = try await poll.value
        #expect(woken.version > version)
        #expect(woken.slices.contains { $0.host == "h2" }, "the poll answered with the table after the change")

        // The agent kept its lease: same id, still held, nothing lost or granted twice.
        let leases = try await admin.leases()
        #expect(leases.filter { $0.host == "h1" }.map(\.id) == held)
        let slices = leases.map(\.sliceID)
        #expect(Set(slices).count == slices.count)
        #expect(!agent.errors.contains("lost"), "\(agent.errors)")
        let metrics = try await admin.metricsText()
        #expect(metrics.contains("portslice_database_outages_total 1"), "\(metrics)")
        #expect(metrics.contains("portslice_database_up 1"))
        #expect(agent.stop() == 0)
        #expect(first.stop() == 0 && second.stop() == 0)
    }
}
