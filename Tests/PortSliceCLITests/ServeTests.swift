import Foundation
import PortSliceStore
import Testing

/// `portslice serve` as an operator runs it: starts, answers, stops cleanly on SIGTERM, and
/// finds its data again on the next start.
@Suite("portslice serve")
struct ServeTests {
    /// An admin token of the length `serve` asks for.
    static let adminToken = "0123456789abcdef0123456789abcdef"

    /// A running `portslice serve` and the port it listens on.
    final class Server {
        let command: RunningCommand
        var port: Int { command.port }
        var process: Process { command.process }

        init(dataDir: String?, environment: [String: String] = [:], extra: [String] = []) throws {
            command = try RunningCommand(["serve"] + (dataDir.map { ["--listen", "127.0.0.1:0", "--data-dir", $0] } ?? []) + extra,
                                         readyPattern: #"allocator listening on 127\.0\.0\.1:\d+"#, environment: environment)
        }

        /// `curl` against the server: the HTTP status and the body.
        func request(_ path: String, token: String? = nil, json: String? = nil) throws -> (Int, String) {
            try Self.request(port: port, path, token: token, json: json)
        }

        /// `curl [-X method]` against the server on `port` (10 s at most): the status and the body.
        static func request(port: Int, method: String? = nil, _ path: String, token: String? = nil, json: String? = nil) throws -> (Int, String) {
            var arguments = ["curl", "-s", "--max-time", "10", "-o", "-", "-w", "\n%{http_code}", "http://127.0.0.1:\(port)\(path)"]
            if let method { arguments += ["-X", method] }
            if let token { arguments += ["-H", "Authorization: Bearer \(token)"] }
            if let json { arguments += ["-H", "Content-Type: application/json", "-d", json] }
            let curl = Process()
            curl.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            curl.arguments = arguments
            let pipe = Pipe()
            curl.standardOutput = pipe
            try curl.run()
            let answer = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            curl.waitUntilExit()
            let lines = answer.split(separator: "\n", omittingEmptySubsequences: false)
            return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
        }

        /// SIGTERM, then the exit status.
        func stop() -> Int32 { command.stop() }
    }

    /// A second allocator on a data directory that one serves is refused, naming the one that
    /// does (two on one SQLite file would not hear each other's changes); once that one has
    /// stopped, the directory serves another.
    @Test func aSecondAllocatorOnTheSameDataIsRefused() async throws {
        let directory = try TemporaryDirectory()
        let dataDir = directory.url.appendingPathComponent("data").path
        let first = try Server(dataDir: dataDir)
        let database = "\(dataDir)/portslice.sqlite"
        let refused = await #expect(throws: StoreError.self) { _ = try await SQLSliceStore.openSQLite(path: database) }
        #expect(refused?.description == "the SQLite database \(database) is in use by process \(first.process.processIdentifier): "
            + "a SQLite database serves one allocator. Stop that one, give this one a data directory of its own, or run replicas "
            + "on PostgreSQL (--database postgres://...)")
        #expect(first.stop() == 0)
        let second = try Server(dataDir: dataDir)
        #expect(try second.request("/healthz") == (200, "ok"))
        #expect(second.stop() == 0)
    }

    @Test func servesStopsCleanlyAndKeepsItsData() throws {
        let directory = try TemporaryDirectory()
        let dataDir = directory.url.appendingPathComponent("data").path
        let first = try Server(dataDir: dataDir)
        #expect(try first.request("/healthz") == (200, "ok"))
        let adminToken = try String(contentsOfFile: "\(dataDir)/admin-token", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(adminToken.count >= 32)
        let (created, body) = try first.request("/v1/hosts", token: adminToken, json: #"{"name": "h1"}"#)
        #expect(created == 201, "\(body)")
        #expect(try first.request("/v1/hosts", token: "not-the-token", json: #"{"name": "h2"}"#).0 == 401)
        #expect(first.stop() == 0)

        let second = try Server(dataDir: dataDir)
        #expect(try second.request("/v1/hosts", token: adminToken, json: #"{"name": "h1"}"#).0 == 409, "the host survived the restart")
        #expect(second.stop() == 0)

        let fromEnvironment = try Server(dataDir: dataDir, environment: ["PORTSLICE_ADMIN_TOKEN": "from-the-environment-0123456789abcdef"])
        #expect(try fromEnvironment.request("/v1/hosts", token: "from-the-environment-0123456789abcdef", json: #"{"name": "h3"}"#).0 == 201)
        #expect(fromEnvironment.stop() == 0)
    }

    /// A guessable admin token is refused at start, with a way to make a good one.
    @Test func shortAdminTokenIsRefused() async throws {
        let directory = try TemporaryDirectory()
        let refused = try await CommandRunner.run(
            ["serve", "--listen", "127.0.0.1:0", "--data-dir", directory.url.path], environment: ["PORTSLICE_ADMIN_TOKEN": "short-token"])
        #expect(refused.status == 1)
        #expect(refused.errorOutput.contains("the admin token is 11 characters; it must have at least 32"), "\(refused.errorOutput)")
        #expect(refused.errorOutput.contains("openssl rand -hex 32"))
    }

    /// Settings from a TOML file, below the command line and the environment in precedence.
    @Test func readsSettingsFromAConfigFile() async throws {
        let directory = try TemporaryDirectory()
        let dataDir = directory.url.appendingPathComponent("from-config").path
        let config = try directory.write("serve.toml", "data_dir = \"\(dataDir)\"\nlisten = \"127.0.0.1:0\"\nquarantine_seconds = 300\n")
        let server = try Server(dataDir: nil, environment: ["PORTSLICE_ADMIN_TOKEN": ServeTests.adminToken], extra: ["--config", config])
        #expect(try server.request("/healthz") == (200, "ok"))
        #expect(FileManager.default.fileExists(atPath: "\(dataDir)/portslice.sqlite"))
        #expect(server.stop() == 0)
        let bad = try directory.write("bad.toml", "listen = \"127.0.0.1:0\"\nquarantine_seconds = 60\n")
        let refused = try await CommandRunner.run(["serve", "--config", bad, "--data-dir", dataDir])
        #expect(refused.status == 1)
        #expect(refused.errorOutput.contains("quarantine of 60 s is below the 120 s minimum"))
        let unknown = try directory.write("unknown.toml", "colour = \"blue\"\n")
        let rejected = try await CommandRunner.run(["serve", "--config", unknown])
        #expect(rejected.errorOutput.contains("unknown.toml:1: unknown setting 'colour'"))
    }

    /// The operator's commands against a running allocator.
    @Test func adminCommandsDriveTheAllocator() async throws {
        let directory = try TemporaryDirectory()
        let server = try Server(dataDir: directory.url.appendingPathComponent("data").path, environment: ["PORTSLICE_ADMIN_TOKEN": ServeTests.adminToken])
        defer { _ = server.stop() }
        let environment = ["PORTSLICE_SERVER": "http://127.0.0.1:\(server.port)", "PORTSLICE_TOKEN": ServeTests.adminToken]
        func run(_ arguments: String...) async throws -> CommandRunner.Result {
            try await CommandRunner.run(arguments, environment: environment)
        }
        let pool = try directory.write("pool.csv", "203.0.113.10/31,US,US-CA,Los Angeles,,residential,high\n")
        let imported = try await run("pool", "import", pool, "--slice-size", "8192")
        #expect(imported.output.contains("2 address(es) added, 0 already in the pool"), "\(imported.errorOutput)")
        #expect(try await run("pool", "import", pool).output.contains("0 address(es) added, 2 already in the pool"))
        let added = try await run("hosts", "add", "proxy-1", "--label", "rack=a")
        let token = added.output.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(token.hasPrefix("proxy-1."))
        let (leased, _) = try server.request("/v1/leases", token: token, json: #"{"country": "US", "count": 2}"#)
        #expect(leased == 201)
        let leases = try await run("leases")
        #expect(leases.output.split(separator: "\n").filter { $0.contains("proxy-1") }.count == 2)
        let status = try await run("status")
        #expect(status.output.contains("203.0.113.10  7       1       6     0            0         proxy-1"), "\(status.output)")
        #expect(status.output.contains("US/US-CA/Los Angeles, residential, reputation high  12    2       0            0"), "\(status.output)")
        let who = try await run("who", "203.0.113.10", "1024", "--at", "now")
        #expect(who.output.contains("proxy-1") && who.output.contains("1024-9215"))
        let refused = try await run("pool", "remove", "203.0.113.10")
        #expect(refused.status == 1)
        #expect(refused.errorOutput.contains("HTTP 409"))
        let bad = try await run("hosts", "add", "Bad Name")
        #expect(bad.errorOutput.contains("(field 'name')"))
        let wrongToken = try await CommandRunner.run(["leases"], environment: ["PORTSLICE_SERVER": environment["PORTSLICE_SERVER"]!, "PORTSLICE_TOKEN": "nope"])
        #expect(wrongToken.errorOutput.contains("HTTP 401"))
        let nowhere = try await CommandRunner.run(["status"], environment: ["PORTSLICE_SERVER": "http://127.0.0.1:1", "PORTSLICE_TOKEN": ServeTests.adminToken])
        #expect(nowhere.errorOutput.contains("cannot reach the allocator at http://127.0.0.1:1"))
    }

    /// A pool file's IPv6 line becomes a pool prefix at start (leased in `--prefix-length`
    /// prefixes), a host leases a prefix of its own, the published feed lists the block after
    /// the addresses, and `who` names the host for an address in its prefix and nobody else.
    @Test func poolFileIPv6PrefixesAreLeasedAndLogged() async throws {
        let directory = try TemporaryDirectory()
        let pool = try directory.write("pool.csv", "203.0.113.10/32,US,US-CA,Los Angeles,,residential\n2001:db8:10::/48,US,US-CA,Los Angeles,,residential\n")
        let server = try Server(dataDir: directory.url.appendingPathComponent("data").path, environment: ["PORTSLICE_ADMIN_TOKEN": ServeTests.adminToken],
                                extra: ["--pool", pool, "--prefix-length", "64"])
        defer { _ = server.stop() }
        let (listed, prefixes) = try server.request("/v1/prefixes", token: ServeTests.adminToken)
        #expect(listed == 200 && prefixes.contains(#""prefix":"2001:db8:10::\/48""#) && prefixes.contains(#""leaseLength":64"#), "\(prefixes)")
        let (_, hostAnswer) = try server.request("/v1/hosts", token: ServeTests.adminToken, json: #"{"name": "h1"}"#)
        let token = try #require(try JSONSerialization.jsonObject(with: Data(hostAnswer.utf8)) as? [String: Any])["token"] as? String
        let (leased, lease) = try server.request("/v1/prefix-leases", token: token, json: #"{"country": "US"}"#)
        #expect(leased == 201 && lease.contains(#""prefix":"2001:db8:10:9026::\/64""#), "\(lease)")
        let (_, feed) = try server.request("/geofeed.csv")
        #expect(feed == "203.0.113.10/32,US,US-CA,Los Angeles,\n2001:db8:10::/48,US,US-CA,Los Angeles,\n")

        let environment = ["PORTSLICE_SERVER": "http://127.0.0.1:\(server.port)", "PORTSLICE_TOKEN": ServeTests.adminToken]
        let who = try await CommandRunner.run(["who", "2001:db8:10:9026::1234", "--at", "now"], environment: environment)
        #expect(who.output.contains("h1") && who.output.contains("2001:db8:10:9026::/64"), "\(who.output)\(who.errorOutput)")
        let nobody = try await CommandRunner.run(["who", "2001:db8:10:9027::1", "--at", "now"], environment: environment)
        #expect(nobody.output.contains("nobody held 2001:db8:10:9027::1"), "\(nobody.output)\(nobody.errorOutput)")
        let withPort = try await CommandRunner.run(["who", "2001:db8:10:9026::1", "80"], environment: environment)
        #expect(withPort.status != 0 && withPort.errorOutput.contains("held whole"), "\(withPort.errorOutput)")
        let leases = try await CommandRunner.run(["leases"], environment: environment)
        #expect(leases.output.contains("2001:db8:10:9026::/64"), "\(leases.output)")

        let tooLong = try await CommandRunner.run(["serve", "--data-dir", directory.url.appendingPathComponent("other").path, "--listen", "127.0.0.1:0",
                                                   "--prefix-length", "80"], environment: ["PORTSLICE_ADMIN_TOKEN": ServeTests.adminToken])
        #expect(tooLong.status == 1 && tooLong.errorOutput.contains("prefix length 80 must be from 1 to 64: hosts expect a /64 (SLAAC)"), "\(tooLong.errorOutput)")
        let importZero = try await CommandRunner.run(["pool", "import", pool, "--prefix-length", "0"], environment: environment)
        #expect(importZero.status != 0 && importZero.errorOutput.contains("--prefix-length 0 must be from 1 to 64: hosts expect a /64 (SLAAC)"),
                "\(importZero.errorOutput)")
    }
}
