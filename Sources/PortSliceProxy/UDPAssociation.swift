import NIOCore
import NIOPosix
import PortSliceCore
import PortSliceSockets

/// One SOCKS5 UDP ASSOCIATE (RFC 1928 section 7): a relay socket the client sends
/// encapsulated datagrams to, and per destination a connected UDP flow from the client's
/// slice. Answers come back encapsulated with the destination's address. Datagrams from any
/// other address than the client's are dropped, as are fragments (FRAG other than 0) and
/// refused destinations. Lives as long as the client's TCP connection, and ends when the relay
/// sees no datagram for the idle timeout.
final class UDPAssociation: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>
    typealias OutboundOut = AddressedEnvelope<ByteBuffer>

    static let maximumDestinations = 256

    let session: ProxySession
    /// The true client, whose traits choose the slice.
    let client: IPAddress
    /// Where the client's datagrams must come from (its TCP peer's address).
    let peerAddress: String
    /// Names in datagrams are looked up by the engine loop that served the request.
    let lookUp: FlowOpener.NameLookup
    private var relay: Channel?
    private var clientUDP: SocketAddress?
    /// Flows and datagrams waiting for their flow to open, by destination as the client
    /// named it (`host:port`, the host a literal or a name).
    private var flows: [String: (channel: Channel, remote: SocketAddress, revocation: SliceRevocation)] = [:]
    private var waiting: [String: [ByteBuffer]] = [:]
    private var closed = false

    init(session: ProxySession, client: IPAddress, peerAddress: String, lookUp: @escaping FlowOpener.NameLookup) {
        self.session = session
        self.client = client
        self.peerAddress = peerAddress
        self.lookUp = lookUp
    }

    /// Serves the association asked for on `control`, a client's TCP connection that the
    /// engine hands over (the request read, not yet answered): binds a relay socket on `local`,
    /// answers with its address, and lives until either the connection or the relay ends (the
    /// connection only keeps it alive; the idle limit is the relay's). `ended` runs once, when
    /// the connection has closed.
    static func serve(control descriptor: CInt, session: ProxySession, client: IPAddress, peer: IPv4Address, local: IPv4Address,
                      lookUp: @escaping FlowOpener.NameLookup, ended: @escaping @Sendable () -> Void) {
        let loop = MultiThreadedEventLoopGroup.singleton.next()
        let association = UDPAssociation(session: session, client: client, peerAddress: "\(peer)", lookUp: lookUp)
        let idleTimeout = session.settings.idleTimeout
        ClientBootstrap(group: loop)
            .channelInitializer { control in control.eventLoop.makeCompletedFuture { try control.pipeline.syncOperations.addHandler(ControlDiscarder()) } }
            .withConnectedSocket(descriptor)
            .whenComplete { result in
                guard case .success(let control) = result else {
                    session.logger.error("socks-udp: \(client): cannot take over the connection")
                    return ended()
                }
                control.closeFuture.whenComplete { _ in
                    ended()
                    loop.execute { association.close() }
                }
                DatagramBootstrap(group: loop)
                    .channelInitializer { relay in
                        relay.eventLoop.makeCompletedFuture {
                            try relay.pipeline.syncOperations.addHandlers([IdleStateHandler(allTimeout: idleTimeout), association])
                        }
                    }
                    .bind(host: "\(local)", port: 0)
                    .whenComplete { result in
                        switch result {
                        case .success(let relay):
                            relay.closeFuture.whenComplete { _ in control.close(promise: nil) }
                            let bound = relay.localAddress?.port.map { Endpoint(local, UInt16($0)) } ?? Endpoint(local, 0)
                            control.writeAndFlush(ByteBuffer(bytes: SOCKS5.reply(SOCKS5.Reply.succeeded, bound: bound)), promise: nil)
                        case .failure(let error):
                            session.log("socks-udp: \(client): cannot bind a relay: \(error)")
                            control.writeAndFlush(ByteBuffer(bytes: SOCKS5.reply(SOCKS5.Reply.generalFailure))).whenComplete { _ in control.close(promise: nil) }
                        }
                    }
            }
    }

    func handlerAdded(context: ChannelHandlerContext) { relay = context.channel }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        guard envelope.remoteAddress.ipAddress == peerAddress else { return }
        clientUDP = envelope.remoteAddress
        var payload = envelope.data
        guard let (host, port) = Self.readHeader(&payload) else { return }
        let key = "\(host):\(port)"
        if let flow = flows[key], flow.revocation.isRevoked {
            // Its slice was taken away: the flow closes, and this datagram opens a new one.
            flow.channel.close(promise: nil)
            flows[key] = nil
        }
        if let flow = flows[key] {
            flow.channel.writeAndFlush(AddressedEnvelope(remoteAddress: flow.remote, data: payload), promise: nil)
        } else if waiting[key] != nil {
            waiting[key]?.append(payload)
        } else if flows.count + waiting.count < Self.maximumDestinations {
            waiting[key] = [payload]
            open(host: host, port: port, key: key, context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        close()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent { close() } else { context.fireUserInboundEventTriggered(event) }
    }

    /// Closes the relay and every flow.
    func close() {
        guard !closed else { return }
        closed = true
        flows.values.forEach { $0.channel.close(promise: nil) }
        flows.removeAll()
        waiting.removeAll()
        relay?.close(promise: nil)
    }

    private func open(host: String, port: UInt16, key: String, context: ChannelHandlerContext) {
        let opening = session.opener.openUDP(host: host, port: port, for: client, on: context.eventLoop, lookUp: lookUp) { [self] channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(UDPReturn(association: self))
            }
        }
        session.accounted(opening, to: host, port: port, for: client, via: "socks-udp").assumeIsolated().whenComplete { [self] result in
            let queued = waiting.removeValue(forKey: key) ?? []
            switch result {
            case .success(let (opened, _)):
                guard !closed else { opened.channel.close(promise: nil); return }
                guard let remote = try? SocketAddress(ipAddress: "\(opened.remote.address)", port: Int(opened.remote.port)) else { return }
                flows[key] = (opened.channel, remote, opened.revocation)
                // A flow closed under the association (its slice was taken away) is opened
                // anew, from a slice still held, by the next datagram to its destination.
                opened.channel.closeFuture.assumeIsolated().whenComplete { [self] _ in
                    if flows[key]?.channel === opened.channel { flows[key] = nil }
                }
                for payload in queued { opened.channel.write(AddressedEnvelope(remoteAddress: remote, data: payload), promise: nil) }
                opened.channel.flush()
            case .failure:
                break  // counted and logged; the waiting datagrams are dropped, as UDP allows
            }
        }
    }

    /// An answer from `source`, encapsulated and sent to the client.
    fileprivate func answer(_ data: ByteBuffer, from source: SocketAddress) {
        guard let relay, let clientUDP, let address = source.ipAddress.flatMap({ try? IPv4Address(parsing: $0) }), let port = source.port else { return }
        let (a, b, c, d) = address.octets
        var packet = relay.allocator.buffer(capacity: data.readableBytes + 10)
        packet.writeBytes([0, 0, 0, 1, a, b, c, d, UInt8(port >> 8), UInt8(port & 0xff)])
        packet.writeImmutableBuffer(data)
        relay.writeAndFlush(AddressedEnvelope(remoteAddress: clientUDP, data: packet), promise: nil)
    }

    /// Reads RSV, FRAG, ATYP, DST.ADDR and DST.PORT; nil for fragments, IPv6 and malformed
    /// headers, which are dropped.
    static func readHeader(_ buffer: inout ByteBuffer) -> (host: String, port: UInt16)? {
        guard let reserved = buffer.readInteger(as: UInt16.self), reserved == 0,
              let fragment = buffer.readInteger(as: UInt8.self), fragment == 0,
              let type = buffer.readInteger(as: UInt8.self) else { return nil }
        let host: String
        switch type {
        case 1:
            guard let octets = buffer.readBytes(length: 4) else { return nil }
            host = "\(IPv4Address(octets[0], octets[1], octets[2], octets[3]))"
        case 3:
            guard let length = buffer.readInteger(as: UInt8.self), length > 0, let name = buffer.readString(length: Int(length)) else { return nil }
            host = name
        default:
            return nil
        }
        guard let port = buffer.readInteger(as: UInt16.self), port != 0 else { return nil }
        return (host, port)
    }
}

/// Hands a flow's answers back to its association.
private final class UDPReturn: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = AddressedEnvelope<ByteBuffer>

    weak var association: UDPAssociation?

    init(association: UDPAssociation) { self.association = association }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let envelope = unwrapInboundIn(data)
        association?.answer(envelope.data, from: envelope.remoteAddress)
    }
}

/// The control connection of an association carries nothing after its request: what the
/// client sends there is dropped, and its end of stream closes the association.
private final class ControlDiscarder: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
}
