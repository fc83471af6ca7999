import Foundation
import Logging
import NIOCore
import NIOPosix
import PortSliceCore
import PortSliceDNS
import PortSliceSockets
import PortSliceTestSupport
import Synchronization
import Testing
@testable import PortSliceProxy

/// IPv6 egress and Happy Eyeballs (RFC 8305) on this machine's loopback, with no root: the
/// proxy's IPv6 "prefix" is ::1/128 (every client leaves from ::1), its IPv4 slice is on
/// 127.0.0.2, and names come from a name server the test runs.
@Suite("IPv6 egress and Happy Eyeballs (loopback)")
struct HappyEyeballsTests {
    static let loopback4 = IPv4Address(127, 0, 0, 1)
    static let loopback6 = try! IPv6Address(parsing: "::1")
    static let slice = try! EgressSlice(parsing: "127.0.0.2:43200-43299")

    /// A TCP listener on [::1] only (IPV6_V6ONLY, so the same port can serve IPv4 elsewhere)
    /// that echoes and records its peers.
    final class IPv6Echo: Sendable {
        final class PeerLog: Sendable {
            let list = Mutex<[String]>([])
        }

        let channel: any Channel
        private let log = PeerLog()

        /// Peers' addresses, in the order they connected.
        var peers: [String] { log.list.withLock { $0 } }

        /// The peers once there are `count` (the server takes a connection a little after the
        /// client sees it made), or those there are when the wait ends.
        func peers(count: Int) async -> [String] {
            try? await waitUntil { peers.count >= count }
            return peers
        }

        init(port: Int) async throws {
            let log = self.log
            channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(ChannelOptions.socket(SocketOptionLevel(IPPROTO_IPV6), IPV6_V6ONLY), value: 1)
                .childChannelInitializer { child in
                    log.list.withLock { $0.append(child.remoteAddress?.ipAddress ?? "?") }
                    return child.eventLoop.makeCompletedFuture { try child.pipeline.syncOperations.addHandler(Echo()) }
                }
                .bind(host: "::1", port: port).get()
        }

        var port: Int { channel.localAddress?.port ?? 0 }

        final class Echo: ChannelInboundHandler, Sendable {
            typealias InboundIn = ByteBuffer
            typealias OutboundOut = ByteBuffer
            func channelRead(context: ChannelHandlerContext, data: NIOAny) { context.writeAndFlush(data, promise: nil) }
        }
    }

    /// A listener on [::1] whose accept queue is full, so a SYN to it goes unanswered: a
    /// python3 process holds it (and the connections that fill it) until its input closes.
    final class SilentIPv6Port {
        let process = Process()
        let input = Pipe()
        let port: UInt16

        init() throws {
            let script = """
                import socket, sys
                s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s.bind(("::1", 0)); s.listen(0)
                port = s.getsockname()[1]
                fill = []
                for _ in range(4):
                    c = socket.socket(socket.AF_INET6, socket.SOCK_STREAM); c.setblocking(False)
                    try: c.connect(("::1", port))
                    except BlockingIOError: pass
                    fill.append(c)
                print(port, flush=True)
                sys.stdin.read()
                """
            let output = Pipe()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", "-c", script]
            process.standardInput = input
            process.standardOutput = output
            try process.run()
            let line = String(decoding: output.fileHandleForReading.availableData, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            port = try #require(UInt16(line), "the silent listener printed '\(line)'")
        }

        func stop() {
            try? input.fileHandleForWriting.close()
            process.waitUntilExit()
        }
    }

    /// A proxy sending IPv4 from `slice` and IPv6 from ::1, resolving with `server`.
    func withProxy(_ server: FakeNameServer, prefixes: Bool = true, _ body: (Endpoint) async throws -> Void) async throws {
        let slices = EgressSlices()
        try slices.replace(with: [(Self.slice, .unknown)])
        let egressPrefixes = EgressPrefixes(prefixes ? [(try IPv6Prefix(parsing: "::1/128"), .unknown)] : [])
        let resolver = ResolverSettings(servers: [server.endpoint], configuration: ResolverConfiguration(timeoutSeconds: 5, attempts: 1))
        try await InProcessProxy.serving(settings: ProxyServer.Settings(resolver: resolver), { pool in
            FlowOpener(slices: slices, prefixes: egressPrefixes, clientAddresses: ClientAddresses(key: Array(repeating: 7, count: 32)),
                       clientTraits: TraitIndex(feeds: []),
                       // ::1 is the egress "prefix" here, and a destination too: allowed by name, as --allow does.
                       policy: DestinationPolicy(allowLoopback: true, allow: [try IPPrefix(parsing: "::1/128")]), passwordChecks: pool)
        }) { proxy, _ in try await body(proxy) }
    }

    /// A SOCKS5 CONNECT with `address` (ATYP and its bytes) and `port` on a new connection;
    /// the whole reply, and the connection for the flow.
    func connect(_ proxy: Endpoint, _ address: [UInt8], port: UInt16) throws -> (reply: [UInt8], socket: CInt) {
        let socket = try UnslicedConnect.tcp(to: proxy)
        try socket.send([5, 1, 0])
        #expect(try socket.receive(timeout: .seconds(5)) == [5, 0])
        try socket.send([5, 1, 0] + address + [UInt8(port >> 8), UInt8(port & 0xff)])
        let reply = try socket.receive(timeout: .seconds(10))
        return (reply, socket.takeDescriptor())
    }

    static func name(_ text: String) -> [UInt8] { [3, UInt8(text.utf8.count)] + Array(text.utf8) }

    /// The TCP peers `echo` has seen once there are `count`, or those there are when the wait
    /// ends (a server takes a connection a little after the client sees it made).
    static func tcpPeers(_ echo: EchoServers, count: Int) async -> [Endpoint] {
        try? await waitUntil { echo.peers[.tcp, default: []].count >= count }
        return echo.peers[.tcp, default: []]
    }

    @Test("a name with A and AAAA: the flow leaves over IPv6 from the client's address in the prefix, and the reply names it")
    func ipv6First() async throws {
        let echo4 = try EchoServers(Endpoint(Self.loopback4, 0))
        let echo6 = try await IPv6Echo(port: Int(echo4.endpoint.port))
        let server = try await FakeNameServer(["dual.example": .dual(Self.loopback4, Self.loopback6)])
        try await withProxy(server) { proxy in
            let (reply, socket) = try connect(proxy, Self.name("dual.example"), port: echo4.endpoint.port)
            defer { StreamIO.close(socket) }
            #expect(reply.count == 22 && Array(reply.prefix(4)) == [5, 0, 0, 4] && Array(reply[4..<20]) == Array(repeating: 0, count: 15) + [1],
                    "an IPv6 bound address, ::1: \(reply)")
            #expect(await echo6.peers(count: 1) == ["::1"])
            #expect(echo4.peers[.tcp, default: []].isEmpty, "nothing over IPv4")
            #expect(Set(server.queries.map(\.type)) == [1, 28], "both A and AAAA asked")
        }
        try await echo6.channel.close()
        await server.close()
    }

    @Test("IPv6 black-holed: the IPv4 attempt starts 250 ms later and the flow leaves from the slice")
    func fallsBackToIPv4() async throws {
        let silent = try SilentIPv6Port()
        defer { silent.stop() }
        // TCP only: the port is fixed by the silent listener, and a UDP socket elsewhere may hold it.
        let echo4 = try EchoServers(Endpoint(Self.loopback4, silent.port), mode: .tcpSink)
        let server = try await FakeNameServer(["late.example": .dual(Self.loopback4, Self.loopback6)])
        try await withProxy(server) { proxy in
            let started = ContinuousClock.now
            let (reply, socket) = try connect(proxy, Self.name("late.example"), port: silent.port)
            let elapsed = ContinuousClock.now - started
            defer { StreamIO.close(socket) }
            #expect(reply.count == 10 && Array(reply.prefix(4)) == [5, 0, 0, 1] && Array(reply[4..<8]) == [127, 0, 0, 2], "\(reply)")
            let peer = try #require(await Self.tcpPeers(echo4, count: 1).last)
            #expect(peer.address == Self.slice.address && Self.slice.ports.contains(peer.port))
            #expect(elapsed >= .milliseconds(FlowOpener.happyEyeballsDelay), "IPv4 must wait for the IPv6 attempt's head start")
            print("happy eyeballs: connected over IPv4 after \(elapsed.formatted(.units(allowed: [.milliseconds]))) (IPv6 black-holed)")
        }
        await server.close()
    }

    @Test("an IPv6 literal goes over IPv6; without a prefix it is refused as unsupported (SOCKS reply 8) and a dual name goes over IPv4")
    func literalsAndNoPrefix() async throws {
        let echo4 = try EchoServers(Endpoint(Self.loopback4, 0))
        let echo6 = try await IPv6Echo(port: Int(echo4.endpoint.port))
        let server = try await FakeNameServer(["dual.example": .dual(Self.loopback4, Self.loopback6)])
        let literal: [UInt8] = [4] + Array(repeating: 0, count: 15) + [1]
        try await withProxy(server) { proxy in
            let (reply, socket) = try connect(proxy, literal, port: echo4.endpoint.port)
            StreamIO.close(socket)
            #expect(reply.prefix(2) == [5, 0])
            #expect(await echo6.peers(count: 1) == ["::1"])
        }
        try await withProxy(server, prefixes: false) { proxy in
            let (refused, first) = try connect(proxy, literal, port: echo4.endpoint.port)
            StreamIO.close(first)
            #expect(refused.prefix(2) == [5, 8])
            let (reply, second) = try connect(proxy, Self.name("dual.example"), port: echo4.endpoint.port)
            StreamIO.close(second)
            #expect(reply.prefix(4) == [5, 0, 0, 1])
            #expect(await Self.tcpPeers(echo4, count: 1).count == 1)
            #expect(server.queries.allSatisfy { $0.type == 1 }, "no AAAA asked for a client that cannot leave over IPv6")
        }
        try await echo6.channel.close()
        await server.close()
    }
}
