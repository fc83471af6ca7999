import AsyncHTTPClient
import Foundation
import NIOCore
import PortSliceTestSupport
import Synchronization
import Testing

/// Two `portslice serve` replicas on one PostgreSQL database, hosts acquiring and releasing
/// through both, one replica killed with SIGKILL midway. Afterwards, checked in SQL: no slice
/// has two holders, every lease a client was granted and kept is still there, and the log has
/// a record for every lease, closed for every release.
/// The PostgreSQL server .ci/run starts for the tests.
enum TestPostgres {
    static let url = ProcessInfo.processInfo.environment["PORTSLICE_TEST_POSTGRES_URL"]
    static let missing: Comment = "PORTSLICE_TEST_POSTGRES_URL is not set; .ci/run starts a PostgreSQL server and sets it"
}

@Suite("Replicas sharing PostgreSQL", .enabled(if: TestPostgres.url != nil, TestPostgres.missing))
struct ReplicaTests {
    static var base: String { TestPostgres.url ?? "" }

    /// What the clients saw.
    struct Ledger {
        var granted: Set<Int> = []
        var released: Set<Int> = []
        /// Releases whose answer was lost with the killed replica: they may or may not have happened.
        var uncertain: Set<Int> = []
        /// Leases granted by each replica.
        var grantedBy = [0, 0]
        var killed = false
    }

    final class SharedLedger: Sendable {
        let ledger = Mutex(Ledger())
    }

    @Test func killingOneReplicaLosesNothing() async throws {
        let (url, _) = try await ScratchSpace.database(on: Self.base)
        let directory = try TemporaryDirectory()
        let environment = ["PORTSLICE_ADMIN_TOKEN": ServeTests.adminToken, "PORTSLICE_DATABASE": url]
        let replicas = try (0..<2).map { index in
            try ServeTests.Server(dataDir: directory.url.appendingPathComponent("data\(index)").path, environment: environment)
        }
        defer { for replica in replicas where replica.process.isRunning { _ = replica.stop() } }

        let pool = try directory.write("pool.csv", "203.0.113.10/32,US,,,,residential\n")
        let imported = try await CommandRunner.run(
            ["pool", "import", pool], environment: ["PORTSLICE_SERVER": "http://127.0.0.1:\(replicas[0].port)", "PORTSLICE_TOKEN": ServeTests.adminToken])
        #expect(imported.status == 0, "\(imported.errorOutput)")
        var tokens: [String] = []
        for host in 0..<4 {
            let (status, body) = try replicas[host % 2].request("/v1/hosts", token: ServeTests.adminToken, json: #"{"name": "h\#(host)"}"#)
            #expect(status == 201)
            let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
            tokens.append(try #require(object?["token"] as? String))
        }

        // Phases are bounded by counts, not by the clock, so a slow machine only makes the test
        // slower: the victim is killed once both replicas have granted leases, and the clients go
        // on against the survivor for a fixed number of operations each (all within a time cap).
        let shared = SharedLedger()
        let ports = replicas.map(\.port)
        let victim = replicas[1].process.processIdentifier
        let cap = ContinuousClock.now + .seconds(60)
        let operationsAfterKill = 40
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, token) in tokens.enumerated() {
                let ports = ports
                group.addTask {
                    var mine: [Int] = []
                    var operations = 0
                    var afterKill = 0
                    while ContinuousClock.now < cap && afterKill < operationsAfterKill {
                        operations += 1
                        let killed = shared.ledger.withLock { $0.killed }
                        if killed { afterKill += 1 }
                        // Before the kill both replicas take turns; after it only the survivor answers.
                        let replica = killed ? 0 : (operations + index) % 2
                        if mine.count < 4 && (mine.isEmpty || operations % 3 != 0) {
                            if let ids = try? await Self.acquire(port: ports[replica], token: token) {
                                mine += ids
                                shared.ledger.withLock {
                                    $0.granted.formUnion(ids)
                                    $0.grantedBy[replica] += ids.count
                                }
                            }
                        } else if let id = mine.popLast() {
                            do {
                                if try await Self.release(port: ports[replica], token: token, id: id) {
                                    shared.ledger.withLock { _ = $0.released.insert(id) }
                                } else {
                                    mine.append(id)  // refused: still held
                                }
                            } catch {
                                shared.ledger.withLock { _ = $0.uncertain.insert(id) }
                            }
                        }
                    }
                }
            }
            group.addTask {
                while ContinuousClock.now < cap, shared.ledger.withLock({ $0.grantedBy.min()! < 10 }) {
                    try await Task.sleep(for: .milliseconds(20))
                }
                kill(victim, SIGKILL)
                shared.ledger.withLock { $0.killed = true }
            }
            try await group.waitForAll()
        }

        let seen = shared.ledger.withLock { $0 }
        #expect(seen.grantedBy[0] >= 10 && seen.grantedBy[1] >= 10, "both replicas granted leases before the kill: \(seen.grantedBy)")
        let leased = Set(try await PSQL.run(url, "SELECT lease_id FROM slices WHERE state = 'leased'").split(separator: "\n").compactMap { Int($0) })
        let kept = seen.granted.subtracting(seen.released).subtracting(seen.uncertain)
        #expect(kept.isSubset(of: leased), "granted and not released, yet gone: \(kept.subtracting(leased))")
        // Only a request cut off by the kill may have left a lease its client never heard of.
        #expect(leased.subtracting(kept).subtracting(seen.uncertain).count <= tokens.count)
        #expect(try await PSQL.run(url, "SELECT count(*) FROM (SELECT address, slice_index FROM assignments WHERE ended IS NULL GROUP BY 1, 2 HAVING count(*) > 1) AS doubled") == "0")
        #expect(try await PSQL.run(url, "SELECT count(*) FROM slices s LEFT JOIN assignments a ON a.lease_id = s.lease_id AND a.ended IS NULL WHERE s.state = 'leased' AND a.lease_id IS NULL") == "0")
        let logged = Set(try await PSQL.run(url, "SELECT lease_id FROM assignments").split(separator: "\n").compactMap { Int($0) })
        #expect(seen.granted.isSubset(of: logged))
        let closed = Set(try await PSQL.run(url, "SELECT lease_id FROM assignments WHERE ended IS NOT NULL").split(separator: "\n").compactMap { Int($0) })
        #expect(seen.released.isSubset(of: closed))
        #expect(replicas[0].stop() == 0, "the survivor stops cleanly")
    }

    private static func acquire(port: Int, token: String) async throws -> [Int] {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/leases")
        request.method = .POST
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        request.body = .bytes(ByteBuffer(string: #"{"count": 1, "ttlSeconds": 600}"#))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(5))
        let body = try await response.body.collect(upTo: 1 << 20)
        guard response.status == .created else { return [] }
        let object = try JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any]
        return (object?["leases"] as? [[String: Any]] ?? []).compactMap { $0["id"] as? Int }
    }

    private static func release(port: Int, token: String, id: Int) async throws -> Bool {
        var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/leases/\(id)")
        request.method = .DELETE
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(5))
        _ = try await response.body.collect(upTo: 1 << 20)
        return response.status == .noContent
    }
}
