import Foundation
import PortSliceCore
import PortSliceSockets
import Synchronization
import Testing

/// `portslice agent` and `portslice serve`'s demo as real processes: leases through the API,
/// flows through the proxy, the allocator killed and restarted under them.
@Suite("portslice agent")
struct AgentTests {
    static let adminToken = "admin-token-for-agent-tests-0123456789"

    /// A SOCKS5 CONNECT through `proxy` to `target`; returns the reply code.
    static func socksConnect(_ socket: borrowing ConnectedSocket, to target: Endpoint) throws -> UInt8 {
        try socket.send([5, 1, 0])
        guard try socket.receive(timeout: .seconds(5)) == [5, 0] else { return 0xff }
        let (a, b, c, d) = target.address.octets
        try socket.send([5, 1, 0, 1, a, b, c, d, UInt8(target.port >> 8), UInt8(target.port & 0xff)])
        let reply = try socket.receive(timeout: .seconds(10))
        return reply.count >= 2 ? reply[1] : 0xff
    }

    /// One flow through the proxy that echoes a few bytes every 100 ms until it is closed
    /// (or `limit` passes), on a thread of its own: when it ended and how many echoes came back.
    final class PingingFlow: Sendable {
        let echoes = Atomic<Int>(0)
        let endedAt = Mutex<ContinuousClock.Instant?>(nil)
        let reply = Mutex<UInt8?>(nil)

        init(proxy: Endpoint, target: Endpoint, limit: Duration) {
            Thread.detachNewThread { [self] in
                let stop = ContinuousClock.now + limit
                defer { endedAt.withLock { $0 = ContinuousClock.now } }
                guard let socket = try? UnslicedConnect.tcp(to: proxy) else { return }
                let code = try? AgentTests.socksConnect(socket, to: target)
                reply.withLock { $0 = code }
                guard code == 0 else { return }
                while ContinuousClock.now < stop {
                    guard (try? socket.send(Array("ping\n".utf8), timeout: .seconds(2))) != nil,
                          let answer = try? socket.receive(timeout: .seconds(2)), !answer.isEmpty else { return }
                    echoes.add(1, ordering: .relaxed)
                    Thread.sleep(forTimeInterval: 0.1)
                }
            }
        }

        var isOpen: Bool { endedAt.withLock { $0 == nil } }
    }

    @Test("allocator down for less than a lease time: flows go on; longer: the slice's flows end by the lease's deadline and nothing new leaves from it")
    func allocatorOutage() async throws {
        let directory = try TemporaryDirectory()
        let pool = try directory.write("pool.csv", "127.0.0.2/32,US,US-CA,San Jose,,residential,high\n")
        let dataDir = directory.url.appendingPathComponent("data").path
        let environment = ["PORTSLICE_ADMIN_TOKEN": Self.adminToken]
        let serveArguments = { (listen: String) in ["serve", "--listen", listen, "--data-dir", dataDir, "--pool", pool, "--slice-size", "1000"] }
        var allocator = try RunningCommand(serveArguments("127.0.0.1:0"), readyPattern: #"allocator listening on 127\.0\.0\.1:\d+"#, environment: environment)
        let server = "http://127.0.0.1:\(allocator.port)"
        let created = try await CommandRunner.run(["hosts", "add", "h1", "--server", server, "--token", Self.adminToken])
        #expect(created.status == 0, "\(created.errorOutput)")
        let hostToken = created.output.trimmingCharacters(in: .whitespacesAndNewlines)

        // Lease time 20 s: renewals every 5.3-8 s.
        let agent = try RunningCommand(
            ["agent", "--server", server, "--token", hostToken, "--want", "1", "--lease-time", "20", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
             "--allow", "127.0.0.1/32", "--no-host-setup"],
            // In the test's directory: the agent keeps its address key in ./portslice-data.
            readyPattern: #"proxy listening on 127\.0\.0\.1:\d+"#, directory: directory.url)
        let proxy = Endpoint(IPv4Address(127, 0, 0, 1), UInt16(agent.port))
        let echo = try EchoServers(Endpoint(IPv4Address(127, 0, 0, 1), 0))
        let flow = PingingFlow(proxy: proxy, target: echo.endpoint, limit: .seconds(80))
        try await Task.sleep(for: .seconds(1))
        #expect(flow.reply.withLock { $0 } == 0, "SOCKS reply")
        let source = try #require(echo.peers[.tcp]?.first)
        #expect(source.address == IPv4Address(127, 0, 0, 2))

        // A short outage, which the agent notices (a renewal fails) and outlasts: the flow
        // keeps going, and the agent renews once the allocator is back.
        allocator.stop(SIGKILL)
        let noticed = ContinuousClock.now + .seconds(15)
        while !agent.errors.contains("cannot renew leases") && ContinuousClock.now < noticed { try await Task.sleep(for: .milliseconds(100)) }
        #expect(agent.errors.contains("cannot renew leases"), "\(agent.errors)")
        #expect(flow.isOpen)
        let echoesDuringOutage = flow.echoes.load(ordering: .relaxed)
        allocator = try RunningCommand(serveArguments(String(server.dropFirst("http://".count))), readyPattern: #"allocator listening on 127\.0\.0\.1:\d+"#,
                                       environment: environment)
        let renewed = ContinuousClock.now + .seconds(10)
        while !agent.errors.contains("the allocator answers again") && ContinuousClock.now < renewed { try await Task.sleep(for: .milliseconds(100)) }
        #expect(agent.errors.contains("the allocator answers again"), "\(agent.errors)")
        #expect(flow.isOpen && flow.echoes.load(ordering: .relaxed) > echoesDuringOutage)

        // A long outage: by the lease's deadline (at most 20 s after the last renewal was sent,
        // which was before the kill) the flow is closed, and new flows are refused.
        allocator.stop(SIGKILL)
        let outage = ContinuousClock.now
        while flow.isOpen && ContinuousClock.now - outage < .seconds(25) { try await Task.sleep(for: .milliseconds(50)) }
        let ended = try #require(flow.endedAt.withLock { $0 }) - outage
        #expect(ended <= .milliseconds(20_500), "the flow ended \(ended) after the allocator went")
        #expect(ended >= .seconds(10), "the flow ended \(ended) after the allocator went, before its lease could have run out")
        #expect(agent.errors.contains("expired without renewal"), "\(agent.errors)")
        let late = try UnslicedConnect.tcp(to: proxy)
        #expect(try Self.socksConnect(late, to: echo.endpoint) == 1)
        // The echo server saw exactly the one flow: nothing new left from the expired slice.
        #expect(echo.peers[.tcp]?.count == 1)
        #expect(agent.stop() == 0)
    }

    @Test("`portslice serve` with no arguments: allocator, agent and proxy on 127.0.0.1:1080 (status page on 1081); curl through it; status names the slice")
    func demoOutOfTheBox() async throws {
        let directory = try TemporaryDirectory()
        let demo = try RunningCommand(["serve"], readyPattern: #"proxy listening on 127\.0\.0\.1:\d+"#, directory: directory.url)
        #expect(demo.port == 1080)
        let echo = try EchoServers(Endpoint(IPv4Address(127, 0, 0, 1), 0))
        let url = "http://127.0.0.1:\(echo.endpoint.port)/"
        // Loopback destinations are allowed in the demo; the client at 127.0.0.1 is in Los
        // Angeles (example geofeed) and leaves from 127.0.0.2, one at 127.0.0.10 is in Berlin.
        for (interface, egress) in [("127.0.0.1", IPv4Address(127, 0, 0, 2)), ("127.0.0.10", IPv4Address(127, 0, 0, 4))] {
            let curl = try await CommandRunner.curl(["--interface", interface, "--socks5-hostname", "127.0.0.1:1080", url]).body
            let seen = try #require(try? Endpoint(parsing: curl.trimmingCharacters(in: .whitespacesAndNewlines)), "curl said: \(curl)")
            #expect(seen.address == egress, "client \(interface) left from \(seen)")
            // `portslice status` names the flow and its slice, which holds the port the server saw.
            let status = try await CommandRunner.run(["status"], environment: ["PORTSLICE_DATA_DIR": directory.url.appendingPathComponent("portslice-data").path])
            #expect(status.status == 0, "\(status.errorOutput)")
            let line = try #require(status.output.split(separator: "\n").first { $0.contains(" \(seen) ") }, "\(status.output)")
            let slice = try EgressSlice(parsing: String(try #require(line.split(separator: " ").last)))
            #expect(slice.address == egress && slice.ports.contains(seen.port), "\(line)")
            #expect(status.output.contains("demo"), "the allocator's table names the demo host: \(status.output)")
        }
        let page = try await CommandRunner.curl(["http://127.0.0.1:1081/"]).body
        #expect(try await CommandRunner.curl(["http://127.0.0.1:1080/"]).body.contains("admin listener"), "the proxy port points to the admin pages")
        #expect(page.contains("Slices this proxy sends from") && page.contains("127.0.0.5:"), "\(page)")
        #expect(demo.stop() == 0, "\(demo.errors)")
    }
}
