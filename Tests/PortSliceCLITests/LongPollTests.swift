import Foundation
import Glibc
import PortSliceAPI
import PortSliceCore
import PortSliceTestSupport
import Testing

/// Long polls across replicas: a change through one replica wakes the polls waiting on the
/// other at once (LISTEN/NOTIFY), and polls that wait cost the database nothing.
@Suite("Long polls across replicas", .serialized, .enabled(if: TestPostgres.url != nil, TestPostgres.missing))
struct LongPollTests {
    static let adminToken = ServeTests.adminToken

    /// A fresh database on the test server, and its URL.
    static func database() async throws -> (url: String, name: String) {
        try await ScratchSpace.database(on: try #require(TestPostgres.url))
    }

    /// Transactions the server has counted for the database (each statement outside a
    /// transaction is one); the server publishes its counts within about a second.
    static func transactions(_ name: String) throws -> Int {
        let base = try #require(TestPostgres.url)
        let text = try ThrowawayPostgres.shell("psql '\(base)' -At -c \"SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = '\(name)'\"")
        return Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    }

    /// Two `serve` replicas on a fresh database with a one-address pool; stopped when released.
    final class Replicas {
        let first: RunningCommand
        let second: RunningCommand
        let database: String
        private let directory: TemporaryDirectory

        init() async throws {
            let (url, name) = try await LongPollTests.database()
            database = name
            directory = try TemporaryDirectory()
            let pool = try directory.write("pool.csv", "203.0.113.10/32,US,,,,residential\n")
            first = try DatabaseOutageTests.serve(url, dataDir: directory.url.appendingPathComponent("a").path, pool: pool)
            second = try DatabaseOutageTests.serve(url, dataDir: directory.url.appendingPathComponent("b").path)
        }

        deinit {
            _ = first.stop()
            _ = second.stop()
        }
    }

    @Test func aChangeThroughOneReplicaWakesPollsOnTheOther() async throws {
        let replicas = try await Replicas()
        defer { withExtendedLifetime(replicas) {} }
        let (first, second) = (replicas.first, replicas.second)
        let admin = try AllocatorClient(base: "http://127.0.0.1:\(first.port)", token: Self.adminToken)
        let onSecond = try AllocatorClient(base: "http://127.0.0.1:\(second.port)", token: Self.adminToken)
        let hostToken = try await admin.addHost(NewHost(name: "h1")).token
        // Both answers are timed on the threads that wait for them (curl, off the cooperative
        // pool): back on the pool, a busy suite can hold either for longer than the 100 ms asked.
        func timed(port: Int, method: String? = nil, _ path: String, token: String, json: String? = nil) async throws -> (String, ContinuousClock.Instant) {
            try await offThePool {
                let (status, body) = try ServeTests.Server.request(port: port, method: method, path, token: token, json: json)
                let answered = ContinuousClock.now
                guard (200..<300).contains(status) else { throw CommandRunner.RunnerError("\(path) answered \(status): \(body)") }
                return (body, answered)
            }
        }
        var delays: [Duration] = []
        for _ in 0..<5 {
            let version = try await onSecond.sliceTable().version
            let poll = Task { try await timed(port: second.port, APIRoute.sliceTable.path + "?since=\(version)", token: Self.adminToken) }
            try await Task.sleep(for: .milliseconds(200))
            let (grantedBody, committed) = try await timed(port: first.port, method: "POST", APIRoute.acquire.path, token: hostToken, json: #"{"count": 1}"#)
            let granted = try JSONDecoder().decode(LeaseList.self, from: Data(grantedBody.utf8)).leases
            let (tableBody, answered) = try await poll.value
            let table = try JSONDecoder().decode(SliceTable.self, from: Data(tableBody.utf8))
            #expect(table.version > version)
            #expect(table.slices.contains { $0.address == granted[0].address && $0.index == granted[0].slice && $0.host == "h1" })
            delays.append(answered - committed)
        }
        delays.sort()
        #expect(delays[2] < .milliseconds(100), "the poll on the other replica answered \(delays) after the lease was granted")
    }

    /// A token verified (and kept) by one replica stops there as soon as another rotates it;
    /// a host removed through one loses its token on the other.
    @Test func aTokenRotatedThroughOneReplicaStopsOnTheOther() async throws {
        let replicas = try await Replicas()
        defer { withExtendedLifetime(replicas) {} }
        let admin = try AllocatorClient(base: "http://127.0.0.1:\(replicas.first.port)", token: Self.adminToken)
        let token = try await admin.addHost(NewHost(name: "h1")).token
        let onSecond = try AllocatorClient(base: "http://127.0.0.1:\(replicas.second.port)", token: token)
        for _ in 0..<3 { #expect(try await onSecond.leases().isEmpty) }
        let rotated = try await admin.rotateHost("h1").token
        func refusedOnSecond(_ client: AllocatorClient) async -> Bool {
            let deadline = ContinuousClock.now + .seconds(1)
            while ContinuousClock.now < deadline {
                do { _ = try await client.leases() } catch let failure as APIFailure where failure.status == 401 { return true } catch {}
                try? await Task.sleep(for: .milliseconds(20))
            }
            return false
        }
        #expect(await refusedOnSecond(onSecond), "the old token still works on the other replica")
        let renewed = try AllocatorClient(base: onSecond.base, token: rotated)
        #expect(try await renewed.leases().isEmpty)
        try await admin.removeHost("h1")
        #expect(await refusedOnSecond(renewed), "a removed host's token still works on the other replica")
    }

    @Test func waitingPollsCostTheDatabaseNothing() async throws {
        let replicas = try await Replicas()
        defer { withExtendedLifetime(replicas) {} }
        let (first, second, name) = (replicas.first, replicas.second, replicas.database)
        let admin = try AllocatorClient(base: "http://127.0.0.1:\(first.port)", token: Self.adminToken)
        let version = try await admin.sliceTable().version

        // The replicas' own work (expiry rounds each second) over 3 s, with nobody waiting...
        func transactionsOver(_ window: Duration) async throws -> Int {
            try await Task.sleep(for: .milliseconds(1500))  // counts published so far settle
            let before = try Self.transactions(name)
            try await Task.sleep(for: window)
            try await Task.sleep(for: .milliseconds(1500))
            return try Self.transactions(name) - before - 1  // less our own query
        }
        let idle = try await transactionsOver(.seconds(3))
        // ...and with 1,000 polls waiting on each replica.
        let polls = try (0..<2000).map { index in
            try WaitingPoll(port: index % 2 == 0 ? first.port : second.port, since: version, token: Self.adminToken)
        }
        let waiting = try await transactionsOver(.seconds(3))
        // Before, each poll read the version every 100 ms: 2,000 polls would have cost 60,000.
        #expect(waiting - idle < 20, "with nobody waiting \(idle) transactions in 3 s, with 2,000 polls waiting \(waiting)")

        // One change answers every one of them.
        let host = try AllocatorClient(base: admin.base, token: try await admin.addHost(NewHost(name: "h1")).token)
        _ = try await host.acquire(AcquireRequest(count: 1))
        let answers = polls.map { $0.answer(within: .seconds(10)) }
        let unanswered = answers.filter { !$0.hasPrefix("HTTP/1.1 200") }
        let kinds = Set(unanswered.map { String($0.prefix(40)) })
        #expect(unanswered.count == 0, "\(unanswered.count) of \(polls.count) polls got no table: \(kinds)")
    }
}

/// A `GET /v1/slices?since=V` sent on a socket of its own and left waiting, without a task or
/// thread per poll; its answer is read later.
final class WaitingPoll {
    private let descriptor: Int32

    init(port: Int, since version: Int64, token: String) throws {
        descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard connected == 0 else {
            close(descriptor)
            throw CommandRunner.RunnerError("cannot connect to the allocator on port \(port): errno \(errno)")
        }
        let request = "GET /v1/slices?since=\(version) HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer \(token)\r\nConnection: close\r\n\r\n"
        let sent = request.utf8CString.withUnsafeBufferPointer { send(descriptor, $0.baseAddress, $0.count - 1, 0) }
        guard sent == request.utf8.count else { throw CommandRunner.RunnerError("cannot send the poll: errno \(errno)") }
    }

    /// The first bytes of the answer, waiting at most `limit` for them; "" when none came.
    func answer(within limit: Duration) -> String {
        var watched = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        guard poll(&watched, 1, Int32(limit.components.seconds * 1000)) == 1 else { return "" }
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = recv(descriptor, &buffer, buffer.count, 0)
        return count > 0 ? String(decoding: buffer[..<count], as: UTF8.self) : ""
    }

    deinit { close(descriptor) }
}
