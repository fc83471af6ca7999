import Foundation
import Hummingbird
import HummingbirdTesting
import PortSliceAPI
import PortSliceCore
import PortSliceStore
import PortSliceTestSupport
import Synchronization
import Testing
@testable import PortSliceControl

/// The HTTP API in-process, on an in-memory SQLite store with a clock the test moves.
@Suite("Control API")
struct ControlAPITests {
    static let adminToken = "admin-secret-for-tests"
    static let start = Moment(milliseconds: 1_800_000_000_000)

    final class TestClock: Sendable {
        let moment = Mutex(ControlAPITests.start)
        func advance(_ duration: Duration) { moment.withLock { $0 = $0 + duration } }
        var now: Moment { moment.withLock { $0 } }
    }

    func withAPI(
        longPollTimeout: Duration = .seconds(2), _ body: @Sendable (any TestClientProtocol, TestClock) async throws -> Void
    ) async throws {
        let clock = TestClock()
        try await withAPI(longPollTimeout: longPollTimeout, now: { clock.now }) { client, _, _ in try await body(client, clock) }
    }

    /// The same, for tests that look inside the API and its store.
    func withAPI(
        longPollTimeout: Duration, now: @escaping @Sendable () -> Moment,
        _ body: @Sendable (any TestClientProtocol, ControlAPI, SQLSliceStore) async throws -> Void
    ) async throws {
        let store = try await SQLSliceStore.openSQLite(path: nil)
        var configured = ControlAPI(store: store, adminTokenHash: HostToken.hash(of: Self.adminToken), now: now)
        configured.longPollTimeout = longPollTimeout
        let api = configured
        let app = Application(router: api.router())
        try await app.test(.router) { client in try await body(client, api, store) }
        try await store.close()
    }

    func headers(_ token: String?) -> HTTPFields {
        var fields: HTTPFields = [.contentType: "application/json"]
        if let token { fields[.authorization] = "Bearer \(token)" }
        return fields
    }

    /// Sends a request and returns the status and the JSON body.
    func call(
        _ client: any TestClientProtocol, _ method: HTTPRequest.Method, _ uri: String, token: String?, json: String? = nil
    ) async throws -> (HTTPResponse.Status, [String: Any]) {
        try await client.execute(uri: uri, method: method, headers: headers(token), body: json.map { ByteBuffer(string: $0) }) { response in
            let object = (try? JSONSerialization.jsonObject(with: Data(response.body.readableBytesView))) as? [String: Any]
            return (response.status, object ?? [:])
        }
    }

    /// A pool of one US residential address (4 slices) and a host; returns the host's token.
    func setUp(_ client: any TestClientProtocol) async throws -> String {
        let (added, _) = try await call(client, .post, "/v1/pool", token: Self.adminToken,
            json: #"{"address": "203.0.113.10", "country": "US", "category": "residential", "range": "20000-23999", "slices": 4}"#)
        #expect(added == .created)
        let (created, body) = try await call(client, .post, "/v1/hosts", token: Self.adminToken, json: #"{"name": "h1"}"#)
        #expect(created == .created)
        return try #require(body["token"] as? String)
    }

    /// Adds an edge or a host (`path`: /v1/edges or /v1/hosts) as the admin; returns its token.
    func newToken(_ client: any TestClientProtocol, at path: String, name: String) async throws -> String {
        let (_, body) = try await call(client, .post, path, token: Self.adminToken, json: #"{"name": "\#(name)"}"#)
        return try #require(body["token"] as? String)
    }

    @Test func healthAndAuthentication() async throws {
        try await withAPI { client, _ in
            let health = try await client.execute(uri: "/healthz", method: .get) { String(buffer: $0.body) }
            #expect(health == "ok")
            let host = try await setUp(client)
            #expect(try await call(client, .get, "/v1/leases", token: nil).0 == .unauthorized)
            #expect(try await call(client, .get, "/v1/leases", token: "h1.0000").0 == .unauthorized)
            #expect(try await call(client, .get, "/v1/leases", token: "wrong-admin").0 == .unauthorized)
            #expect(try await call(client, .post, "/v1/hosts", token: host, json: #"{"name": "h2"}"#).0 == .forbidden)
            #expect(try await call(client, .post, "/v1/leases", token: Self.adminToken, json: "{}").0 == .forbidden)
            #expect(try await call(client, .get, "/v1/leases", token: host).0 == .ok)
        }
    }

    /// Every route admits exactly the roles the contract names: a host, edge or viewer token
    /// gets 403 on every admin route (so a viewer changes nothing) (with the route's roles named), admin gets 403 on host routes, and
    /// refused tokens are counted.
    @Test func everyRouteAdmitsOnlyItsRoles() async throws {
        try await withAPI { client, _ in
            let host = try await setUp(client)
            let (_, edgeBody) = try await call(client, .post, "/v1/edges", token: Self.adminToken, json: #"{"name": "router-1"}"#)
            let edge = try #require(edgeBody["token"] as? String)
            let (_, viewerBody) = try await call(client, .post, "/v1/viewers", token: Self.adminToken, json: #"{"name": "noc"}"#)
            let viewer = try #require(viewerBody["token"] as? String)
            let tokens: [Role: String] = [.admin: Self.adminToken, .host: host, .edge: edge, .viewer: viewer]
            for route in APIRoute.all where !route.roles.isEmpty {
                let path = route.path(["id": "1", "name": "nobody", "address": "203.0.113.99"])
                for (role, token) in tokens where !route.roles.contains(role) {
                    let method = HTTPRequest.Method(rawValue: route.method.rawValue)!
                    let (status, body) = try await call(client, method, path, token: token, json: route.method == .get ? nil : "{}")
                    #expect(status == .forbidden, "\(role) on \(route)")
                    let roles = route.roles.map(\.rawValue).sorted().joined(separator: " or ")
                    #expect(body["error"] as? String == "\(route) needs the \(roles) token", "\(body)")
                }
            }
            // What an edge may do: read the whole table, long poll included.
            let (status, table) = try await call(client, .get, "/v1/slices", token: edge)
            #expect(status == .ok && (table["slices"] as? [Any])?.count == 4)
            let version = try #require(table["version"] as? Int)
            #expect(try await call(client, .get, "/v1/slices?since=\(version - 1)", token: edge).0 == .ok)
            let metrics = try await client.execute(uri: "/metrics", method: .get) { String(buffer: $0.body) }
            let forbidden = APIRoute.all.reduce(0) { sum, route in route.roles.isEmpty ? sum : sum + Role.allCases.filter { !route.roles.contains($0) }.count }
            #expect(metrics.contains(#"portslice_authentication_failures_total{reason="forbidden"} \#(forbidden)"#), "\(metrics)")
        }
    }

    /// A rotated token stops working at once, the new one works; a removed host's or edge's
    /// token stops too, and a removed host's leases are quarantined.
    @Test func rotationAndRemoval() async throws {
        try await withAPI { client, _ in
            let host = try await setUp(client)
            #expect(try await call(client, .post, "/v1/leases", token: host, json: #"{"count": 2}"#).0 == .created)
            let (rotated, body) = try await call(client, .post, "/v1/hosts/h1/rotate", token: Self.adminToken)
            #expect(rotated == .ok && body["name"] as? String == "h1")
            let newToken = try #require(body["token"] as? String)
            #expect(try await call(client, .get, "/v1/leases", token: host).0 == .unauthorized)
            let (listed, leases) = try await call(client, .get, "/v1/leases", token: newToken)
            #expect(listed == .ok && (leases["leases"] as? [Any])?.count == 2, "rotation keeps the leases")
            #expect(try await call(client, .post, "/v1/hosts/h9/rotate", token: Self.adminToken).0 == .notFound)

            let (_, edgeBody) = try await call(client, .post, "/v1/edges", token: Self.adminToken, json: #"{"name": "router-1"}"#)
            let edge = try #require(edgeBody["token"] as? String)
            #expect(try await call(client, .post, "/v1/edges", token: Self.adminToken, json: #"{"name": "router-1"}"#).0 == .conflict)
            let (_, rotatedEdge) = try await call(client, .post, "/v1/edges/router-1/rotate", token: Self.adminToken)
            #expect(try await call(client, .get, "/v1/slices", token: edge).0 == .unauthorized)
            #expect(try await call(client, .get, "/v1/slices", token: try #require(rotatedEdge["token"] as? String)).0 == .ok)
            #expect(try await call(client, .delete, "/v1/edges/router-1", token: Self.adminToken).0 == .noContent)
            #expect(try await call(client, .get, "/v1/slices", token: try #require(rotatedEdge["token"] as? String)).0 == .unauthorized)

            #expect(try await call(client, .delete, "/v1/hosts/h1", token: Self.adminToken).0 == .noContent)
            #expect(try await call(client, .get, "/v1/leases", token: newToken).0 == .unauthorized)
            let (_, capacity) = try await call(client, .get, "/v1/capacity", token: Self.adminToken)
            let counts = try #require((capacity["classes"] as? [[String: Any]])?.first)
            #expect(counts["quarantined"] as? Int == 2 && counts["leased"] as? Int == 0, "\(counts)")
            #expect(try await call(client, .delete, "/v1/hosts/h1", token: Self.adminToken).0 == .notFound)
        }
    }

    @Test func leasesBelongToTheirHost() async throws {
        try await withAPI { client, clock in
            let h1 = try await setUp(client)
            let (_, other) = try await call(client, .post, "/v1/hosts", token: Self.adminToken, json: #"{"name": "h2"}"#)
            let h2 = try #require(other["token"] as? String)
            let (acquired, body) = try await call(client, .post, "/v1/leases", token: h1, json: #"{"country": "US", "count": 2, "ttlSeconds": 60}"#)
            #expect(acquired == .created)
            let leases = try #require(body["leases"] as? [[String: Any]])
            #expect(leases.count == 2)
            let id = try #require(leases.first?["id"] as? Int)
            #expect(leases.first?["address"] as? String == "203.0.113.10")
            clock.advance(.seconds(10))
            #expect(try await call(client, .post, "/v1/leases/\(id)/renew", token: h2, json: "{}").0 == .forbidden)
            #expect(try await call(client, .delete, "/v1/leases/\(id)", token: h2).0 == .forbidden)
            let (renewed, renewal) = try await call(client, .post, "/v1/leases/\(id)/renew", token: h1, json: #"{"ttlSeconds": 120}"#)
            #expect(renewed == .ok)
            #expect(renewal["expires"] as? Int == Int(Self.start.milliseconds) + 130_000)
            #expect((try await call(client, .get, "/v1/leases", token: h2).1["leases"] as? [Any])?.count == 0)
            // Renewing all leases at once touches only the caller's.
            #expect((try await call(client, .post, "/v1/leases/renew", token: h2, json: "{}").1["leases"] as? [Any])?.count == 0)
            let (renewedAll, all) = try await call(client, .post, "/v1/leases/renew", token: h1, json: #"{"ttlSeconds": 90}"#)
            #expect(renewedAll == .ok)
            #expect((all["leases"] as? [[String: Any]])?.compactMap { $0["expires"] as? Int } == [Int(Self.start.milliseconds) + 100_000, Int(Self.start.milliseconds) + 100_000])
            #expect(try await call(client, .post, "/v1/leases/renew", token: h1, json: #"{"ttlSeconds": 1}"#).0 == .badRequest)
            #expect((try await call(client, .get, "/v1/leases", token: Self.adminToken).1["leases"] as? [Any])?.count == 2)
            #expect(try await call(client, .delete, "/v1/leases/\(id)", token: h1).0 == .noContent)
            #expect(try await call(client, .delete, "/v1/leases/\(id)", token: h1).0 == .gone)
            #expect(try await call(client, .delete, "/v1/leases/99999", token: h1).0 == .notFound)
            // Two left free, one quarantined: three more cannot be had until the quarantine ends.
            #expect(try await call(client, .post, "/v1/leases", token: h2, json: #"{"count": 3}"#).0 == .serviceUnavailable)
            clock.advance(.seconds(241))
            #expect(try await call(client, .post, "/v1/leases", token: h2, json: #"{"count": 3}"#).0 == .created)
            let port = try #require((leases.first?["ports"] as? String)?.split(separator: "-").first)
            let (found, holders) = try await call(
                client, .get, "/v1/who?address=203.0.113.10&port=\(port)&at=\(Self.start.milliseconds + 5_000)", token: Self.adminToken)
            #expect(found == .ok)
            #expect((holders["records"] as? [[String: Any]])?.first?["host"] as? String == "h1", "\(holders) port \(port)")
        }
    }

    /// A request for a route answered ahead of the router: the token it carries, its body,
    /// the router's status for it, and whether `DirectRoute`'s responder declines it.
    typealias AnsweredAhead = (token: String?, body: String, status: HTTPResponse.Status, declined: Bool)

    static func directHead(path: String, token: String?) -> HTTPRequest {
        var fields: HTTPFields = [:]
        if let token { fields[.authorization] = "Bearer \(token)" }
        return HTTPRequest(method: .post, scheme: "http", authority: "localhost", path: path, headerFields: fields)
    }

    /// Sends each case to `POST path` both ways, to the responder ahead of the router
    /// (`direct`) and then through the router: the router answers with the case's status, the
    /// responder declines what the case says, and what it answers is the router's answer byte
    /// for byte.
    func expectRoutersAnswers(
        _ cases: [AnsweredAhead], path: String, _ client: any TestClientProtocol, direct: (HTTPRequest, ByteBuffer) async -> DirectRoute.Answer?
    ) async throws {
        for (token, body, status, declined) in cases {
            let head = Self.directHead(path: path, token: token)
            let answered = await direct(head, ByteBuffer(string: body))
            let (routerStatus, routerBody) = try await client.execute(
                uri: path, method: .post, headers: head.headerFields, body: ByteBuffer(string: body)
            ) { ($0.status, String(buffer: $0.body)) }
            #expect(routerStatus == status, "\(body)")
            #expect((answered == nil) == declined, "\(body)")
            if let answered {
                #expect(answered.status == routerStatus, "\(body)")
                #expect(String(buffer: answered.json) == routerBody, "\(body)")
            }
        }
    }

    /// `serve` answers `POST /v1/leases/renew` ahead of the router (`DirectRoute`): its
    /// answers are the router's byte for byte, and what it declines is what the router refuses
    /// before anything changes. Both count into the same request metrics.
    @Test func renewalsAnsweredAheadOfTheRouterAreTheRoutersAnswers() async throws {
        let clock = TestClock()
        try await withAPI(longPollTimeout: .seconds(2), now: { clock.now }) { client, api, _ in
            let h1 = try await setUp(client)
            let h2 = try await newToken(client, at: "/v1/hosts", name: "h2")
            let edge = try await newToken(client, at: "/v1/edges", name: "e1")
            #expect(try await call(client, .post, "/v1/leases", token: h1, json: #"{"country": "US", "count": 2, "ttlSeconds": 60}"#).0 == .created)
            clock.advance(.seconds(10))
            let cases: [AnsweredAhead] = [
                (h1, #"{"ttlSeconds": 120}"#, .ok, false),
                (h1, "", .ok, false),  // the default lease time
                (h2, "{}", .ok, false),  // holds nothing
                (h1, #"{"ttlSeconds": 1}"#, .badRequest, false),  // refused by the store
                (h1, "{nope", .badRequest, true),
                (h1, #"{"ttlSeconds": "soon"}"#, .badRequest, true),
                (edge, "{}", .forbidden, true),
                (Self.adminToken, "{}", .forbidden, true),
                ("h1.0000", "{}", .unauthorized, true),
                (nil, "{}", .unauthorized, true),
            ]
            try await expectRoutersAnswers(cases, path: "/v1/leases/renew", client) { await api.directRenewal($0, $1) }
            let metrics = try await client.execute(uri: "/metrics", method: .get) { String(buffer: $0.body) }
            #expect(metrics.contains(#"portslice_api_requests_total{route="/v1/leases/renew",method="POST",status="200"} 6"#), "\(metrics)")
            #expect(metrics.contains(#"portslice_api_requests_total{route="/v1/leases/renew",method="POST",status="400"} 4"#), "\(metrics)")
        }
    }

    /// `serve` answers `POST /v1/leases` ahead of the router too: a grant is the lease list
    /// the router shows for the host afterwards, a refusal the router's byte for byte, and
    /// what it declines is what the router refuses before anything changes.
    @Test func acquiresAnsweredAheadOfTheRouterAreTheRoutersAnswers() async throws {
        let clock = TestClock()
        try await withAPI(longPollTimeout: .seconds(2), now: { clock.now }) { client, api, _ in
            let h1 = try await setUp(client)
            let edge = try await newToken(client, at: "/v1/edges", name: "e1")
            let granted = try #require(await api.directAcquire(
                Self.directHead(path: "/v1/leases", token: h1), ByteBuffer(string: #"{"country": "US", "count": 3, "ttlSeconds": 60}"#)))
            #expect(granted.status == .created)
            let listed = try await client.execute(uri: "/v1/leases", method: .get, headers: headers(h1)) { String(buffer: $0.body) }
            #expect(String(buffer: granted.json) == listed)
            #expect(String(buffer: granted.json).contains(#""ports":"20000-20999""#), "\(String(buffer: granted.json))")

            let cases: [AnsweredAhead] = [
                (h1, #"{"count": 2}"#, .serviceUnavailable, false),  // one slice is left
                (h1, #"{"count": 1, "ttlSeconds": 1}"#, .badRequest, false),  // refused by the store
                (h1, #"{"count": 0}"#, .badRequest, false),
                (h1, #"{"count": "two"}"#, .badRequest, true),
                (h1, "{nope", .badRequest, true),
                (edge, "{}", .forbidden, true),
                (Self.adminToken, "{}", .forbidden, true),
                ("h1.0000", "{}", .unauthorized, true),
                (nil, "{}", .unauthorized, true),
            ]
            try await expectRoutersAnswers(cases, path: "/v1/leases", client) { await api.directAcquire($0, $1) }
            let metrics = try await client.execute(uri: "/metrics", method: .get) { String(buffer: $0.body) }
            #expect(metrics.contains(#"portslice_api_requests_total{route="/v1/leases",method="POST",status="201"} 1"#), "\(metrics)")
            #expect(metrics.contains(#"portslice_api_requests_total{route="/v1/leases",method="POST",status="503"} 2"#), "\(metrics)")
            #expect(metrics.contains(#"portslice_api_requests_total{route="/v1/leases",method="POST",status="400"} 6"#), "\(metrics)")
        }
    }

    @Test(arguments: [
        ("/v1/leases", #"{"count": 0}"#, "count"),
        ("/v1/leases", #"{"ttlSeconds": 1}"#, "ttlSeconds"),
        ("/v1/leases", #"{"country": "XX"}"#, "country"),
        ("/v1/leases", #"{"country": "US", "region": "DE-BE"}"#, "region"),
        ("/v1/leases", #"{"category": "cellular"}"#, "category"),
        ("/v1/leases", #"{"count": "two"}"#, "count"),
        ("/v1/pool", #"{"address": "203.0.113.300"}"#, "address"),
        ("/v1/pool", #"{"address": "203.0.113.20", "range": "9-2"}"#, "range"),
        ("/v1/pool", #"{"address": "203.0.113.20", "sliceSize": 0}"#, "sliceSize"),
        ("/v1/pool", #"{"country": "US"}"#, "address"),
        ("/v1/hosts", #"{"name": "Bad Name"}"#, "name"),
    ])
    func badInputNamesTheField(uri: String, json: String, field: String) async throws {
        try await withAPI { client, _ in
            let host = try await setUp(client)
            let (status, body) = try await call(client, .post, uri, token: uri == "/v1/leases" ? host : Self.adminToken, json: json)
            #expect(status == .badRequest)
            #expect(body["field"] as? String == field, "\(body)")
            #expect((body["error"] as? String)?.isEmpty == false)
        }
    }

    @Test func metricsCountSlicesPerTraitClassAndState() async throws {
        try await withAPI { client, _ in
            let host = try await setUp(client)
            #expect(try await call(client, .post, "/v1/leases", token: host, json: #"{"count": 3}"#).0 == .created)
            let text = try await client.execute(uri: "/metrics", method: .get) { String(buffer: $0.body) }
            #expect(text.contains(#"portslice_slices{traits="US, residential",state="leased"} 3"#), "\(text)")
            #expect(text.contains(#"portslice_slices{traits="US, residential",state="free"} 1"#))
            #expect(text.contains("portslice_leases 3"))
            // Requests per route, method and status, and their times per route and method.
            #expect(text.contains(#"portslice_api_requests_total{route="/v1/leases",method="POST",status="201"} 1"#), "\(text)")
            #expect(text.contains(#"portslice_api_request_duration_seconds_count{route="/v1/leases",method="POST"} 1"#), "\(text)")
            // A method of a client's own making is counted as "other", not as a label of its own.
            _ = try await client.execute(uri: "/healthz", method: HTTPRequest.Method("BREW")!)
            let after = try await client.execute(uri: "/metrics", method: .get) { String(buffer: $0.body) }
            #expect(after.contains(#"method="other""#) && !after.contains("BREW"), "\(after)")
        }
    }

    @Test func capacityWarnsBeforeAClassRunsOut() async throws {
        try await withAPI { client, _ in
            let host = try await setUp(client)
            let (_, roomy) = try await call(client, .get, "/v1/capacity", token: Self.adminToken)
            let before = try #require((roomy["classes"] as? [[String: Any]])?.first)
            #expect(before["free"] as? Int == 4 && before["warning"] == nil)
            #expect(try await call(client, .post, "/v1/leases", token: host, json: #"{"count": 4}"#).0 == .created)
            let (_, full) = try await call(client, .get, "/v1/capacity", token: Self.adminToken)
            let after = try #require((full["classes"] as? [[String: Any]])?.first)
            #expect(after["leased"] as? Int == 4)
            #expect((after["warning"] as? String)?.hasPrefix("no free slice") == true)
        }
    }

    /// An edge waiting with `since` hears of a new lease before its wait runs out, and gets
    /// the same version back when nothing changed. The wait is long enough that a machine
    /// busy with the other tests still answers the change first.
    @Test func sliceTableLongPoll() async throws {
        let wait = Duration.seconds(8)
        try await withAPI(longPollTimeout: wait) { client, _ in
            let host = try await setUp(client)
            let (status, table) = try await call(client, .get, "/v1/slices", token: Self.adminToken)
            #expect(status == .ok)
            let version = try #require(table["version"] as? Int)
            #expect((table["slices"] as? [Any])?.count == 4)
            let clock = ContinuousClock()
            let started = clock.now
            async let waited = call(client, .get, "/v1/slices?since=\(version)", token: Self.adminToken)
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await call(client, .post, "/v1/leases", token: host, json: "{}").0 == .created)
            let (_, newer) = try await waited
            #expect((newer["version"] as? Int ?? 0) > version)
            #expect(clock.now - started < wait, "the change arrives before the wait runs out")
            let (_, unchanged) = try await call(client, .get, "/v1/slices?since=\(newer["version"] as? Int ?? 0)", token: Self.adminToken)
            #expect(unchanged["version"] as? Int == newer["version"] as? Int)
            #expect(try await call(client, .get, "/v1/slices?since=x", token: Self.adminToken).0 == .badRequest)
            let (own, ownTable) = try await call(client, .get, "/v1/slices", token: host)
            #expect(own == .ok)
            #expect((ownTable["slices"] as? [Any])?.count == 1, "a host sees its own leased slice only: \(ownTable)")
        }
    }

    /// A change wakes every waiting edge at once; they all get the new table, encoded once for
    /// all of them, while a host still gets only its own part.
    @Test func waitingEdgesShareOneEncodingOfTheTable() async throws {
        try await withAPI(longPollTimeout: .seconds(20), now: { Self.start }) { client, api, store in
            let encoded = api.wholeTables
            let host = try await setUp(client)
            let edge = try await newToken(client, at: "/v1/edges", name: "e1")
            let (_, table) = try await call(client, .get, "/v1/slices", token: edge)
            let version = try #require(table["version"] as? Int)
            #expect(encoded.makings == 1)
            let waiters = 20
            let bodies = try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0..<waiters {
                    group.addTask {
                        try await client.execute(uri: "/v1/slices?since=\(version)", method: .get, headers: headers(edge)) { String(buffer: $0.body) }
                    }
                }
                try await waitUntil(checkingEvery: .milliseconds(5)) { store.versions.waiters >= waiters }
                #expect(store.versions.waiters == waiters, "every long poll waits before the change")
                #expect(try await call(client, .post, "/v1/leases", token: host, json: "{}").0 == .created)
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(bodies.count == waiters && Set(bodies).count == 1, "every edge gets the same table")
            let newer = try #require(try JSONSerialization.jsonObject(with: Data(bodies[0].utf8)) as? [String: Any])
            #expect(newer["version"] as? Int == version + 1)
            #expect((newer["slices"] as? [[String: Any]])?.filter { $0["host"] as? String == "h1" }.count == 1)
            #expect(encoded.makings == 2, "one encoding for the first version, one for the new one")
            let (_, own) = try await call(client, .get, "/v1/slices", token: host)
            #expect((own["slices"] as? [Any])?.count == 1, "a host's own part is not the shared table: \(own)")
            #expect(encoded.makings == 2)
        }
    }

    /// A host's long poll answers when its own part changes, not at every change in the fleet:
    /// another host's lease moves the table's version but leaves the first host waiting.
    @Test func aHostsLongPollWaitsForItsOwnPart() async throws {
        try await withAPI(longPollTimeout: .seconds(20), now: { Self.start }) { client, api, store in
            let parts = api.hostParts
            let first = try await setUp(client)
            let second = try await newToken(client, at: "/v1/hosts", name: "h2")
            let (_, table) = try await call(client, .get, "/v1/slices", token: first)
            let version = try #require(table["version"] as? Int)
            #expect((table["slices"] as? [Any])?.isEmpty == true)

            let clock = ContinuousClock()
            async let waited = call(client, .get, "/v1/slices?since=\(version)", token: first)
            try await waitUntil(checkingEvery: .milliseconds(5)) { store.versions.waiters == 1 }
            #expect(try await call(client, .post, "/v1/leases", token: second, json: "{}").0 == .created)
            let otherChange = store.versions.version
            #expect(otherChange > Int64(version))
            // Woken by h2's lease, h1's poll found its part unchanged and waits again.
            try await waitUntil(checkingEvery: .milliseconds(5)) { parts.makings == 2 && store.versions.waiters == 1 }
            #expect(store.versions.waiters == 1, "h1's poll waits on after another host's change")

            let started = clock.now
            #expect(try await call(client, .post, "/v1/leases", token: first, json: "{}").0 == .created)
            let (status, own) = try await waited
            #expect(status == .ok)
            #expect(clock.now - started < .seconds(10), "its own lease answers it")
            #expect(own["version"] as? Int == Int(store.versions.version))
            let slices = try #require(own["slices"] as? [[String: Any]])
            #expect(slices.count == 1 && slices[0]["host"] as? String == "h1", "\(own)")
        }
    }

    @Test func malformedAndOversizedBodiesAreRefused() async throws {
        try await withAPI { client, _ in
            let host = try await setUp(client)
            #expect(try await call(client, .post, "/v1/leases", token: host, json: "{not json").0 == .badRequest)
            let large = "{\"tags\": [\"" + String(repeating: "x", count: 70_000) + "\"]}"
            #expect(try await call(client, .post, "/v1/leases", token: host, json: large).0 == .contentTooLarge)
            #expect(try await call(client, .post, "/v1/hosts", token: Self.adminToken, json: #"{"name": "h1"}"#).0 == .conflict)
            #expect(try await call(client, .post, "/v1/pool/203.0.113.99/drain", token: Self.adminToken).0 == .notFound)
            #expect(try await call(client, .delete, "/v1/leases/abc", token: host).0 == .badRequest)
        }
    }
}
