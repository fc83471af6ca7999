import NIOCore
import NIOPosix
import NIOSOCKS
import PortSliceCore
import PortSliceSockets
import Synchronization

/// The egress proxy: SOCKS5 (RFC 1928, CONNECT, no authentication) and HTTP CONNECT on one
/// port, told apart by the first byte. Each flow leaves from a slice chosen by the client's
/// traits (`FlowOpener`) and is relayed both ways.
public final class ProxyServer: Sendable {
    public struct Limits: Sendable {
        /// Open connections one client address may hold; more are closed at once.
        public var connectionsPerClient: Int
        /// A connection with no traffic either way for this long is closed.
        public var idleTimeout: TimeAmount

        public init(connectionsPerClient: Int = 256, idleTimeout: TimeAmount = .seconds(300)) {
            self.connectionsPerClient = connectionsPerClient
            self.idleTimeout = idleTimeout
        }
    }

    public let channel: Channel
    private let openPerClient: ClientCounts

    /// Binds `address` and starts serving.
    public static func start(on address: SocketAddress, opener: FlowOpener, limits: Limits = Limits(), group: any EventLoopGroup,
                             log: @escaping @Sendable (String) -> Void) async throws -> ProxyServer {
        let counts = ClientCounts()
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.autoRead, value: true)
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture {
                    let client = child.remoteAddress.flatMap(ipAddress)
                    guard let client, counts.admit(client, limit: limits.connectionsPerClient) else {
                        log("refused a connection from \(child.remoteAddress.map { "\($0)" } ?? "an unknown peer"): over the per-client limit of \(limits.connectionsPerClient)")
                        child.close(promise: nil)
                        return
                    }
                    child.closeFuture.whenComplete { _ in counts.leave(client) }
                    try child.pipeline.syncOperations.addHandlers([
                        IdleStateHandler(allTimeout: limits.idleTimeout),
                        IdleCloser(),
                        ProtocolSniffer(opener: opener, client: client, log: log),
                    ])
                }
            }
            .bind(to: address).get()
        return ProxyServer(channel: channel, counts: counts)
    }

    private init(channel: Channel, counts: ClientCounts) {
        self.channel = channel
        openPerClient = counts
    }

    public var localAddress: SocketAddress? { channel.localAddress }

    public func close() async throws { try await channel.close() }
}

/// Open connections per client address.
final class ClientCounts: Sendable {
    private let counts = Mutex<[IPAddress: Int]>([:])

    func admit(_ client: IPAddress, limit: Int) -> Bool {
        counts.withLock { counts in
            guard counts[client, default: 0] < limit else { return false }
            counts[client, default: 0] += 1
            return true
        }
    }

    func leave(_ client: IPAddress) {
        counts.withLock { counts in
            counts[client, default: 1] -= 1
            if counts[client] == 0 { counts[client] = nil }
        }
    }
}

/// The client's address as portslice's core type.
func ipAddress(_ address: SocketAddress) -> IPAddress? {
    address.ipAddress.flatMap { try? IPAddress(parsing: $0) }
}

/// Closes a connection when `IdleStateHandler` says it has been idle.
final class IdleCloser: ChannelInboundHandler, Sendable {
    typealias InboundIn = NIOAny

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent { context.close(promise: nil) } else { context.fireUserInboundEventTriggered(event) }
    }
}

/// Looks at the first byte: 5 is a SOCKS5 greeting; anything else is taken as HTTP.
final class ProtocolSniffer: ChannelInboundHandler, RemovableChannelHandler, Sendable {
    typealias InboundIn = ByteBuffer

    let opener: FlowOpener
    let client: IPAddress
    let log: @Sendable (String) -> Void

    init(opener: FlowOpener, client: IPAddress, log: @escaping @Sendable (String) -> Void) {
        self.opener = opener
        self.client = client
        self.log = log
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return }
        let handlers: [any ChannelHandler] = first == 5
            ? [SOCKSServerHandshakeHandler(), SOCKSConnectHandler(opener: opener, client: client, log: log)]
            : [HTTPConnectHandler(opener: opener, client: client, log: log)]
        do {
            try context.pipeline.syncOperations.addHandlers(handlers, position: .after(self))
        } catch {
            context.close(promise: nil)
            return
        }
        context.fireChannelRead(data)
        context.pipeline.syncOperations.removeHandler(self, promise: nil)
    }
}

/// Joins the client's channel to the opened flow and starts relaying. The flow was opened
/// without reading, so nothing it receives can arrive before the relay is in place.
func relay(_ client: Channel, to flow: Channel) throws {
    let (clientSide, flowSide) = RelayHandler.pair()
    try client.pipeline.syncOperations.addHandler(clientSide)
    try flow.pipeline.syncOperations.addHandler(flowSide)
    flow.setOption(.autoRead, value: true).whenFailure { _ in flow.close(promise: nil) }
}
