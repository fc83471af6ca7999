import Foundation
import PortSliceTestSupport
import Testing

/// The operator console (`GET /console`) in a headless Chromium against a real
/// `portslice serve`: what the page shows matches the slice table exactly, it follows changes
/// without a reload, it refuses tokens that cannot read, and it stays quick with many addresses.
@Suite("Operator console in a headless browser", .serialized, .enabled(if: HeadlessBrowser.available, HeadlessBrowser.skipReason))
struct ConsoleBrowserTests {
    static let states = ["free", "leased", "quarantined", "draining"]

    /// Where the screenshot goes: the package's `.build` directory.
    static let screenshotPath = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent(".build/console-screenshot.png").path

    /// Per address, the number of slices in each of `states` as the page shows them.
    static let pageCounts = """
        Object.fromEntries([...document.querySelectorAll('[data-address]')].map((row) => [row.dataset.address,
          ['free', 'leased', 'quarantined', 'draining'].map((state) => row.querySelectorAll(`.slice[data-state="${state}"]`).length)]))
        """

    @Test("shows every address's slices as the table has them, and follows changes without a reload")
    func showsTheTableAndFollowsIt() async throws {
        try await offThePool {
            let directory = try TemporaryDirectory()
            let pool = try directory.write("pool.csv", """
                192.0.2.10/31,US,US-CA,Los Angeles,,residential,high
                192.0.2.20/32,DE,DE-BE,Berlin,,residential,high
                192.0.2.30/32,GB,GB-LND,London,,mobile,medium
                """)
            let server = try ServeTests.Server(
                dataDir: directory.url.appendingPathComponent("data").path, environment: ["PORTSLICE_ADMIN_TOKEN": ServeTests.adminToken],
                extra: ["--pool", pool, "--slice-size", "8192"])
            defer { _ = server.stop() }
            let api = API(port: server.port)
            let admin = ServeTests.adminToken

            // h1 takes two US slices (one on each US address) and gives one back: quarantined.
            let h1 = try api.token(api.call("POST", "/v1/hosts", token: admin, json: #"{"name": "h1", "labels": {"rack": "a"}}"#))
            let h2 = try api.token(api.call("POST", "/v1/hosts", token: admin, json: #"{"name": "h2"}"#))
            let viewer = try api.token(api.call("POST", "/v1/viewers", token: admin, json: #"{"name": "ops"}"#))
            let edge = try api.token(api.call("POST", "/v1/edges", token: admin, json: #"{"name": "e1"}"#))
            let acquired = try api.leases(api.call("POST", "/v1/leases", token: h1, json: #"{"country": "US", "count": 2}"#, expect: 201))
            try #require(acquired.count == 2)
            _ = try api.call("DELETE", "/v1/leases/\(acquired[0].id)", token: h1, expect: 204)
            let kept = acquired[1]
            _ = try api.call("POST", "/v1/pool/192.0.2.30/drain", token: admin, expect: 204)

            // The edge reports the table it applied: the current one, so it is 0 versions behind.
            _ = try api.call("GET", "/v1/slices?applied=\(try api.tableVersion(token: admin))", token: edge)

            // The table through the API, to hold the page to.
            let expected = try api.stateCounts(token: admin)
            #expect(expected["192.0.2.20"] == [7, 0, 0, 0])
            #expect(expected["192.0.2.30"] == [0, 0, 0, 7], "a drained address's free slices drain")
            let us = [expected["192.0.2.10"] ?? [], expected["192.0.2.11"] ?? []]
            #expect(us.map { $0.reduce(0, +) } == [7, 7])
            #expect(us.map { $0[1] }.reduce(0, +) == 1 && us.map { $0[2] }.reduce(0, +) == 1, "one US slice leased, one quarantined: \(us)")

            let browser = try HeadlessBrowser(url: "http://127.0.0.1:\(server.port)/console#token=\(viewer)")
            defer { browser.close() }
            try browser.waitUntil("window.portsliceConsole?.renders > 0 && document.querySelectorAll('[data-address]').length === 4")
            #expect(try browser.evaluate("location.hash", as: String.self) == "", "the token left the address bar")
            #expect(try browser.evaluate(Self.pageCounts, as: [String: [Int]].self) == expected)
            let holder = "document.querySelector('[data-address=\"\(kept.address)\"] .slice[data-index=\"\(kept.slice)\"]')?.dataset.host ?? null"
            #expect(try browser.evaluate(holder, as: String?.self) == "h1")
            #expect(try browser.evaluate("document.querySelectorAll('.slice[data-host]').length", as: Int.self) == 1)
            #expect(try browser.evaluate("window.portsliceConsole.version", as: Int.self) == api.tableVersion(token: admin))
            #expect(try browser.evaluate("document.querySelector('#hosts [data-host-row=\"h1\"]')?.textContent.includes('rack=a') ?? false", as: Bool.self))
            let edgeBehind = "document.querySelector('#edges [data-edge=\"e1\"] td:nth-child(3)')?.textContent ?? null"
            #expect(try browser.evaluate(edgeBehind, as: String?.self) == "0")

            // A change through the API reaches the open page through the long poll.
            try browser.evaluate("window.consoleTestMarker = true")
            let renders = try browser.evaluate("window.portsliceConsole.renders", as: Int.self)
            let h2Lease = try api.leases(api.call("POST", "/v1/leases", token: h2, json: #"{"country": "DE", "count": 1}"#, expect: 201))
            try #require(h2Lease.count == 1)
            try browser.waitUntil(
                "document.querySelector('[data-address=\"192.0.2.20\"] .slice[data-index=\"\(h2Lease[0].slice)\"]')?.dataset.host === 'h2'",
                timeout: .seconds(10))
            #expect(try browser.evaluate("window.consoleTestMarker === true", as: Bool.self), "the page was not reloaded")
            #expect(try browser.evaluate("window.portsliceConsole.renders", as: Int.self) > renders)
            #expect(try browser.evaluate("document.querySelector('#edges [data-edge=\"e1\"] .behind')?.textContent ?? null", as: String?.self) == "1",
                    "the edge is one version behind, highlighted")
            #expect(try browser.evaluate(Self.pageCounts, as: [String: [Int]].self) == api.stateCounts(token: admin))

            // The who form finds h2 on that slice now.
            let port = Int(h2Lease[0].ports.split(separator: "-")[0])!
            try browser.evaluate("""
                document.getElementById('who-address').value = '192.0.2.20';
                document.getElementById('who-port').value = '\(port)';
                document.getElementById('who-form').requestSubmit();
                """)
            try browser.waitUntil("document.getElementById('who-result').textContent.includes('still held')")
            #expect(try browser.evaluate("document.getElementById('who-result').textContent.includes('h2')", as: Bool.self))

            try browser.screenshot(to: Self.screenshotPath, fullPage: true)
            print("console screenshot: \(Self.screenshotPath)")
            #expect(try browser.consoleMessages().filter { $0.hasPrefix("exception") || $0.hasPrefix("error") } == [])
        }
    }

    @Test("asks for a token when it has none, a wrong one, or one that cannot read (a host's)")
    func refusesTokensThatCannotRead() async throws {
        try await offThePool {
            let directory = try TemporaryDirectory()
            let server = try ServeTests.Server(
                dataDir: directory.url.appendingPathComponent("data").path, environment: ["PORTSLICE_ADMIN_TOKEN": ServeTests.adminToken])
            defer { _ = server.stop() }
            let api = API(port: server.port)
            let host = try api.token(api.call("POST", "/v1/hosts", token: ServeTests.adminToken, json: #"{"name": "h1"}"#))
            let edge = try api.token(api.call("POST", "/v1/edges", token: ServeTests.adminToken, json: #"{"name": "e1"}"#))

            let browser = try HeadlessBrowser(url: "http://127.0.0.1:\(server.port)/console")
            defer { browser.close() }
            let loginShown = "!document.getElementById('login').hidden && document.getElementById('dashboard').hidden"
            let message = "document.getElementById('login-message').textContent"
            try browser.waitUntil(loginShown)
            #expect(try browser.evaluate("document.querySelectorAll('[data-address], .slice').length", as: Int.self) == 0)
            #expect(try browser.evaluate("document.querySelectorAll('#login input[type=password]').length", as: Int.self) == 1)

            for token in [host, edge] {
                try browser.navigate(to: "http://127.0.0.1:\(server.port)/console#token=\(token)")
                try browser.waitUntil("\(loginShown) && \(message).includes('cannot read the console')")
                #expect(try browser.evaluate(message, as: String.self).contains("use a viewer or admin token"))
            }
            try browser.navigate(to: "http://127.0.0.1:\(server.port)/console#token=not-a-token")
            try browser.waitUntil("\(loginShown) && \(message).includes('did not accept')")

            // Signing in through the form, then out again.
            try browser.evaluate("""
                document.getElementById('token-input').value = '\(ServeTests.adminToken)';
                document.getElementById('login-form').requestSubmit();
                """)
            try browser.waitUntil("document.getElementById('login').hidden && window.portsliceConsole.renders > 0")
            try browser.evaluate("document.getElementById('sign-out').click()")
            try browser.waitUntil(loginShown)
            #expect(try browser.evaluate("sessionStorage.length", as: Int.self) == 0)
            #expect(try browser.evaluate("document.querySelectorAll('.slice').length", as: Int.self) == 0)
        }
    }

    @Test("renders 1,000 addresses of 31 slices quickly and stays responsive with 10,000")
    func manyAddresses() async throws {
        let directory = try TemporaryDirectory()
        let server = try ServeTests.Server(
            dataDir: directory.url.appendingPathComponent("data").path, environment: ["PORTSLICE_ADMIN_TOKEN": ServeTests.adminToken])
        defer { _ = server.stop() }
        let console = "http://127.0.0.1:\(server.port)/console#token=\(ServeTests.adminToken)"
        let environment = ["PORTSLICE_SERVER": "http://127.0.0.1:\(server.port)", "PORTSLICE_TOKEN": ServeTests.adminToken]
        // Addresses 198.18.0.1 onwards (the benchmarking prefix), one geofeed line each.
        func poolFile(_ range: Range<Int>, name: String) throws -> String {
            try directory.write(name, range.map { "198.18.\($0 >> 8).\($0 & 255)/32,US,US-CA,Los Angeles,,residential,high" }.joined(separator: "\n") + "\n")
        }
        let thousand = try await CommandRunner.run(["pool", "import", try poolFile(1..<1001, name: "1000.csv")], environment: environment)
        #expect(thousand.output.contains("1000 address(es) added"), "\(thousand.output)\(thousand.errorOutput)")

        try await offThePool {
            let browser = try HeadlessBrowser(url: console)
            defer { browser.close() }
            try browser.waitUntil("window.portsliceConsole?.firstRenderMs != null", timeout: .seconds(30))
            let milliseconds = try browser.evaluate("window.portsliceConsole.firstRenderMs", as: Int.self)
            print("console first render: \(milliseconds) ms for 31000 slices")
            #expect(try browser.evaluate("document.querySelectorAll('[data-address]').length", as: Int.self) == 1000)
            #expect(try browser.evaluate("document.querySelectorAll('.slice').length", as: Int.self) == 31000)
        }

        let more = try await CommandRunner.run(["pool", "import", try poolFile(1001..<10001, name: "10000.csv")], environment: environment)
        #expect(more.output.contains("9000 address(es) added"), "\(more.output)\(more.errorOutput)")

        try await offThePool {
            let browser = try HeadlessBrowser(url: console)
            defer { browser.close() }
            try browser.waitUntil("window.portsliceConsole?.firstRenderMs != null", timeout: .seconds(60))
            let started = ContinuousClock.now
            #expect(try browser.evaluate("1 + 1", as: Int.self, timeout: 5) == 2)
            let answered = ContinuousClock.now - started
            #expect(answered < .seconds(3), "the page took \(answered) to answer")
            let milliseconds = try browser.evaluate("window.portsliceConsole.firstRenderMs", as: Int.self)
            print("console first render: \(milliseconds) ms for 310000 slices (10,000 addresses), answered an evaluate in \(answered)")
            #expect(try browser.evaluate("document.getElementById('space-count').textContent", as: String.self) == "10000 addresses")
            // Windowed: only rows near the viewport are in the DOM; scrolling brings others in.
            #expect(try browser.evaluate("document.querySelectorAll('[data-address]').length", as: Int.self) < 200)
            try browser.evaluate("document.getElementById('space').scrollTop = 5000 * 30")
            try browser.waitUntil("document.querySelector('[data-address=\"198.18.19.137\"]') !== null", timeout: .seconds(5))
        }
    }
}

/// The allocator's API through curl, for setting the scene.
private struct API {
    let port: Int

    struct Lease {
        let id: Int
        let address: String
        let slice: Int
        let ports: String
    }

    /// `curl -X method`; the body, after checking the status when `expect` is given.
    func call(_ method: String, _ path: String, token: String, json: String? = nil, expect: Int? = nil) throws -> String {
        let (status, body) = try ServeTests.Server.request(port: port, method: method, path, token: token, json: json)
        if let expect, status != expect {
            throw CommandRunner.RunnerError("\(method) \(path): HTTP \(status), expected \(expect): \(body)")
        }
        if expect == nil, !(200..<300).contains(status) {
            throw CommandRunner.RunnerError("\(method) \(path): HTTP \(status): \(body)")
        }
        return body
    }

    func object(_ body: String) throws -> [String: Any] {
        guard let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] else {
            throw CommandRunner.RunnerError("not a JSON object: \(body)")
        }
        return object
    }

    /// The token of an `IssuedToken` answer.
    func token(_ body: String) throws -> String {
        guard let token = try object(body)["token"] as? String else { throw CommandRunner.RunnerError("no token in \(body)") }
        return token
    }

    func leases(_ body: String) throws -> [Lease] {
        let leases = try object(body)["leases"] as? [[String: Any]] ?? []
        return leases.compactMap { lease in
            guard let id = lease["id"] as? Int, let address = lease["address"] as? String, let slice = lease["slice"] as? Int,
                  let ports = lease["ports"] as? String else { return nil }
            return Lease(id: id, address: address, slice: slice, ports: ports)
        }
    }

    /// Per address, its slices in each state (in `ConsoleBrowserTests.states` order), from `GET /v1/slices`.
    func stateCounts(token: String) throws -> [String: [Int]] {
        let slices = try object(call("GET", "/v1/slices", token: token))["slices"] as? [[String: Any]] ?? []
        var counts: [String: [Int]] = [:]
        for slice in slices {
            guard let address = slice["address"] as? String, let state = slice["state"] as? String,
                  let position = ConsoleBrowserTests.states.firstIndex(of: state) else { continue }
            counts[address, default: [0, 0, 0, 0]][position] += 1
        }
        return counts
    }

    func tableVersion(token: String) throws -> Int {
        try object(call("GET", "/v1/slices", token: token))["version"] as? Int ?? -1
    }
}
