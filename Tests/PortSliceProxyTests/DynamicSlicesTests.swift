import Logging
import NIOCore
import NIOPosix
import PortSliceCore
import PortSliceSockets
import Testing
@testable import PortSliceProxy

/// The proxy's slices changing under it, as the agent changes them.
@Suite("slices that come and go")
struct DynamicSlicesTests {
    static let loopback = IPv4Address(127, 0, 0, 1)

    static let traits = try! Traits(country: CountryCode(parsing: "US"))

    /// An echo server, and a proxy in this process sending from `slice` (loopback
    /// destinations allowed); `stop` closes the proxy.
    func start(sendingFrom slice: EgressSlice) async throws
        -> (echo: EchoServers, slices: EgressSlices, proxy: Endpoint, stop: @Sendable () async throws -> Void) {
        let slices = EgressSlices()
        try slices.replace(with: [(slice, Self.traits)])
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        let opener = FlowOpener(slices: slices, clientTraits: TraitIndex(feeds: []), policy: DestinationPolicy(allowLoopback: true),
                                passwordChecks: pool)
        let server = try ProxyServer.start(on: Endpoint(Self.loopback, 0), opener: opener,
                                           logger: Logger(label: "portslice.proxy.test") { _ in SwiftLogNoOpLogHandler() })
        return (try EchoServers(Endpoint(Self.loopback, 0)), slices, server.endpoint, {
            await server.close()
            try await pool.shutdownGracefully()
        })
    }

    /// A SOCKS5 CONNECT on `socket` (connected to the proxy) to `target`; the reply code.
    func connect(_ socket: borrowing ConnectedSocket, to target: Endpoint) throws -> UInt8 {
        try socket.send([5, 1, 0])
        #expect(try socket.receive(timeout: .seconds(5)) == [5, 0])
        let (a, b, c, d) = target.address.octets
        try socket.send([5, 1, 0, 1, a, b, c, d, UInt8(target.port >> 8), UInt8(target.port & 0xff)])
        let reply = try socket.receive(timeout: .seconds(5))
        return reply.count > 1 ? reply[1] : 0xff
    }

    @Test("a slice taken away serves no new flow and its open flows close; slices kept and gained serve on")
    func sliceTakenAway() async throws {
        let first = try EgressSlice(parsing: "127.0.0.2:42000-42099"), second = try EgressSlice(parsing: "127.0.0.3:42100-42199")
        let (echo, slices, proxy, stop) = try await start(sendingFrom: first)

        let flow = try UnslicedConnect.tcp(to: proxy)
        #expect(try connect(flow, to: echo.endpoint) == 0)
        try flow.send(Array("one".utf8))
        #expect(try flow.receive(timeout: .seconds(5)) == Array("one".utf8))
        #expect(echo.peers[.tcp]?.last.map { first.ports.contains($0.port) && $0.address == first.address } == true)

        // The first slice goes, the second comes: the open flow is closed, new flows leave
        // from the second slice.
        try slices.replace(with: [(second, Self.traits)])
        #expect(try flow.receive(timeout: .seconds(5)).isEmpty, "the flow from the slice taken away was not closed")
        let next = try UnslicedConnect.tcp(to: proxy)
        #expect(try connect(next, to: echo.endpoint) == 0)
        try next.send(Array("two".utf8))
        #expect(try next.receive(timeout: .seconds(5)) == Array("two".utf8))
        #expect(echo.peers[.tcp]?.last.map { second.ports.contains($0.port) && $0.address == second.address } == true)

        // No slice at all: SOCKS reply 1, and the echo server sees no new flow.
        try slices.replace(with: [])
        #expect(try next.receive(timeout: .seconds(5)).isEmpty)
        let seen = echo.peers[.tcp]?.count
        #expect(try connect(try UnslicedConnect.tcp(to: proxy), to: echo.endpoint) == 1)
        #expect(echo.peers[.tcp]?.count == seen)
        #expect(slices.openFlowCounts.isEmpty)
        try await stop()
    }

    @Test("a UDP association's flow from a slice taken away is closed, and the next datagram leaves from a slice still held")
    func udpFlowMovesToAHeldSlice() async throws {
        let first = try EgressSlice(parsing: "127.0.0.2:42200-42299"), second = try EgressSlice(parsing: "127.0.0.3:42300-42399")
        let (echo, slices, proxy, stop) = try await start(sendingFrom: first)

        // UDP ASSOCIATE, then datagrams to the relay it names, each with the SOCKS UDP header.
        let control = try UnslicedConnect.tcp(to: proxy)
        try control.send([5, 1, 0])
        #expect(try control.receive(timeout: .seconds(5)) == [5, 0])
        try control.send([5, 3, 0, 1, 0, 0, 0, 0, 0, 0])
        let reply = try control.receive(timeout: .seconds(5))
        #expect(reply.count == 10 && reply[1] == 0, "reply \(reply)")
        let relay = Endpoint(IPv4Address(reply[4], reply[5], reply[6], reply[7]), UInt16(reply[8]) << 8 | UInt16(reply[9]))
        let udp = try UnslicedConnect.udp(to: relay)
        let target = echo.endpoint
        let header: [UInt8] = [0, 0, 0, 1, 127, 0, 0, 1, UInt8(target.port >> 8), UInt8(target.port & 0xff)]
        func exchange(_ text: String) throws -> [UInt8] {
            try udp.send(header + Array(text.utf8))
            return Array(try udp.receive(timeout: .seconds(5)).dropFirst(10))
        }
        #expect(try exchange("one") == Array("one".utf8))
        #expect(echo.peers[.udp]?.last.map { $0.address == first.address && first.ports.contains($0.port) } == true)

        let fromFirst = { echo.peers[.udp, default: []].filter { $0.address == first.address }.count }
        let sentFromFirst = fromFirst()
        try slices.replace(with: [(second, Self.traits)])
        // The association drops the closed flow on the event loop; a datagram sent before that
        // may go unanswered, as UDP allows, so a few tries are allowed.
        var answered = false
        for attempt in 0..<5 where !answered {
            try udp.send(header + Array("two \(attempt)".utf8))
            answered = (try? udp.receive(timeout: .milliseconds(500)))?.dropFirst(10).elementsEqual(Array("two \(attempt)".utf8)) ?? false
        }
        #expect(answered)
        #expect(echo.peers[.udp]?.last.map { $0.address == second.address && second.ports.contains($0.port) } == true)
        #expect(fromFirst() == sentFromFirst, "datagrams left from the slice taken away")
        try await stop()
    }
}
