import Logging
import NIOCore
import NIOPosix
import PortSliceCore
import PortSliceDNS
import PortSliceSockets
import Synchronization
import Testing
@testable import PortSliceProxy

/// A name server run by the test on loopback (UDP and TCP on one port): it records every
/// query it gets and answers each name as the test set it to.
final class FakeNameServer: Sendable {
    enum Behaviour: Sendable {
        /// One A record with this TTL.
        case address(IPv4Address, ttl: UInt32)
        /// An A and an AAAA record.
        case dual(IPv4Address, IPv6Address)
        /// Over UDP a truncated answer; over TCP the address.
        case truncated(IPv4Address)
        /// First a datagram with the wrong ID naming `forged`, then the real answer.
        case forgedFirst(real: IPv4Address, forged: IPv4Address)
        /// NXDOMAIN with an SOA allowing `negativeTTL` seconds of caching.
        case noSuchName(negativeTTL: UInt32)
        /// Never answers.
        case silent
    }

    struct Query: Sendable, Equatable {
        let overTCP: Bool
        let name: String
        let type: UInt16
        /// The EDNS Client Subnet sent, as `address/prefix`.
        let clientSubnet: String?
    }

    let endpoint: Endpoint
    private let behaviours: [String: Behaviour]
    private let recorded = Mutex<[Query]>([])
    private let channels: [any Channel]

    var queries: [Query] { recorded.withLock { $0 } }

    init(_ behaviours: [String: Behaviour]) async throws {
        self.behaviours = behaviours
        let group = MultiThreadedEventLoopGroup.singleton
        let box = HandlerBox()
        // UDP and TCP on one port number: a port free for UDP may be taken for TCP, so a few tries.
        var bound: (udp: any Channel, tcp: any Channel)?
        for _ in 0..<20 where bound == nil {
            let udp = try await DatagramBootstrap(group: group)
                .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(UDPAnswerer(box: box)) } }
                .bind(host: "127.0.0.1", port: 0).get()
            do {
                let tcp = try await ServerBootstrap(group: group)
                    .childChannelInitializer { channel in channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(TCPAnswerer(box: box)) } }
                    .bind(host: "127.0.0.1", port: udp.localAddress!.port!).get()
                bound = (udp, tcp)
            } catch {
                try await udp.close()
            }
        }
        let (udp, tcp) = try #require(bound, "no port free for both UDP and TCP in 20 tries")
        endpoint = Endpoint(IPv4Address(127, 0, 0, 1), UInt16(udp.localAddress!.port!))
        channels = [udp, tcp]
        box.server.withLock { $0 = self }
    }

    func close() async {
        for channel in channels { try? await channel.close() }
    }

    /// What to send back for `query` (a whole message), each datagram in order; empty: nothing.
    func answers(to message: [UInt8], overTCP: Bool) -> [[UInt8]] {
        // Read with the answer parser: the query's question and OPT record are laid out as an
        // answer's are, once it is marked as one.
        var marked = message
        guard marked.count > 12 else { return [] }
        marked[2] |= 0x80
        guard let parsed = try? DNSResponse(parsing: marked) else { return [] }
        let name = parsed.question.name.description.lowercased()
        let subnet = parsed.clientSubnet.map { "\($0.address)/\($0.sourcePrefixLength)" }
        recorded.withLock { $0.append(Query(overTCP: overTCP, name: name, type: parsed.question.type.rawValue, clientSubnet: subnet)) }
        let id = UInt16(message[0]) << 8 | UInt16(message[1])
        // The question section as the query sent it: from byte 12 to the end of QTYPE/QCLASS.
        var end = 12
        while message[end] != 0 { end += Int(message[end]) + 1 }
        let question = Array(message[12..<(end + 5)])
        // A name's own behaviour, else its closest parent's (`slow.example` covers `n1.slow.example`).
        let labels = name.split(separator: ".")
        let behaviour = labels.indices.lazy.compactMap { self.behaviours[labels[$0...].joined(separator: ".")] }.first
        if case .dual(let v4, let v6)? = behaviour {
            return [Self.message(id: id, question: question, rcode: 0, answers: parsed.question.type == .a ? [(.v4(v4), 60)] : [(.v6(v6), 60)])]
        }
        guard parsed.question.type == .a else { return [Self.message(id: id, question: question, rcode: 0, answers: [])] }
        switch behaviour {
        case .address(let address, let ttl)?:
            return [Self.message(id: id, question: question, rcode: 0, answers: [(.v4(address), ttl)])]
        case .truncated(let address)?:
            return overTCP ? [Self.message(id: id, question: question, rcode: 0, answers: [(.v4(address), 60)])]
                : [Self.message(id: id, question: question, rcode: 0, answers: [], truncated: true)]
        case .forgedFirst(let real, let forged)?:
            return [Self.message(id: id &+ 1, question: question, rcode: 0, answers: [(.v4(forged), 60)]),
                    Self.message(id: id, question: question, rcode: 0, answers: [(.v4(real), 60)])]
        case .noSuchName(let negativeTTL)?:
            return [Self.message(id: id, question: question, rcode: 3, answers: [], negativeTTL: negativeTTL)]
        case .silent?:
            return []
        case .dual?:
            return []  // answered above
        case nil:
            return [Self.message(id: id, question: question, rcode: 3, answers: [])]
        }
    }

    static func message(id: UInt16, question: [UInt8], rcode: UInt8, answers: [(IPAddress, UInt32)],
                        truncated: Bool = false, negativeTTL: UInt32? = nil) -> [UInt8] {
        func u16(_ value: UInt16) -> [UInt8] { [UInt8(value >> 8), UInt8(value & 0xff)] }
        func u32(_ value: UInt32) -> [UInt8] { u16(UInt16(value >> 16)) + u16(UInt16(value & 0xffff)) }
        let flags: UInt16 = 0x8180 | (truncated ? 0x0200 : 0) | UInt16(rcode)
        var bytes = u16(id) + u16(flags) + u16(1) + u16(UInt16(answers.count)) + u16(negativeTTL == nil ? 0 : 1) + u16(0) + question
        for (address, ttl) in answers {
            switch address {
            case .v4(let v4):
                let (a, b, c, d) = v4.octets
                bytes += [0xC0, 12] + u16(1) + u16(1) + u32(ttl) + u16(4) + [a, b, c, d]
            case .v6(let v6):
                bytes += [0xC0, 12] + u16(28) + u16(1) + u32(ttl) + u16(16) + (0..<16).map { UInt8(truncatingIfNeeded: v6.bits >> (120 - 8 * $0)) }
            }
        }
        if let negativeTTL {
            // An SOA at the root: mname and rname the root, then serial, refresh, retry, expire, minimum.
            bytes += [0] + u16(6) + u16(1) + u32(negativeTTL) + u16(22) + [0, 0] + u32(1) + u32(3600) + u32(600) + u32(86400) + u32(negativeTTL)
        }
        return bytes
    }

    final class HandlerBox: Sendable {
        let server = Mutex<FakeNameServer?>(nil)
        func answers(_ message: [UInt8], overTCP: Bool) -> [[UInt8]] { server.withLock { $0 }?.answers(to: message, overTCP: overTCP) ?? [] }
    }

    final class UDPAnswerer: ChannelInboundHandler, Sendable {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        typealias OutboundOut = AddressedEnvelope<ByteBuffer>
        let box: HandlerBox
        init(box: HandlerBox) { self.box = box }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            for answer in box.answers(Array(envelope.data.readableBytesView), overTCP: false) {
                context.writeAndFlush(wrapOutboundOut(AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: ByteBuffer(bytes: answer))), promise: nil)
            }
        }
    }

    final class TCPAnswerer: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        let box: HandlerBox
        var pending: [UInt8] = []
        init(box: HandlerBox) { self.box = box }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            pending += Array(unwrapInboundIn(data).readableBytesView)
            guard pending.count >= 2, pending.count >= 2 + (Int(pending[0]) << 8 | Int(pending[1])) else { return }
            let length = Int(pending[0]) << 8 | Int(pending[1])
            let message = Array(pending[2..<(2 + length)])
            pending.removeFirst(2 + length)
            for answer in box.answers(message, overTCP: true) {
                context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: [UInt8(answer.count >> 8), UInt8(answer.count & 0xff)] + answer)), promise: nil)
            }
        }
    }
}

/// The proxy's own resolver, on its loops, against a name server the test runs: what it
/// asks, what it believes, what it keeps, and that a silent server holds no one else up.
@Suite("stub resolver on the proxy's loops")
struct ResolverTests {
    static let loopback = IPv4Address(127, 0, 0, 1)
    static let egress = try! EgressSlice(parsing: "127.0.0.2:43000-43099")

    /// A proxy sending from `egress`, resolving with `server` (no search list), and an echo
    /// server to reach.
    func withProxy(_ server: FakeNameServer, ecs: Bool = true, lookupsPerClient: Int = 32, timeoutSeconds: Int = 5,
                   _ body: (Endpoint, EchoServers) async throws -> Void) async throws {
        let slices = EgressSlices()
        try slices.replace(with: [(Self.egress, .unknown)])
        let resolver = ResolverSettings(servers: [server.endpoint], configuration: ResolverConfiguration(timeoutSeconds: timeoutSeconds, attempts: 1),
                                        sendsClientSubnet: ecs, lookupsPerClient: lookupsPerClient)
        let echo = try EchoServers(Endpoint(Self.loopback, 0))
        try await InProcessProxy.serving(settings: ProxyServer.Settings(resolver: resolver), { pool in
            FlowOpener(slices: slices, clientTraits: TraitIndex(feeds: []), policy: DestinationPolicy(allowLoopback: true), passwordChecks: pool)
        }) { proxy, _ in try await body(proxy, echo) }
    }

    /// Sends a SOCKS5 CONNECT by name on `socket` (connected to the proxy).
    func request(_ socket: borrowing ConnectedSocket, _ name: String, port: UInt16) throws {
        try socket.send([5, 1, 0])
        #expect(try socket.receive(timeout: .seconds(5)) == [5, 0])
        try socket.send([5, 1, 0, 3, UInt8(name.utf8.count)] + Array(name.utf8) + [UInt8(port >> 8), UInt8(port & 0xff)])
    }

    /// The SOCKS5 reply code that comes on `socket`.
    func reply(_ socket: borrowing ConnectedSocket) throws -> UInt8 {
        let bytes = try socket.receive(timeout: .seconds(10))
        return bytes.count > 1 ? bytes[1] : 0xff
    }

    /// A CONNECT by name on a new connection; its reply code.
    func connect(_ proxy: Endpoint, to name: String, port: UInt16) throws -> UInt8 {
        let socket = try UnslicedConnect.tcp(to: proxy)
        try request(socket, name, port: port)
        return try reply(socket)
    }

    @Test("asks A with the egress address's /24 as client subnet, connects to the answer, and answers a repeat from the cache")
    func asksWithClientSubnetAndCaches() async throws {
        let server = try await FakeNameServer(["geo.example": .address(Self.loopback, ttl: 300)])
        try await withProxy(server) { (proxy, echo) async throws in
            let flow = try UnslicedConnect.tcp(to: proxy)
            try request(flow, "geo.example", port: echo.endpoint.port)
            #expect(try reply(flow) == 0)
            try flow.send(Array("hello".utf8))
            #expect(try flow.receive(timeout: .seconds(5)) == Array("hello".utf8))
            #expect(server.queries == [.init(overTCP: false, name: "geo.example", type: 1, clientSubnet: "127.0.0.0/24")])
            // Within the TTL: no second query.
            #expect(try connect(proxy, to: "GEO.example", port: echo.endpoint.port) == 0)
            #expect(server.queries.count == 1)
        }
        await server.close()
    }

    @Test("--ecs off sends no client subnet")
    func clientSubnetOff() async throws {
        let server = try await FakeNameServer(["plain.example": .address(Self.loopback, ttl: 300)])
        try await withProxy(server, ecs: false) { (proxy, echo) async throws in
            #expect(try connect(proxy, to: "plain.example", port: echo.endpoint.port) == 0)
            #expect(server.queries == [.init(overTCP: false, name: "plain.example", type: 1, clientSubnet: nil)])
        }
        await server.close()
    }

    @Test("a truncated answer is asked again over TCP; a forged answer with the wrong ID is ignored")
    func truncationAndForgery() async throws {
        let server = try await FakeNameServer([
            "big.example": .truncated(Self.loopback),
            "spoofed.example": .forgedFirst(real: Self.loopback, forged: IPv4Address(127, 0, 0, 9)),
        ])
        try await withProxy(server) { (proxy, echo) async throws in
            #expect(try connect(proxy, to: "big.example", port: echo.endpoint.port) == 0)
            #expect(server.queries.map(\.overTCP) == [false, true])
            let flow = try UnslicedConnect.tcp(to: proxy)
            try request(flow, "spoofed.example", port: echo.endpoint.port)
            #expect(try reply(flow) == 0, "the forged answer (127.0.0.9, where nothing listens) would have been refused")
            try flow.send(Array("real".utf8))
            #expect(try flow.receive(timeout: .seconds(5)) == Array("real".utf8))
        }
        await server.close()
    }

    @Test("NXDOMAIN answers host unreachable (4) and is kept for its negative TTL")
    func negativeAnswersAreCached() async throws {
        let server = try await FakeNameServer(["gone.example": .noSuchName(negativeTTL: 300)])
        try await withProxy(server) { (proxy, _) async throws in
            #expect(try connect(proxy, to: "gone.example", port: 80) == 4)
            #expect(try connect(proxy, to: "gone.example", port: 80) == 4)
            #expect(server.queries.count == 1)
        }
        await server.close()
    }

    @Test("1,000 lookups to a server that never answers: the client's 33rd on are refused at once, and another client's connections go on")
    func silentServerHoldsNoOneElse() async throws {
        let server = try await FakeNameServer(["slow.example": .silent, "fast.example": .address(Self.loopback, ttl: 300)])
        try await withProxy(server, lookupsPerClient: 32, timeoutSeconds: 30) { (proxy, echo) async throws in
            // 1,000 SOCKS requests for distinct silent names from this client (127.0.0.1).
            var waiting: [CInt] = []
            defer { waiting.forEach(StreamIO.close) }
            var refusedAtOnce = 0
            for index in 0..<1000 {
                let socket = try UnslicedConnect.tcp(to: proxy)
                try request(socket, "n\(index).slow.example", port: 80)
                if index >= 32 {
                    // Over the cap: answered at once (host unreachable), not queued.
                    if try reply(socket) == 4 { refusedAtOnce += 1 }
                } else {
                    waiting.append(socket.takeDescriptor())
                }
            }
            #expect(refusedAtOnce == 968)
            // Another client (127.0.0.3 as its source) still gets through while 32 lookups wait.
            let other = try SliceDialer(slice: EgressSlice(parsing: "127.0.0.3:44000-44099")).connectTCP(to: proxy)
            try request(other, "fast.example", port: echo.endpoint.port)
            #expect(try reply(other) == 0)
            #expect(server.queries.filter { $0.name.hasSuffix("slow.example") }.count == 32)
        }
        await server.close()
    }
}
