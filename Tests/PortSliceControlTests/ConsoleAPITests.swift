import Foundation
import Hummingbird
import HummingbirdTesting
import PortSliceAPI
import PortSliceCore
import PortSliceStore
import Testing
@testable import PortSliceControl

/// What the console reads beyond the slice table: hosts and their renewals, edges and the
/// versions they applied, the pool; the public geofeed; and the console's page itself.
extension ControlAPITests {
    @Test func hostsShowLeasesRenewalsAndWhatTheyAskFor() async throws {
        try await withAPI { client, clock in
            let host = try await setUp(client)
            let (_, viewerBody) = try await call(client, .post, "/v1/viewers", token: Self.adminToken, json: #"{"name": "noc"}"#)
            let viewer = try #require(viewerBody["token"] as? String)
            let (_, before) = try await call(client, .get, "/v1/hosts", token: viewer)
            let idle = try #require((before["hosts"] as? [[String: Any]])?.first)
            #expect(idle["name"] as? String == "h1" && idle["leases"] as? Int == 0 && idle["prefixLeases"] as? Int == 0
                    && idle["lastRenewal"] == nil && idle["renewalLate"] as? Bool == false)

            #expect(try await call(client, .post, "/v1/leases", token: host, json: #"{"country": "US", "count": 2, "ttlSeconds": 60}"#).0 == .created)
            #expect(try await call(client, .post, "/v1/prefixes", token: Self.adminToken, json: #"{"prefix": "2001:db8:10::/48", "country": "US"}"#).0 == .created)
            #expect(try await call(client, .post, "/v1/prefix-leases", token: host, json: #"{"country": "US", "ttlSeconds": 60}"#).0 == .created)
            clock.advance(.seconds(20))
            let (_, fresh) = try await call(client, .get, "/v1/hosts", token: viewer)
            let leasing = try #require((fresh["hosts"] as? [[String: Any]])?.first)
            #expect(leasing["leases"] as? Int == 2 && leasing["prefixLeases"] as? Int == 1)
            #expect(leasing["lastRenewal"] as? Int == Int(Self.start.milliseconds))
            #expect(leasing["renewalLate"] as? Bool == false)
            #expect((leasing["wants"] as? [[String: Any]])?.map { $0["country"] as? String } == ["US"], "\(leasing)")

            // Past half the 60 s lease time without a renewal: late. A renewal ends it.
            clock.advance(.seconds(11))
            let (_, stale) = try await call(client, .get, "/v1/hosts", token: viewer)
            #expect((stale["hosts"] as? [[String: Any]])?.first?["renewalLate"] as? Bool == true, "\(stale)")
            #expect(try await call(client, .post, "/v1/leases/renew", token: host, json: #"{"ttlSeconds": 60}"#).0 == .ok)
            let (_, renewed) = try await call(client, .get, "/v1/hosts", token: viewer)
            let after = try #require((renewed["hosts"] as? [[String: Any]])?.first)
            #expect(after["renewalLate"] as? Bool == false)
            #expect(after["lastRenewal"] as? Int == Int(Self.start.milliseconds) + 31_000)
        }
    }

    @Test func edgesReportTheVersionTheyApplied() async throws {
        try await withAPI { client, _ in
            let host = try await setUp(client)
            let (_, edgeBody) = try await call(client, .post, "/v1/edges", token: Self.adminToken, json: #"{"name": "router-1"}"#)
            let edge = try #require(edgeBody["token"] as? String)
            let (_, unreported) = try await call(client, .get, "/v1/edges", token: Self.adminToken)
            let silent = try #require((unreported["edges"] as? [[String: Any]])?.first)
            #expect(silent["name"] as? String == "router-1" && silent["appliedVersion"] == nil && silent["versionsBehind"] == nil)

            let (_, table) = try await call(client, .get, "/v1/slices?applied=0", token: edge)
            let version = try #require(table["version"] as? Int)
            #expect(try await call(client, .get, "/v1/slices?applied=\(version)", token: edge).0 == .ok)
            #expect(try await call(client, .post, "/v1/leases", token: host, json: "{}").0 == .created)
            let (_, report) = try await call(client, .get, "/v1/edges", token: Self.adminToken)
            #expect(report["tableVersion"] as? Int == version + 1)
            let reported = try #require((report["edges"] as? [[String: Any]])?.first)
            #expect(reported["appliedVersion"] as? Int == version)
            #expect(reported["versionsBehind"] as? Int == 1)
            #expect(reported["lastReport"] as? Int == Int(Self.start.milliseconds))

            let (refused, error) = try await call(client, .get, "/v1/slices?applied=-3", token: edge)
            #expect(refused == .badRequest && error["field"] as? String == "applied")
            // Only an edge reports: an admin's `applied` changes nothing.
            #expect(try await call(client, .get, "/v1/slices?applied=1", token: Self.adminToken).0 == .ok)
            #expect(((try await call(client, .get, "/v1/edges", token: Self.adminToken).1["edges"] as? [[String: Any]])?.first?["appliedVersion"] as? Int) == version)
        }
    }

    @Test func poolAndGeofeedFollowTheAddresses() async throws {
        try await withAPI { client, _ in
            _ = try await setUp(client)
            #expect(try await call(client, .post, "/v1/pool", token: Self.adminToken,
                                   json: #"{"address": "198.51.100.7", "country": "DE", "region": "DE-BE", "city": "Berlin", "category": "mobile", "reputation": "high", "slices": 2}"#).0 == .created)
            let (_, pool) = try await call(client, .get, "/v1/pool", token: Self.adminToken)
            let addresses = try #require(pool["addresses"] as? [[String: Any]])
            #expect(addresses.map { $0["address"] as? String } == ["198.51.100.7", "203.0.113.10"])
            #expect(addresses.map { $0["summary"] as? String } == ["DE/DE-BE/Berlin, mobile, reputation high", "US, residential"])
            #expect(addresses.map { $0["draining"] as? Bool } == [false, false])

            // The feed: only RFC 8805's five columns, in address order, valid as a geofeed.
            let (status, feed, tag, cache) = try await client.execute(uri: "/geofeed.csv", method: .get) { response in
                (response.status, String(buffer: response.body), response.headers[.eTag], response.headers[.cacheControl])
            }
            #expect(status == .ok)
            #expect(feed == "198.51.100.7/32,DE,DE-BE,Berlin,\n203.0.113.10/32,US,,,\n")
            #expect(cache == "public, max-age=86400")
            let parsed = try Geofeed.read(feed, source: "geofeed.csv")
            #expect(parsed.issues.isEmpty && parsed.entries.count == 2)
            let etag = try #require(tag)
            let unchanged = try await client.execute(uri: "/geofeed.csv", method: .get, headers: [.ifNoneMatch: etag]) { $0.status }
            #expect(unchanged == .notModified)

            // Drained, then removed: it leaves the feed, and the old tag no longer matches.
            #expect(try await call(client, .post, "/v1/pool/198.51.100.7/drain", token: Self.adminToken).0 == .noContent)
            let (_, draining) = try await call(client, .get, "/v1/pool", token: Self.adminToken)
            #expect((draining["addresses"] as? [[String: Any]])?.first?["draining"] as? Bool == true)
            #expect(try await call(client, .delete, "/v1/pool/198.51.100.7", token: Self.adminToken).0 == .noContent)
            let (afterStatus, after) = try await client.execute(uri: "/geofeed.csv", method: .get, headers: [.ifNoneMatch: etag]) { response in
                (response.status, String(buffer: response.body))
            }
            #expect(afterStatus == .ok && after == "203.0.113.10/32,US,,,\n")
        }
    }

    @Test func consolePageIsServedWithoutATokenAndLoadsNothingFromElsewhere() async throws {
        try await withAPI { client, _ in
            for (path, type, body) in [("/console", "text/html; charset=utf-8", ConsolePage.html),
                                       ("/console/console.css", "text/css; charset=utf-8", ConsolePage.css),
                                       ("/console/console.js", "text/javascript; charset=utf-8", ConsolePage.javaScript)] {
                let (status, contentType, policy, text) = try await client.execute(uri: path, method: .get) { response in
                    (response.status, response.headers[.contentType], response.headers[.contentSecurityPolicy], String(buffer: response.body))
                }
                #expect(status == .ok && contentType == type && text == body, "\(path)")
                #expect(policy == "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
            }
        }
    }

    @Test func viewerTokensRotateAndGo() async throws {
        try await withAPI { client, _ in
            _ = try await setUp(client)
            let (created, body) = try await call(client, .post, "/v1/viewers", token: Self.adminToken, json: #"{"name": "noc"}"#)
            #expect(created == .created && body["name"] as? String == "noc")
            let first = try #require(body["token"] as? String)
            #expect(try await call(client, .post, "/v1/viewers", token: Self.adminToken, json: #"{"name": "noc"}"#).0 == .conflict)
            #expect(try await call(client, .get, "/v1/capacity", token: first).0 == .ok)
            let (_, rotated) = try await call(client, .post, "/v1/viewers/noc/rotate", token: Self.adminToken)
            let second = try #require(rotated["token"] as? String)
            #expect(try await call(client, .get, "/v1/capacity", token: first).0 == .unauthorized)
            #expect(try await call(client, .get, "/v1/capacity", token: second).0 == .ok)
            #expect(try await call(client, .delete, "/v1/viewers/noc", token: Self.adminToken).0 == .noContent)
            #expect(try await call(client, .get, "/v1/capacity", token: second).0 == .unauthorized)
            #expect(try await call(client, .delete, "/v1/viewers/noc", token: Self.adminToken).0 == .notFound)
        }
    }
}
