import Foundation
import Glibc
import PortSliceCore
import PortSliceEdge
import PortSliceTestSupport
import Testing

/// `portslice agent` leasing an IPv6 prefix and its proxy sending from it, in two network
/// namespaces of the test's own (root): the host (allocator, agent, curl) and a server beyond a
/// link, an IPv6-only HTTP server at a documentation address that answers with the address it
/// saw.
@Suite("portslice agent with IPv6 prefixes (root)", .serialized, .enabled(if: RootOnly.isRoot, RootOnly.skipReason))
struct AgentIPv6Tests {
    // Not psl-: `lab down` removes those.
    static let hostNamespace = "portslice-v6-host"
    static let serverNamespace = "portslice-v6-server"
    static let server = "2001:db8:ff:1::2"
    static let pool = IPv6Prefix("2001:db8:100::/48")!

    /// The link between the namespaces, and the server's route back to the pool prefix through
    /// the host (the edge's job in production).
    static let setup: [[String]] = [
        ["ip", "netns", "add", hostNamespace],
        ["ip", "netns", "add", serverNamespace],
        ["ip", "-n", hostNamespace, "link", "set", "lo", "up"],
        ["ip", "-n", serverNamespace, "link", "set", "lo", "up"],
        ["ip", "-n", hostNamespace, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", serverNamespace],
        ["ip", "-n", hostNamespace, "-6", "address", "add", "2001:db8:ff:1::1/64", "dev", "eth0", "nodad"],
        ["ip", "-n", serverNamespace, "-6", "address", "add", "\(server)/64", "dev", "eth0", "nodad"],
        ["ip", "-n", hostNamespace, "link", "set", "eth0", "up"],
        ["ip", "-n", serverNamespace, "link", "set", "eth0", "up"],
        ["ip", "-n", serverNamespace, "-6", "route", "add", "\(pool)", "via", "2001:db8:ff:1::1"],
    ]

    /// Answers every GET with the client's address; prints a line once it listens.
    static let whoServer = """
        import http.server, socket
        class Who(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = (self.client_address[0] + "\\n").encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            def log_message(self, *arguments):
                pass
        class Server(http.server.HTTPServer):
            address_family = socket.AF_INET6
        server = Server(("\(server)", 8080), Who)
        print("listening", flush=True)
        server.serve_forever()
        """

    static func removeNamespaces() {
        for namespace in [hostNamespace, serverNamespace] { _ = try? SystemTool.run("ip", ["netns", "delete", namespace]) }
    }

    @Test("curl through the agent's proxy (SOCKS5 and CONNECT) reaches an IPv6 server from the host's prefix: one address per client, kept across connections and an agent restart, and `who` names the host")
    func proxySendsFromLeasedPrefix() async throws {
        Self.removeNamespaces()
        defer { Self.removeNamespaces() }
        for step in Self.setup { _ = try SystemTool.run(step[0], Array(step.dropFirst())) }

        let python = Process()
        (python.executableURL, python.arguments) = CommandRunner.invocation(["/usr/bin/env", "python3", "-c", Self.whoServer], namespace: Self.serverNamespace)
        let pythonOutput = Pipe()
        python.standardOutput = pythonOutput
        try python.run()
        // SIGKILL: a child of the test process may inherit SIGTERM ignored.
        defer { kill(python.processIdentifier, SIGKILL); python.waitUntilExit() }
        // The line comes once the socket listens (or the pipe ends when python fails).
        let heard = try await offThePool { String(decoding: pythonOutput.fileHandleForReading.availableData, as: UTF8.self) }
        #expect(heard.contains("listening"), "the IPv6 server did not start: \(heard)")

        let directory = try TemporaryDirectory()
        let poolFile = try directory.write("pool.csv", "192.0.2.10/32,US,US-CA,San Jose,,residential,high\n\(Self.pool),US,US-CA,San Jose,,residential,high\n")
        let environment = ["PORTSLICE_ADMIN_TOKEN": AgentTests.adminToken]
        let allocator = try RunningCommand(["serve", "--listen", "127.0.0.1:0", "--data-dir", directory.url.appendingPathComponent("data").path, "--pool", poolFile, "--slice-size", "1000"],
                                           readyPattern: #"allocator listening on 127\.0\.0\.1:\d+"#, environment: environment, namespace: Self.hostNamespace)
        defer { allocator.stop() }
        let base = "http://127.0.0.1:\(allocator.port)"
        let created = try await CommandRunner.run(["hosts", "add", "h1", "--server", base, "--token", AgentTests.adminToken], namespace: Self.hostNamespace)
        #expect(created.status == 0, "\(created.errorOutput)")
        let hostToken = created.output.trimmingCharacters(in: .whitespacesAndNewlines)

        // As root the agent routes its prefix to lo itself; the key keeps clients' addresses.
        let agentArguments = ["agent", "--server", base, "--token", hostToken, "--want", "1", "--lease-time", "20", "--listen", "127.0.0.1:0",
                              "--admin-listen", "127.0.0.1:0", "--allow", Self.server, "--address-key", directory.url.appendingPathComponent("address-key").path]
        var agent = try RunningCommand(agentArguments, readyPattern: #"proxy listening on 127\.0\.0\.1:\d+"#, namespace: Self.hostNamespace)
        defer { agent.stop() }
        #expect(agent.readyOutput.contains("1 IPv6 prefix(es)"), "\(agent.readyOutput)")
        let prefixText = try #require(agent.errors.firstMatch(of: /prefix lease \d+ \((\S+)\): acquired/)?.1, "\(agent.errors)")
        let prefix = try #require(IPv6Prefix(String(prefixText)))
        #expect(prefix.length == 64 && Self.pool.contains(prefix.network))
        let routes = try SystemTool.run("ip", ["-6", "route", "show", "table", "local", "dev", "lo"], in: Self.hostNamespace)
        #expect(routes.contains("local \(prefix) "), "\(routes)")

        let url = "http://[\(Self.server)]:8080/"
        /// The address the server saw for one request through the proxy, by `how`.
        func seen(_ how: [String], from client: String = "127.0.0.1") async throws -> IPv6Address {
            let answer = try await CommandRunner.curl(["--interface", client] + how + [url], namespace: Self.hostNamespace)
            let text = answer.body.trimmingCharacters(in: .whitespacesAndNewlines)
            return try #require(IPv6Address(text), "curl \(how) exited \(answer.status) with '\(text)'; agent said: \(agent.errors.suffix(600))")
        }
        // The proxy's port, of the agent running now.
        var socks: [String] { ["--socks5-hostname", "127.0.0.1:\(agent.port)"] }
        var connect: [String] { ["-p", "-x", "http://127.0.0.1:\(agent.port)"] }
        let first = try await seen(socks)
        #expect(prefix.contains(first), "\(first) is outside \(prefix)")
        #expect(try await seen(socks) == first, "a second connection of the same client left from another address")
        #expect(try await seen(connect) == first, "HTTP CONNECT left from another address than SOCKS5 for the same client")
        let other = try await seen(socks, from: "127.0.0.2")
        #expect(prefix.contains(other) && other != first, "another client: \(other), first: \(first)")
        #expect(try await seen(connect, from: "127.0.0.2") == other)

        // An agent stopped gracefully keeps its prefix lease (IPv6 is not scarce) and takes its
        // route off lo; started again, it adopts the prefix, and with the same key each client
        // keeps its address. So does one that dies.
        #expect(agent.stop() == 0, "\(agent.errors)")
        let stopped = try SystemTool.run("ip", ["-6", "route", "show", "table", "local", "dev", "lo"], in: Self.hostNamespace)
        #expect(!stopped.contains("\(prefix)"), "\(stopped)")
        let kept = try await CommandRunner.run(["leases", "--server", base, "--token", AgentTests.adminToken], namespace: Self.hostNamespace)
        #expect(kept.output.contains("\(prefix)"), "the prefix lease was released: \(kept.output)")
        for stop in [nil, SIGKILL] as [Int32?] {
            if let stop { agent.stop(stop) }
            agent = try RunningCommand(agentArguments, readyPattern: #"proxy listening on 127\.0\.0\.1:\d+"#, namespace: Self.hostNamespace)
            #expect(agent.errors.contains("prefix lease") && agent.errors.contains("adopted"), "\(agent.errors)")
            #expect(try await seen(socks) == first, "the client's address changed across the restart")
            #expect(try await seen(connect, from: "127.0.0.2") == other)
        }

        // The assignment log names the host for the address the server saw.
        let who = try await CommandRunner.run(["who", "\(first)", "--at", "now", "--server", base, "--token", AgentTests.adminToken], namespace: Self.hostNamespace)
        #expect(who.status == 0, "\(who.errorOutput)")
        let row = try #require(who.output.split(separator: "\n").first { $0.hasPrefix("h1 ") }, "\(who.output)")
        #expect(row.contains(" \(prefix) ") && row.hasSuffix(" now"), "\(who.output)")

        // A graceful stop takes the route off lo, though the run that died put it there.
        #expect(agent.stop() == 0, "\(agent.errors)")
        let after = try SystemTool.run("ip", ["-6", "route", "show", "table", "local", "dev", "lo"], in: Self.hostNamespace)
        #expect(!after.contains("\(prefix)"), "\(after)")
    }
}
