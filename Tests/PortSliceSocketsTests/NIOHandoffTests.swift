import NIOCore
import NIOPosix
import PortSliceCore
import Testing
@testable import PortSliceSockets

/// The proxy runs on SwiftNIO: a flow opened from a slice must work as a NIO channel once its
/// descriptor is handed over. Runs without root on 127.0.0.1, with a slice inside this
/// namespace's port range.
@Suite("Handing flows to SwiftNIO")
struct NIOHandoffTests {
    /// Echoes whatever arrives, on TCP or UDP.
    final class Echo: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            context.writeAndFlush(data, promise: nil)
        }
    }

    final class DatagramEcho: ChannelInboundHandler, Sendable {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        typealias OutboundOut = AddressedEnvelope<ByteBuffer>

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let envelope = unwrapInboundIn(data)
            context.writeAndFlush(wrapOutboundOut(AddressedEnvelope(remoteAddress: envelope.remoteAddress, data: envelope.data)), promise: nil)
        }
    }

    /// Collects the first message that arrives.
    final class FirstMessage<Message: Sendable>: ChannelInboundHandler, Sendable {
        typealias InboundIn = Message
        let promise: EventLoopPromise<Message>

        init(_ promise: EventLoopPromise<Message>) { self.promise = promise }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            promise.succeed(unwrapInboundIn(data))
        }
    }

    private func slice() throws -> EgressSlice {
        let range = try HostNetwork.portSettings().localPortRange
        let lower = range.lower + UInt16.random(in: 2000...4000)
        return EgressSlice(address: IPv4Address(127, 0, 0, 1), ports: PortSet(try PortRange(lower, lower + 31)))
    }

    @Test func tcpFlowBecomesAChannel() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server = try await ServerBootstrap(group: group)
            .childChannelInitializer { $0.pipeline.addHandler(Echo()) }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = UInt16(server.localAddress!.port!)
        let dialer = try SliceDialer(slice: try slice())
        let socket = try dialer.connectTCP(to: Endpoint(IPv4Address(127, 0, 0, 1), port), nonBlocking: true)
        let local = socket.local
        let reply = group.next().makePromise(of: ByteBuffer.self)
        let channel = try await ClientBootstrap(group: group)
            .channelInitializer { $0.pipeline.addHandler(FirstMessage(reply)) }
            .withConnectedSocket(socket.takeDescriptor()).get()
        #expect(channel.localAddress?.port == Int(local.port))
        try await channel.writeAndFlush(ByteBuffer(string: "ping")).get()
        #expect(String(buffer: try await reply.futureResult.get()) == "ping")
        try await channel.close()
        try await server.close()
        try await group.shutdownGracefully()
    }

    @Test func connectedUDPFlowBecomesAChannel() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server = try await DatagramBootstrap(group: group)
            .channelInitializer { $0.pipeline.addHandler(DatagramEcho()) }
            .bind(host: "127.0.0.1", port: 0).get()
        let port = UInt16(server.localAddress!.port!)
        let dialer = try SliceDialer(slice: try slice())
        let socket = try dialer.connectUDP(to: Endpoint(IPv4Address(127, 0, 0, 1), port), nonBlocking: true)
        let local = socket.local
        let reply = group.next().makePromise(of: AddressedEnvelope<ByteBuffer>.self)
        let channel = try await DatagramBootstrap(group: group)
            .channelInitializer { $0.pipeline.addHandler(FirstMessage(reply)) }
            .withBoundSocket(socket.takeDescriptor()).get()
        #expect(channel.localAddress?.port == Int(local.port))
        let target = try SocketAddress(ipAddress: "127.0.0.1", port: Int(port))
        try await channel.writeAndFlush(AddressedEnvelope(remoteAddress: target, data: ByteBuffer(string: "ping"))).get()
        let answer = try await reply.futureResult.get()
        #expect(String(buffer: answer.data) == "ping")
        try await channel.close()
        try await server.close()
        try await group.shutdownGracefully()
    }
}
