import NIOCore
import NIOSOCKS
import PortSliceCore
import PortSliceSockets

/// The server's side of a SOCKS5 exchange after NIOSOCKS has parsed it: picks "no
/// authentication", opens the requested flow, answers with the reply code RFC 1928 gives for
/// the outcome, then hands the connection to the relay.
final class SOCKSConnectHandler: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = ClientMessage
    typealias OutboundOut = ServerMessage

    let opener: FlowOpener
    let client: IPAddress
    let log: @Sendable (String) -> Void
    private var requested = false

    init(opener: FlowOpener, client: IPAddress, log: @escaping @Sendable (String) -> Void) {
        self.opener = opener
        self.client = client
        self.log = log
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .greeting(let greeting):
            let method: AuthenticationMethod = greeting.methods.contains(.noneRequired) ? .noneRequired : .noneAcceptable
            let written = context.writeAndFlush(wrapOutboundOut(.selectedAuthenticationMethod(.init(method: method))))
            if method == .noneAcceptable { written.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
        case .request(let request):
            guard !requested else { return }
            requested = true
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
            opener.open(host: host, port: destinationPort, for: client, on: context.eventLoop).assumeIsolated().whenComplete { [self] result in
                switch result {
                case .success(let (flow, local)):
                    let bound = (try? SocketAddress(ipAddress: "\(local.address)", port: Int(local.port))).map(SOCKSAddress.address) ?? .domain("\(local.address)", port: Int(local.port))
                    context.writeAndFlush(wrapOutboundOut(.response(SOCKSResponse(reply: .succeeded, boundAddress: bound)))).assumeIsolated().whenComplete { _ in
                        do {
                            try relay(channel, to: flow)
                            let pipeline = channel.pipeline.syncOperations
                            pipeline.removeHandler(self, promise: nil)
                            if let handshake = try? pipeline.handler(type: SOCKSServerHandshakeHandler.self) { pipeline.removeHandler(handshake, promise: nil) }
                        } catch {
                            flow.close(promise: nil)
                            channel.close(promise: nil)
                        }
                    }
                case .failure(let error):
                    log("socks: \(client) -> \(host):\(port): \(error)")
                    reply(Self.replyCode(for: error), context: context, closing: true)
                }
            }
        case .authenticationData:
            context.close(promise: nil)
        }
    }

    /// NIOSOCKS's handler hands its leftover bytes to the next handler when it is removed, which
    /// happens when the channel closes; leave first, so they do not arrive here as a message.
    func channelInactive(context: ChannelHandlerContext) {
        context.fireChannelInactive()
        context.pipeline.syncOperations.removeHandler(self, promise: nil)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Malformed SOCKS bytes (NIOSOCKS's errors): there is no request to answer; close.
        log("socks: \(client): \(error); closing")
        context.close(promise: nil)
    }

    private func reply(_ code: SOCKSServerReply, context: ChannelHandlerContext, closing: Bool) {
        let unspecified = SOCKSAddress.address(try! SocketAddress(ipAddress: "0.0.0.0", port: 0))
        let written = context.writeAndFlush(wrapOutboundOut(.response(SOCKSResponse(reply: code, boundAddress: unspecified))))
        if closing { written.assumeIsolated().whenComplete { _ in context.close(promise: nil) } }
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
