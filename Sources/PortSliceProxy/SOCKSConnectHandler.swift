import NIOCore
import NIOPosix
import NIOSOCKS
import PortSliceCore
import PortSliceSockets

/// The server's side of a SOCKS5 exchange after NIOSOCKS has parsed it: picks "no
/// authentication", or username and password (RFC 1929) when users are configured; for
/// CONNECT opens the requested flow, answers with the reply code RFC 1928 gives for the
/// outcome and hands the connection to the relay; for UDP ASSOCIATE sets up a `UDPAssociation`.
final class SOCKSConnectHandler: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = ClientMessage
    typealias OutboundOut = ServerMessage

    let session: ProxySession
    let client: IPAddress
    private var requested = false
    private var credentials = ByteBuffer()

    init(session: ProxySession, client: IPAddress) {
        self.session = session
        self.client = client
    }

    private var log: @Sendable (String) -> Void { session.log }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .greeting(let greeting):
            let wanted: AuthenticationMethod = session.settings.users == nil ? .noneRequired : .usernamePassword
            let method: AuthenticationMethod = greeting.methods.contains(wanted) ? wanted : .noneAcceptable
            let written = context.writeAndFlush(wrapOutboundOut(.selectedAuthenticationMethod(.init(method: method))))
            if method == .noneAcceptable {
                log("socks: \(client) offered no acceptable authentication method (\(session.settings.users == nil ? "none" : "username/password") is required)")
                written.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
            }
        case .request(let request):
            guard !requested else { return }
            requested = true
            if request.command == .udpAssociate {
                associate(context: context)
                return
            }
            guard request.command == .connect else {
                reply(.commandUnsupported, context: context, closing: true)
                return
            }
            let host: String, port: Int
            switch request.addressType {
            case .address(let address) where address.protocol == .inet:
                (host, port) = (address.ipAddress ?? "", address.port ?? 0)
            case .domain(let name, let domainPort): (host, port) = (name, domainPort)
            case .address: reply(.addressUnsupported, context: context, closing: true); return
            }
            guard let destinationPort = UInt16(exactly: port), destinationPort != 0 else {
                reply(.addressUnsupported, context: context, closing: true)
                return
            }
            let channel = context.channel
            let opening = session.opener.open(host: host, port: destinationPort, for: client, on: context.eventLoop)
            session.accounted(opening, to: host, port: destinationPort, for: client, via: "socks").assumeIsolated().whenComplete { [self] result in
                switch result {
                case .success(let (opened, counters)):
                    guard channel.isActive else {
                        // The client left (or was closed) while the flow was being opened.
                        opened.channel.close(promise: nil)
                        return
                    }
                    let local = opened.local
                    let bound = (try? SocketAddress(ipAddress: "\(local.address)", port: Int(local.port))).map(SOCKSAddress.address) ?? .domain("\(local.address)", port: Int(local.port))
                    context.writeAndFlush(wrapOutboundOut(.response(SOCKSResponse(reply: .succeeded, boundAddress: bound)))).assumeIsolated().whenComplete { _ in
                        // This handler leaves before NIOSOCKS's, whose leftover bytes then reach the relay.
                        let handshake = try? channel.pipeline.syncOperations.handler(type: SOCKSServerHandshakeHandler.self)
                        startRelay(channel, to: opened, counting: counters, removing: [self] + (handshake.map { [$0] } ?? []))
                    }
                case .failure(let error):
                    reply(Self.replyCode(for: error), context: context, closing: true)
                }
            }
        case .authenticationData(var bytes):
            credentials.writeBuffer(&bytes)
            switch Self.usernameAndPassword(in: credentials) {
            case nil:
                if credentials.readableBytes > 513 { context.close(promise: nil) }
            case .some(.none):
                log("socks: \(client): malformed username/password request; closing")
                context.close(promise: nil)
            case .some(.some(let (user, password))):
                guard let users = session.settings.users else {
                    // Not asked for: without users the greeting selected no authentication.
                    context.close(promise: nil)
                    return
                }
                // bcrypt runs off the loop; the answer waits for it. Bytes sent meanwhile would
                // make the request malformed (RFC 1929 clients wait for the answer), and close.
                session.verify(users, user: user, password: password, on: context.eventLoop).assumeIsolated().whenSuccess { [self] accepted in
                    if !accepted { log("socks: \(client): wrong username or password for '\(String(decoding: user, as: UTF8.self))'") }
                    let written = context.writeAndFlush(wrapOutboundOut(.authenticationData(ByteBuffer(bytes: [1, accepted ? 0 : 1]), complete: accepted)))
                    if !accepted { written.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
                }
            }
        }
    }

    /// Binds a UDP relay beside the listener and answers with its address. The TCP connection
    /// then only keeps the association alive: its idle limit moves to the relay, and either
    /// ending ends both.
    private func associate(context: ChannelHandlerContext) {
        let channel = context.channel
        guard let listener = channel.localAddress?.ipAddress, let peer = channel.remoteAddress?.ipAddress,
              let bindAddress = try? SocketAddress(ipAddress: listener, port: 0) else {
            reply(.serverFailure, context: context, closing: true)
            return
        }
        let association = UDPAssociation(session: session, client: client, peerAddress: peer)
        let idleTimeout = session.settings.idleTimeout
        DatagramBootstrap(group: context.eventLoop)
            .channelInitializer { relay in
                relay.eventLoop.makeCompletedFuture {
                    try relay.pipeline.syncOperations.addHandlers([IdleStateHandler(allTimeout: idleTimeout), association])
                }
            }
            .bind(to: bindAddress).assumeIsolated().whenComplete { [self] result in
                switch result {
                case .success(let relay):
                    guard let bound = relay.localAddress else {
                        relay.close(promise: nil)
                        reply(.serverFailure, context: context, closing: true)
                        return
                    }
                    let pipeline = channel.pipeline.syncOperations
                    if let idle = try? pipeline.handler(type: IdleStateHandler.self) { pipeline.removeHandler(idle, promise: nil) }
                    relay.closeFuture.whenComplete { _ in channel.close(promise: nil) }
                    channel.closeFuture.assumeIsolated().whenComplete { _ in association.close() }
                    context.writeAndFlush(wrapOutboundOut(.response(SOCKSResponse(reply: .succeeded, boundAddress: .address(bound)))), promise: nil)
                case .failure(let error):
                    log("socks-udp: \(client): cannot bind a relay: \(error)")
                    reply(.serverFailure, context: context, closing: true)
                }
            }
    }

    /// NIOSOCKS's handler hands its leftover bytes to the next handler when it is removed, which
    /// happens when the channel closes; leave first, so they do not arrive here as a message.
    func channelInactive(context: ChannelHandlerContext) {
        context.fireChannelInactive()
        context.pipeline.syncOperations.removeHandler(self, promise: nil)
    }

    /// More than `PreRelayBudget.limit` bytes before the relay: reply 1 (general failure) to a
    /// request waiting for its flow, and close.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is PreRelayBudget.Exceeded else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        log("socks: \(client): over \(PreRelayBudget.limit) bytes before the relay; closing")
        if requested {
            reply(.serverFailure, context: context, closing: true)
        } else {
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Malformed SOCKS bytes, or bytes sent behind a request before its reply (NIOSOCKS holds
        // none, and cannot answer once it has failed): close.
        log("socks: \(client): \(error); closing")
        context.close(promise: nil)
    }

    private func reply(_ code: SOCKSServerReply, context: ChannelHandlerContext, closing: Bool) {
        let unspecified = SOCKSAddress.address(try! SocketAddress(ipAddress: "0.0.0.0", port: 0))
        let written = context.writeAndFlush(wrapOutboundOut(.response(SOCKSResponse(reply: code, boundAddress: unspecified))))
        if closing { written.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
    }

    /// The RFC 1929 request in `buffer`, name and password as sent (bytes): nil while
    /// incomplete, `.some(nil)` when malformed.
    static func usernameAndPassword(in buffer: ByteBuffer) -> ([UInt8], [UInt8])?? {
        let bytes = Array(buffer.readableBytesView)
        guard bytes.count >= 2 else { return nil }
        guard bytes[0] == 1 else { return .some(nil) }
        let userLength = Int(bytes[1])
        guard bytes.count >= 2 + userLength + 1 else { return nil }
        let passwordLength = Int(bytes[2 + userLength])
        guard bytes.count >= 3 + userLength + passwordLength else { return nil }
        guard bytes.count == 3 + userLength + passwordLength else { return .some(nil) }
        return .some((Array(bytes[2..<(2 + userLength)]), Array(bytes[(3 + userLength)...])))
    }

    static func replyCode(for error: any Error) -> SOCKSServerReply {
        switch error as? OpenFailure {
        case .refused: .notAllowed
        case .unresolved: .hostUnreachable
        case .connectionRefused: .refused
        case .timedOut: .ttlExpired
        case .exhausted, .failed, nil: .serverFailure
        }
    }
}
