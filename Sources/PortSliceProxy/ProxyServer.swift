import Logging
import NIOCore
import NIOPosix
import NIOSOCKS
import PortSliceCore
import PortSliceSockets
import ServiceLifecycle
import Synchronization

/// The egress proxy: SOCKS5 (RFC 1928, CONNECT) and HTTP CONNECT on one port, told apart by
/// the first byte, optionally behind a PROXY protocol header naming the true client. Each flow
/// leaves from a slice chosen by the client's traits (`FlowOpener`) and is relayed both ways.
///
/// As a `Service`, it serves from `start` until graceful shutdown, then closes its listeners.
public final class ProxyServer: Sendable, Service {
    public struct Settings: Sendable {
        /// Open connections one client address may hold; more are closed at once.
        public var connectionsPerClient: Int
        /// A connection with no traffic either way for this long is closed.
        public var idleTimeout: TimeAmount
        /// Read a PROXY protocol header (v1 or v2) first and take the client from it. Only for
        /// listeners that a trusted load balancer or VPN concentrator alone can reach.
        public var trustProxyProtocol: Bool
        /// The peers whose PROXY headers are believed (the balancers); a connection from any other
        /// peer is closed before a byte of it is read. Required with `trustProxyProtocol`.
        public var proxyProtocolPeers: [IPv4Prefix]
        /// The users and their bcrypt hashes; when set, SOCKS clients must authenticate (RFC 1929)
        /// and HTTP clients must send `Proxy-Authorization: Basic`.
        public var users: ProxyUsers?

        public init(connectionsPerClient: Int = 256, idleTimeout: TimeAmount = .seconds(300), trustProxyProtocol: Bool = false,
                    proxyProtocolPeers: [IPv4Prefix] = [], users: ProxyUsers? = nil) {
            precondition(!trustProxyProtocol || !proxyProtocolPeers.isEmpty, "trusting PROXY headers needs the peers that may send them")
            self.connectionsPerClient = connectionsPerClient
            self.idleTimeout = idleTimeout
            self.trustProxyProtocol = trustProxyProtocol
            self.proxyProtocolPeers = proxyProtocolPeers
            self.users = users
        }
    }

    /// One listening socket per event loop, all on one port (SO_REUSEPORT): the kernel spreads
    /// new connections over them, and each is served on the loop that accepted it, with no
    /// hand-over between threads.
    public let channels: [Channel]

    /// Binds `address` and starts serving; connections refused and flows that could not be
    /// opened are logged to `logger`.
    public static func start(on address: SocketAddress, opener: FlowOpener, settings: Settings = Settings(), group: any EventLoopGroup,
                             logger: Logger) async throws -> ProxyServer {
        let session = ProxySession(opener: opener, settings: settings, counts: ClientCounts(), logger: logger)
        if let port = address.port, port != 0, let host = address.ipAddress.flatMap({ try? IPv4Address(parsing: $0) }),
           let problem = HostNetwork.tcpBindProblem(Endpoint(host, UInt16(port))) {
            switch problem {
            case .system(_, let errno) where errno == .addressInUse:
                throw ProxyError("\(host):\(port) is in use by another program; stop it or listen on another address")
            case .permissionDenied:
                throw ProxyError("cannot listen on \(host):\(port): ports below 1024 need root (CAP_NET_BIND_SERVICE); listen on a port from 1024 up")
            default:
                throw ProxyError("cannot listen on \(host):\(port): \(problem)")
            }
        }
        var channels: [Channel] = []
        var bound = address
        do {
            for loop in group.makeIterator() {
                let channel = try await listener(on: loop, session: session).bind(to: bound).get()
                // Port 0 picks a port once; the other loops' sockets join it.
                bound = channel.localAddress ?? bound
                channels.append(channel)
            }
        } catch {
            for channel in channels { try? await channel.close() }
            throw error
        }
        return ProxyServer(channels: channels)
    }

    private static func listener(on loop: any EventLoop, session: ProxySession) -> ServerBootstrap {
        let settings = session.settings
        return ServerBootstrap(group: loop)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.socketOption(NIOBSDSocket.Option(rawValue: SocketOption.reusePortName)), value: 1)
            .childChannelInitializer { child in
                child.eventLoop.makeCompletedFuture {
                    // A client that shuts down its sending side still gets the answer (the relay
                    // passes the half-close on). Set here rather than as a bootstrap child option,
                    // which goes through a future per option on every accepted connection.
                    try child.syncOptions?.setOption(.allowRemoteHalfClosure, value: true)
                    try child.syncOptions?.setOption(.recvAllocator, value: RelayHandler.receiveBuffers)
                    guard let peer = child.remoteAddress.flatMap(ipAddress) else {
                        child.close(promise: nil)
                        return
                    }
                    if settings.trustProxyProtocol && !session.mayNameClients(peer) {
                        // Its PROXY header could name any client: not one byte of it is read.
                        session.logger.warning("closed a connection from \(peer): not among --proxy-protocol-from, so its PROXY header is not believed",
                                               metadata: ["peer": "\(peer)"])
                        child.close(promise: nil)
                        return
                    }
                    try child.pipeline.syncOperations.addHandlers([IdleStateHandler(allTimeout: settings.idleTimeout), ConnectionCloser(), PreRelayBudget()])
                    if settings.trustProxyProtocol {
                        try child.pipeline.syncOperations.addHandler(ProxyHeaderReader(session: session, peer: peer))
                    } else {
                        try session.begin(child, client: peer)
                    }
                }
            }
    }

    private init(channels: [Channel]) { self.channels = channels }

    public var localAddress: SocketAddress? { channels.first?.localAddress }

    /// Serves until graceful shutdown (or cancellation), then closes every listener and waits
    /// for them to close. Connections already accepted are left to their owners.
    public func run() async throws {
        try? await gracefulShutdown()
        try await close()
    }

    /// Closes every listener; the first failure is thrown once all were tried.
    public func close() async throws {
        var failure: (any Error)?
        for channel in channels {
            do { try await channel.close() } catch { failure = failure ?? error }
        }
        if let failure { throw failure }
    }
}

/// What every connection of one proxy shares.
struct ProxySession: Sendable {
    let opener: FlowOpener
    let settings: ProxyServer.Settings
    let counts: ClientCounts
    let logger: Logger

    /// True when `peer` is one of the balancers whose PROXY headers are believed.
    func mayNameClients(_ peer: IPAddress) -> Bool {
        guard case .v4(let address) = peer else { return false }
        return settings.proxyProtocolPeers.contains { $0.contains(address) }
    }

    /// Logs what happened to one client's connection or flow (info: routine for a proxy).
    var log: @Sendable (String) -> Void {
        { [logger] message in logger.info("\(message)") }
    }

    /// Admits `client` (within its connection limit) and adds the protocol sniffer; a client
    /// over its limit is closed at once.
    func begin(_ channel: Channel, client: IPAddress, after handler: (any ChannelHandler)? = nil) throws {
        guard counts.admit(client, limit: settings.connectionsPerClient) else {
            logger.warning("refused a connection from \(client): over the per-client limit of \(settings.connectionsPerClient)", metadata: ["client": "\(client)"])
            channel.close(promise: nil)
            return
        }
        channel.closeFuture.whenComplete { _ in counts.leave(client) }
        let sniffer = ProtocolSniffer(session: self, client: client)
        if let handler {
            try channel.pipeline.syncOperations.addHandler(sniffer, position: .after(handler))
        } else {
            try channel.pipeline.syncOperations.addHandler(sniffer)
        }
    }

    /// A flow being opened, with its books kept: counters for a flow that opens; the reason,
    /// counted, and a log line for one that does not. - Returns: the flow and its byte counters.
    func accounted(_ opening: EventLoopFuture<FlowOpener.Opened>, to host: String, port: UInt16, for client: IPAddress,
                   via proxyProtocol: String) -> EventLoopFuture<(opened: FlowOpener.Opened, counters: ProxyMetrics.FlowCounters)> {
        opening.map { opened in (opened, opener.metrics.flowOpened(from: opened.slice, via: proxyProtocol)) }
            .flatMapErrorThrowing { error in
                if let failure = error as? OpenFailure { opener.metrics.failed(failure, via: proxyProtocol) }
                logger.info("\(proxyProtocol): \(client) -> \(host):\(port): \(error)",
                            metadata: ["client": "\(client)", "destination": "\(host):\(port)", "protocol": "\(proxyProtocol)"])
                throw error
            }
    }

    /// Checks a client's credentials against `users` (bcrypt on the lookup pool, off the event
    /// loop) and counts the verdict. - Returns: true for a user's right password, on `eventLoop`.
    func verify(_ users: ProxyUsers, user: [UInt8], password: [UInt8], on eventLoop: any EventLoop) -> EventLoopFuture<Bool> {
        users.verify(user: user, password: password, on: opener.threadPool, eventLoop: eventLoop)
            .map { [opener] verdict in
                opener.metrics.passwordChecked(verdict)
                return verdict.isAccepted
            }
            .recover { [logger] error in
                logger.error("cannot check a password: \(error)")
                return false
            }
    }
}

/// Reads the PROXY protocol header and starts the session for the client it names.
final class ProxyHeaderReader: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    static let limit = 4096

    let session: ProxySession
    let peer: IPAddress
    private var buffered = ByteBuffer()

    init(session: ProxySession, peer: IPAddress) {
        self.session = session
        self.peer = peer
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        buffered.writeBuffer(&bytes)
        switch ProxyProtocolHeader.parse(buffered.readableBytesView) {
        case .needMore:
            if buffered.readableBytes > Self.limit {
                session.logger.warning("\(peer): PROXY header over \(Self.limit) bytes; closing", metadata: ["peer": "\(peer)"])
                context.close(promise: nil)
            }
        case .invalid(let reason):
            session.logger.warning("\(peer): \(reason); closing", metadata: ["peer": "\(peer)"])
            context.close(promise: nil)
        case .header(let client, let length):
            buffered.moveReaderIndex(forwardBy: length)
            do {
                try session.begin(context.channel, client: client ?? peer, after: self)
            } catch {
                context.close(promise: nil)
                return
            }
            if buffered.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(buffered)) }
            context.pipeline.syncOperations.removeHandler(self, promise: nil)
        }
    }
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

/// Closes a connection when `IdleStateHandler` says it has been idle, or when the client stops
/// sending before its relay runs (a half-closed handshake would otherwise wait for the idle
/// limit); once relaying, a half-close is the relay's to pass on.
final class ConnectionCloser: ChannelInboundHandler, Sendable {
    typealias InboundIn = NIOAny

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event {
        case is IdleStateHandler.IdleStateEvent:
            context.close(promise: nil)
        case let channelEvent as ChannelEvent where channelEvent == .inputClosed && (try? context.pipeline.syncOperations.handler(type: RelayHandler.self)) == nil:
            context.close(promise: nil)
        default:
            context.fireUserInboundEventTriggered(event)
        }
    }
}

/// Looks at the first byte: 5 is a SOCKS5 greeting; anything else is taken as HTTP.
final class ProtocolSniffer: ChannelInboundHandler, RemovableChannelHandler, Sendable {
    typealias InboundIn = ByteBuffer

    let session: ProxySession
    let client: IPAddress

    init(session: ProxySession, client: IPAddress) {
        self.session = session
        self.client = client
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        guard let first = buffer.getInteger(at: buffer.readerIndex, as: UInt8.self) else { return }
        let handlers: [any ChannelHandler] = first == 5
            ? [SOCKSServerHandshakeHandler(), SOCKSConnectHandler(session: session, client: client)]
            : [HTTPConnectHandler(session: session, client: client)]
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

/// Joins the client's channel to the opened flow, takes the protocol `handlers` that set it up
/// out of the client's pipeline (in order), and starts relaying. The flow was opened without
/// reading, so nothing it receives can arrive before the relay is in place. If the pipelines
/// refuse, both channels close.
func startRelay(_ client: Channel, to opened: FlowOpener.Opened, counting counters: ProxyMetrics.FlowCounters?, removing handlers: [any RemovableChannelHandler]) {
    let flow = opened.channel
    let (clientSide, flowSide) = RelayHandler.pair(counting: counters, revocation: opened.revocation)
    do {
        try client.pipeline.syncOperations.addHandler(clientSide)
        try flow.pipeline.syncOperations.addHandler(flowSide)
    } catch {
        flow.close(promise: nil)
        client.close(promise: nil)
        return
    }
    for handler in handlers { client.pipeline.syncOperations.removeHandler(handler, promise: nil) }
    // From here the relay's back-pressure bounds what the client can make the proxy hold.
    if let budget = try? client.pipeline.syncOperations.handler(type: PreRelayBudget.self) {
        client.pipeline.syncOperations.removeHandler(budget, promise: nil)
    }
    do {
        try flow.syncOptions?.setOption(.autoRead, value: true)
    } catch {
        flow.close(promise: nil)
    }
}

/// Caps what a client may send before its relay starts (PROXY header, handshake, request head
/// and bytes sent ahead of the destination's answer), which the proxy must hold meanwhile.
/// Past the cap it drops the bytes and tells the protocol handler (`Exceeded`), which answers
/// with its protocol's error and closes; the relay's start removes it.
final class PreRelayBudget: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    /// 64 KiB: far above any honest handshake or request head.
    static let limit = 64 * 1024

    /// The inbound event sent once the client has sent more than `limit` bytes.
    struct Exceeded: Sendable {}

    private var received = 0

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard received <= Self.limit else { return }
        received += unwrapInboundIn(data).readableBytes
        guard received <= Self.limit else {
            context.fireUserInboundEventTriggered(Exceeded())
            return
        }
        context.fireChannelRead(data)
    }
}
