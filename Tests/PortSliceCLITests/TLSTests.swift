import Foundation
import PortSliceAPI
import Testing

/// TLS wherever the control plane crosses a network: the allocator serving HTTPS, the admin
/// commands, the agent and the edge trusting a private CA and refusing anything else, and the
/// allocator's PostgreSQL connection honouring sslmode.
@Suite("TLS")
struct TLSTests {
    static let adminToken = ServeTests.adminToken

    static func serveHTTPS(_ certificates: TestCertificates, dataDir: String, pool: String? = nil) throws -> RunningCommand {
        try RunningCommand(
            ["serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--tls-cert", certificates.certificateFile, "--tls-key", certificates.keyFile]
                + (pool.map { ["--pool", $0, "--slice-size", "1000"] } ?? []),
            readyPattern: #"allocator listening on 127\.0\.0\.1:\d+ \(HTTPS\)"#, environment: ["PORTSLICE_ADMIN_TOKEN": adminToken])
    }

    @Test func commandsAgentAndEdgeOverHTTPS() async throws {
        let directory = try TemporaryDirectory()
        let trusted = try TestCertificates(directory: directory.url.appendingPathComponent("trusted").path, names: ["127.0.0.1", "localhost"])
        let stranger = try TestCertificates(directory: directory.url.appendingPathComponent("stranger").path, names: ["127.0.0.1"], caName: "another CA")
        let pool = try directory.write("pool.csv", "127.0.0.2/32,US,US-CA,San Jose,,residential,high\n")
        let server = try Self.serveHTTPS(trusted, dataDir: directory.url.appendingPathComponent("data").path, pool: pool)
        defer { _ = server.stop() }
        let url = "https://127.0.0.1:\(server.port)"

        let withCA = try await CommandRunner.run(["hosts", "add", "h1", "--server", url, "--token", Self.adminToken, "--ca", trusted.caFile])
        #expect(withCA.status == 0, "\(withCA.errorOutput)")
        let hostToken = withCA.output.trimmingCharacters(in: .whitespacesAndNewlines)
        let fromEnvironment = try await CommandRunner.run(["edges", "add", "router-1", "--server", url, "--token", Self.adminToken],
                                                          environment: ["PORTSLICE_CA": trusted.caFile])
        #expect(fromEnvironment.status == 0, "\(fromEnvironment.errorOutput)")
        let edgeToken = fromEnvironment.output.trimmingCharacters(in: .whitespacesAndNewlines)

        // Refused: the system's roots (which do not hold the private CA), another CA.
        for (arguments, what) in [([String](), "no --ca"), (["--ca", stranger.caFile], "another CA")] {
            let refused = try await CommandRunner.run(["leases", "--server", url, "--token", Self.adminToken] + arguments)
            #expect(refused.status == 1, "\(what)")
            #expect(refused.errorOutput.contains("TLS with the allocator at \(url) failed") && refused.errorOutput.contains("--ca"), "\(what): \(refused.errorOutput)")
        }

        // The agent over HTTPS leases its slice.
        let agent = try RunningCommand(
            ["agent", "--server", url, "--ca", trusted.caFile, "--token", hostToken, "--want", "1", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
             "--allow", "127.0.0.1/32", "--no-host-setup"],
            // In the test's directory: the agent keeps its address key in ./portslice-data.
            readyPattern: #"proxy listening on 127\.0\.0\.1:\d+"#, directory: directory.url)
        let admin = try AllocatorClient(base: url, token: Self.adminToken, caFile: trusted.caFile)
        let leases = try await admin.leases()
        #expect(leases.map(\.host) == ["h1"], "\(agent.errors)")
        #expect(agent.stop() == 0)

        // The edge with its edge token, and the guard with the host's token, over HTTPS.
        let edge = try await CommandRunner.run(["edge", "render", "--server", url, "--ca", trusted.caFile, "--token", edgeToken, "--host", "h1=192.0.2.2"])
        #expect(edge.status == 0, "\(edge.errorOutput)")
        #expect(edge.output.contains("127.0.0.2"), "\(edge.output)")
        let guardRules = try await CommandRunner.run(["edge", "render", "--host-guard", "h1", "--server", url, "--ca", trusted.caFile, "--token", hostToken])
        #expect(guardRules.status == 0, "\(guardRules.errorOutput)")
        #expect(guardRules.output.contains("portslice host guard for h1"))
        // An edge token is good for the table only.
        let edgeAsAdmin = try await CommandRunner.run(["leases", "--server", url, "--ca", trusted.caFile, "--token", edgeToken])
        #expect(edgeAsAdmin.status == 1 && edgeAsAdmin.errorOutput.contains("HTTP 403"), "\(edgeAsAdmin.errorOutput)")
    }

    @Test func aCertificateForAnotherNameIsRefused() async throws {
        let directory = try TemporaryDirectory()
        let otherName = try TestCertificates(directory: directory.url.appendingPathComponent("other").path, names: ["allocator.example"])
        let server = try Self.serveHTTPS(otherName, dataDir: directory.url.appendingPathComponent("data").path)
        defer { _ = server.stop() }
        let refused = try await CommandRunner.run(["leases", "--server", "https://127.0.0.1:\(server.port)", "--token", Self.adminToken, "--ca", otherName.caFile])
        #expect(refused.status == 1)
        #expect(refused.errorOutput.contains("TLS with the allocator") && refused.errorOutput.contains("names this host"), "\(refused.errorOutput)")
    }

    @Test func plainHTTPBeyondLoopbackIsWarnedAbout() throws {
        #expect(try AllocatorClient(base: "http://127.0.0.1:7300", token: "t").plainTextWarning == nil)
        #expect(try AllocatorClient(base: "https://192.0.2.5:7300", token: "t").plainTextWarning == nil)
        let warning = try #require(try AllocatorClient(base: "http://192.0.2.5:7300", token: "t").plainTextWarning)
        #expect(warning.contains("--tls-cert") && warning.contains("https://"))
        #expect(throws: AllocatorClientError.self) { try AllocatorClient(base: "http://127.0.0.1:7300", token: "t", caFile: "/nonexistent") }
        #expect(throws: AllocatorClientError.self) { try AllocatorClient(base: "ftp://127.0.0.1", token: "t") }
    }

    @Test(.enabled(if: ThrowawayPostgres.available, ThrowawayPostgres.unavailable))
    func postgresHonoursSSLMode() async throws {
        let directory = try TemporaryDirectory()
        let certificates = try TestCertificates(directory: directory.url.appendingPathComponent("pg").path, names: ["127.0.0.1"])
        let stranger = try TestCertificates(directory: directory.url.appendingPathComponent("stranger").path, names: ["127.0.0.1"], caName: "another CA")
        let postgres = try ThrowawayPostgres(tls: certificates.directory)
        let base = "postgres://postgres@127.0.0.1:\(postgres.port)/postgres"
        for (index, query) in ["sslmode=require", "sslmode=verify-full&sslrootcert=\(certificates.caFile)"].enumerated() {
            let server = try DatabaseOutageTests.serve("\(base)?\(query)", dataDir: directory.url.appendingPathComponent("data\(index)").path)
            let encrypted = try postgres.psql("SELECT count(*) FROM pg_stat_ssl WHERE ssl AND pid <> pg_backend_pid()")
            #expect((Int(encrypted) ?? 0) >= 1, "\(query): the allocator's connections use TLS")
            #expect(server.stop() == 0)
        }
        let refused = try await CommandRunner.run(
            ["serve", "--listen", "127.0.0.1:0", "--data-dir", directory.url.appendingPathComponent("refused").path,
             "--database", "\(base)?sslmode=verify-full&sslrootcert=\(stranger.caFile)"],
            environment: ["PORTSLICE_ADMIN_TOKEN": Self.adminToken])
        #expect(refused.status == 1)
        #expect(refused.errorOutput.contains("cannot connect to postgres://postgres@127.0.0.1:\(postgres.port)/postgres"), "\(refused.errorOutput)")
    }
}
