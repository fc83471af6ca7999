import PortSliceCore
import PortSliceSockets

/// Everything before the relay: answers that end a connection, the handshake read and parsed,
/// the request served (password check, lookup, dial), and the flow opened or refused.
extension EngineLoop {
    /// How long a refused client has to read its answer and close.
    static let drainMilliseconds: Int64 = 2000
    /// What a refused client may still send before it is cut off.
    static let drainBytes = 1024 * 1024

    /// Sends `answer` (an error), then the end of the stream, and drains the client until it
    /// closes (see `EngineConnection.Phase.draining`).
    func answerAndClose(_ connection: EngineConnection, _ answer: [UInt8]) {
        // A dial under way is dropped: its descriptor closes with it.
        if connection.dial != nil {
            connection.dial = nil
            connection.upstream = -1
        }
        connection.phase = .draining
        connection.deadline = now + Self.drainMilliseconds
        connection.receivedBeforeRelay = 0
        send(answer, to: connection)
        drain(connection)
    }

    func drain(_ connection: EngineConnection) {
        guard flushToClient(connection) else { return close(connection) }
        guard connection.toClient.isEmpty else { return }
        if !connection.clientShutDown {
            connection.clientShutDown = true
            StreamIO.shutdownWrite(connection.client)
        }
        while connection.clientReadable {
            switch StreamIO.read(connection.client, into: buffer) {
            case .wouldBlock:
                connection.clientReadable = false
            case .endOfStream, .failed:
                return close(connection)
            case .transferred(let count):
                if count < buffer.count && !connection.clientHungUp { connection.clientReadable = false }
                connection.receivedBeforeRelay += count
                if connection.receivedBeforeRelay > Self.drainBytes { return close(connection) }
            }
        }
    }

    /// Reads what the client sends before its relay, within the pre-relay limit: handshake
    /// bytes are parsed as far as they complete messages; what arrives while the proxy waits
    /// (for a password check, a lookup or the handshake upstream) is kept.
    func readBeforeRelay(_ connection: EngineConnection) {
        let generation = connection.generation
        while connection.clientReadable && connection.generation == generation && (connection.isHandshaking || connection.isWaiting) {
            let room = beforeRelayBuffer(connection)
            switch StreamIO.read(connection.client, into: room) {
            case .wouldBlock:
                connection.clientReadable = false
            case .endOfStream, .failed:
                // A client that stops before its relay runs is done: nothing will follow.
                close(connection)
            case .transferred(let count):
                if count < room.count && !connection.clientHungUp { connection.clientReadable = false }
                connection.lastActivity = now
                let bytes = UnsafeRawBufferPointer(rebasing: buffer[..<count])
                // Parsed first, so that a refusal is worded for what the bytes turned out to be.
                if connection.isHandshaking { consume(connection, bytes) } else { keep(connection, bytes) }
                guard connection.generation == generation, withinLimit(connection, adding: count) else { return }
            }
        }
    }

    /// Keeps bytes that arrived ahead: for the destination once the request is known, else
    /// for the parser when the wait ends.
    func keep(_ connection: EngineConnection, _ bytes: UnsafeRawBufferPointer) {
        guard !bytes.isEmpty else { return }
        if connection.requestParsed {
            connection.toUpstream.append(bytes)
        } else {
            connection.unparsed.append(contentsOf: bytes)
        }
    }

    /// The part of the loop's buffer a read before the relay may fill: one byte past what the
    /// client may still send, so that nothing over the limit is ever held.
    func beforeRelayBuffer(_ connection: EngineConnection) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: buffer[..<min(buffer.count, max(1, PreRelayLimit.bytes - connection.receivedBeforeRelay + 1))])
    }

    func withinLimit(_ connection: EngineConnection, adding count: Int) -> Bool {
        connection.receivedBeforeRelay += count
        guard connection.receivedBeforeRelay > PreRelayLimit.bytes else { return true }
        let limit = PreRelayLimit.bytes
        session.logger.info("\(connection.style.metricsName): \(connection.clientAddress): over \(limit) bytes before the relay; closing")
        switch connection.phase {
        case .socksRequest where !connection.requestParsed, .proxyHeader, .sniffing, .socksGreeting, .socksCredentials:
            close(connection)
        case .httpHead:
            answerAndClose(connection, HTTPRefusal(431, "request head over \(limit) bytes").response)
        default:
            answerAndClose(connection, connection.isHTTP ? HTTPRefusal(413, "more than \(limit) bytes sent before the destination answered").response
                                                         : SOCKS5.reply(SOCKS5.Reply.generalFailure))
        }
        return false
    }

    /// Parses `bytes` (new bytes, after any kept earlier) as far as they go, then keeps the rest.
    func consume(_ connection: EngineConnection, _ bytes: UnsafeRawBufferPointer) {
        let generation = connection.generation
        if connection.unparsed.isEmpty {
            let used = parse(connection, bytes)
            guard connection.generation == generation else { return }
            keep(connection, UnsafeRawBufferPointer(rebasing: bytes[used...]))
        } else {
            connection.unparsed.append(contentsOf: bytes)
            resumeParsing(connection)
        }
    }

    /// Parses the bytes kept while the connection waited.
    func resumeParsing(_ connection: EngineConnection) {
        let generation = connection.generation
        let kept = connection.unparsed
        connection.unparsed = []
        let used = kept.withUnsafeBytes { parse(connection, $0) }
        guard connection.generation == generation else { return }
        kept.withUnsafeBytes { keep(connection, UnsafeRawBufferPointer(rebasing: $0[used...])) }
    }

    /// Parses handshake messages from the start of `bytes` while whole ones are there.
    /// - Returns: the bytes used (the connection may have closed meanwhile).
    func parse(_ connection: EngineConnection, _ bytes: UnsafeRawBufferPointer) -> Int {
        let generation = connection.generation
        var used = 0
        while connection.generation == generation {
            let rest = UnsafeRawBufferPointer(rebasing: bytes[used...])
            switch connection.phase {
            case .proxyHeader:
                switch ProxyProtocolHeader.parse(rest) {
                case .needMore:
                    if rest.count > ProxyProtocolHeader.limit {
                        session.logger.warning("\(connection.peer.address): PROXY header over \(ProxyProtocolHeader.limit) bytes; closing")
                        close(connection)
                    }
                    return used
                case .invalid(let reason):
                    session.logger.warning("\(connection.peer.address): \(reason); closing", metadata: ["peer": "\(connection.peer.address)"])
                    close(connection)
                    return used
                case .header(let client, let length):
                    used += length
                    if let client { connection.clientAddress = client }
                    connection.phase = .sniffing
                    guard countIn(connection) else { return used }
                }
            case .sniffing:
                guard let first = rest.first else { return used }
                connection.phase = first == 5 ? .socksGreeting : .httpHead
                connection.style = first == 5 ? .socks : .httpTunnel
            case .socksGreeting:
                switch SOCKS5.greeting(rest) {
                case .needMore: return used
                case .invalid(let reason, _):
                    malformed(connection, reason)
                    return used
                case .message(let greeting, let length):
                    used += length
                    let needsPassword = session.settings.users != nil
                    let accepted = needsPassword ? greeting.offersUsernamePassword : greeting.offersNoAuthentication
                    guard accepted else {
                        session.logger.info("socks: \(connection.clientAddress) offered no acceptable authentication method (\(needsPassword ? "username/password" : "none") is required)")
                        answerAndClose(connection, [5, SOCKS5.noAcceptableMethod])
                        return used
                    }
                    send([5, needsPassword ? SOCKS5.usernamePassword : SOCKS5.noAuthentication], to: connection)
                    connection.phase = needsPassword ? .socksCredentials : .socksRequest
                }
            case .socksCredentials:
                switch SOCKS5.credentials(rest) {
                case .needMore: return used
                case .invalid(let reason, _):
                    malformed(connection, reason)
                    return used
                case .message(let credentials, let length):
                    used += length
                    checkPassword(connection, credentials.user, credentials.password) { loop, connection, accepted in
                        if !accepted { loop.session.logger.info("socks: \(connection.clientAddress): wrong username or password for '\(String(decoding: credentials.user, as: UTF8.self))'") }
                        guard accepted else { return loop.answerAndClose(connection, [1, 1]) }
                        loop.send([1, 0], to: connection)
                        connection.phase = .socksRequest
                        loop.resumeParsing(connection)
                    }
                    return used
                }
            case .socksRequest:
                switch SOCKS5.request(rest) {
                case .needMore: return used
                case .invalid(let reason, let reply):
                    session.logger.info("socks: \(connection.clientAddress): \(reason); closing")
                    if let reply { answerAndClose(connection, SOCKS5.reply(reply)) } else { close(connection) }
                    return used
                case .message(let request, let length):
                    used += length
                    connection.requestParsed = true
                    serve(request, on: connection)
                    return used
                }
            case .httpHead:
                guard let length = HTTPProxyRequest.headLength(in: rest) else { return used }
                used += length
                connection.requestParsed = true
                serve(head: String(decoding: rest[..<length], as: UTF8.self), on: connection)
                return used
            case .checkingPassword, .resolving, .connecting, .relaying, .draining:
                return used
            }
        }
        return used
    }

    /// Bytes that are not the protocol: logged, and the connection closed.
    func malformed(_ connection: EngineConnection, _ reason: String) {
        session.logger.info("\(connection.style.metricsName): \(connection.clientAddress): \(reason); closing")
        close(connection)
    }

    /// Checks a password on the thread pool, then runs `then` on the loop with the verdict.
    func checkPassword(_ connection: EngineConnection, _ user: [UInt8], _ password: [UInt8],
                               then: @escaping @Sendable (EngineLoop, EngineConnection, Bool) -> Void) {
        guard let users = session.settings.users else { return then(self, connection, true) }
        connection.phase = .checkingPassword
        let (slot, generation) = (connection.slot, connection.generation)
        session.verify(users, user: user, password: password) { [self] accepted in
            post(slot, generation) { loop, connection in then(loop, connection, accepted) }
        }
    }

    func serve(_ request: SOCKS5.Request, on connection: EngineConnection) {
        switch (request.command, request.destination) {
        case (.connect, .ipv4(let address)):
            open(connection, to: .address(.v4(address)), port: request.port)
        case (.connect, .name(let name)):
            open(connection, to: .name(name), port: request.port)
        case (.connect, .ipv6(let address)):
            open(connection, to: .address(.v6(address)), port: request.port)
        case (.udpAssociate, _):
            associate(connection)
        case (.bind, _):
            answerAndClose(connection, SOCKS5.reply(SOCKS5.Reply.commandUnsupported))
        }
    }

    func serve(head: String, on connection: EngineConnection) {
        if session.settings.users != nil {
            guard let (user, password) = HTTPProxyRequest.basicCredentials(ofHead: head) else {
                return refuse(connection, HTTPRefusal(407, "proxy authentication required"))
            }
            checkPassword(connection, user, password) { loop, connection, accepted in
                guard accepted else { return loop.refuse(connection, HTTPRefusal(407, "wrong username or password")) }
                loop.serveAuthenticated(head: head, on: connection)
            }
        } else {
            serveAuthenticated(head: head, on: connection)
        }
    }

    func serveAuthenticated(head: String, on connection: EngineConnection) {
        switch HTTPProxyRequest.parse(head: head) {
        case .failure(let refusal):
            refuse(connection, refusal)
        case .success(.tunnel(let host, let port)):
            connection.style = .httpTunnel
            open(connection, to: Self.target(host), port: port)
        case .success(.forward(let host, let port, let rewritten)):
            connection.style = .httpForward(head: Array(rewritten.utf8))
            open(connection, to: Self.target(host), port: port)
        }
    }

    func refuse(_ connection: EngineConnection, _ refusal: HTTPRefusal) {
        session.logger.info("http: \(connection.clientAddress): \(refusal.reason)")
        answerAndClose(connection, refusal.response)
    }

    /// Where a request goes: an address is checked at once, a name looked up first.
    enum Target {
        case address(IPAddress)
        case name(String)
    }

    static func target(_ host: String) -> Target {
        (try? IPAddress(parsing: host)).map(Target.address) ?? .name(host)
    }

    func open(_ connection: EngineConnection, to target: Target, port: UInt16) {
        connection.requestedPort = port
        switch target {
        case .address(let address):
            connection.requestedHost = ""
            connection.requestedAddress = address
            do throws(OpenFailure) {
                dial(connection, to: try session.opener.allowed(address, port: port))
            } catch {
                fail(connection, error)
            }
        case .name(let name):
            connection.requestedHost = name
            connection.phase = .resolving
            let (slot, generation) = (connection.slot, connection.generation)
            lookUp(name, port: port, for: connection.clientAddress) { [self] result in
                // The client may have gone while the name server thought.
                guard let connection = connections[slot], connection.generation == generation, connection.phase == .resolving else { return }
                switch result {
                case .success(let destinations):
                    dial(connection, to: destinations.first, fallback: destinations.fallback, from: destinations.ipv6Source, egress: destinations.ipv4Egress)
                case .failure(let failure): fail(connection, failure)
                }
            }
        }
    }

    /// Starts the handshake to `destination`; with a `fallback`, Happy Eyeballs: it is started
    /// beside the first after `FlowOpener.happyEyeballsDelay`, or at once if the first fails.
    func dial(_ connection: EngineConnection, to destination: IPEndpoint, fallback: IPEndpoint? = nil, from ipv6Source: FlowOpener.IPv6Source? = nil,
              egress ipv4Egress: FlowOpener.IPv4Egress? = nil) {
        connection.dialedTo = destination
        let pending: FlowOpener.PendingDial
        do {
            pending = try session.opener.startTCP(to: destination, for: connection.clientAddress, from: ipv6Source, egress: ipv4Egress)
        } catch {
            if let fallback { return dial(connection, to: fallback, egress: ipv4Egress) }
            return fail(connection, error as? OpenFailure ?? .failed("\(error)"))
        }
        connection.dial = pending
        connection.upstream = pending.descriptor
        connection.upstreamWritable = false
        connection.upstreamFailed = false
        connection.phase = .connecting
        connection.deadline = now + session.connectMilliseconds
        do {
            try poller.watch(pending.descriptor, token: token(connection, .upstream), for: .stream)
        } catch {
            return fail(connection, .failed("cannot watch the connection: \(error)"))
        }
        if let fallback {
            connection.fallback = fallback
            fallbacksDue.append((connection.slot, connection.generation, now + FlowOpener.happyEyeballsDelay))
        }
    }

    /// Starts the IPv4 attempts whose moment has come, beside their IPv6 ones.
    func startFallbacksDue() {
        var waiting: [(slot: Int, generation: UInt32, at: Int64)] = []
        for due in fallbacksDue {
            guard let connection = connections[due.slot], connection.generation == due.generation,
                  connection.phase == .connecting, connection.fallback != nil
            else { continue }
            if due.at > now { waiting.append(due) } else { startRacer(connection) }
        }
        fallbacksDue = waiting
    }

    func startRacer(_ connection: EngineConnection) {
        guard let fallback = connection.fallback else { return }
        connection.fallback = nil
        do {
            let racer = try session.opener.startTCP(to: fallback, for: connection.clientAddress)
            try poller.watch(racer.descriptor, token: token(connection, .racer), for: .stream)
            connection.racer = racer
        } catch {
            // The first attempt goes on alone; its own end decides.
            session.logger.debug("happy eyeballs: cannot start the IPv4 attempt to \(fallback): \(error)")
        }
    }

    /// The IPv4 attempt's handshake ended: connected, it replaces the first attempt; failed, it
    /// is dropped and the first goes on.
    func finishRacer(_ connection: EngineConnection) {
        guard let racer = connection.racer else { return }
        connection.racer = nil
        connection.racerWritable = false
        if connection.racerFailed {
            connection.racerFailed = false
            return  // dropped: its socket closes
        }
        take(racer, asUpstreamOf: connection)
        connection.upstreamWritable = true
        finishDial(connection)
    }

    /// Makes `pending` the connection's dial (its socket registered as the upstream); the one
    /// it replaces is dropped and closes its socket.
    func take(_ pending: FlowOpener.PendingDial, asUpstreamOf connection: EngineConnection) {
        poller.unwatch(pending.descriptor)
        connection.dial = pending
        connection.upstream = pending.descriptor
        connection.dialedTo = pending.remote
        connection.upstreamWritable = false
        connection.upstreamFailed = false
        connection.upstreamReadable = false
        connection.upstreamHungUp = false
        do {
            try poller.watch(pending.descriptor, token: token(connection, .upstream), for: .stream)
        } catch {
            fail(connection, .failed("cannot watch the connection: \(error)"))
        }
    }

    func finishDial(_ connection: EngineConnection) {
        guard let pending = connection.dial else { return }
        connection.dial = nil
        let dialed: FlowOpener.DialedStream
        do throws(OpenFailure) {
            dialed = try pending.finishEnded(failed: connection.upstreamFailed)
        } catch {
            connection.upstream = -1  // closed with the dial
            // Happy Eyeballs: the other family's attempt carries on, or starts now.
            if let racer = connection.racer {
                connection.racer = nil
                take(racer, asUpstreamOf: connection)
                if connection.racerWritable || connection.racerFailed {
                    connection.upstreamWritable = true
                    connection.upstreamFailed = connection.racerFailed
                    connection.racerWritable = false
                    connection.racerFailed = false
                    finishDial(connection)
                }
                return
            }
            if let fallback = connection.fallback {
                connection.fallback = nil
                return dial(connection, to: fallback)
            }
            return fail(connection, error)
        }
        connection.fallback = nil
        connection.racer = nil  // lost the race: dropped, its socket closes
        let opener = session.opener
        let (slot, generation) = (connection.slot, connection.generation)
        var revocation: SliceRevocation?
        if case .slice(let slice) = dialed.source {
            revocation = opener.slices.track(ObjectIdentifier(connection), from: slice, close: { [self] in
                post(slot, generation) { loop, connection in loop.close(connection) }
            })
            guard revocation != nil else {
                // The slice went while the flow was dialed.
                dialed.hold?.end()
                return fail(connection, .exhausted(dialed.remote))
            }
        }
        let counters = opener.metrics.flowOpened(from: dialed.source, via: connection.style.metricsName)
        connection.flow = EngineConnection.Flow(source: dialed.source, local: dialed.local, remote: dialed.remote, counters: counters,
                                                revocation: revocation, hold: dialed.hold)
        opener.recent.record(from: dialed.local, to: dialed.remote, source: dialed.source, client: connection.clientAddress, transport: .tcp)
        StreamIO.sendImmediately(connection.upstream)
        switch connection.style {
        case .socks:
            send(SOCKS5.reply(SOCKS5.Reply.succeeded, bound: dialed.local), to: connection)
        case .httpTunnel:
            send(Self.tunnelEstablished, to: connection)
        case .httpForward(let head):
            // The rewritten head goes first, then whatever the client sent behind its own.
            let early = connection.toUpstream
            connection.toUpstream = EngineConnection.Backlog()
            head.withUnsafeBytes { connection.toUpstream.append($0) }
            early.bytes[early.sent...].withUnsafeBytes { connection.toUpstream.append($0) }
        }
        guard connections[slot] === connection && connection.generation == generation else { return }
        connection.phase = .relaying
        connection.lastActivity = now
        connection.flow?.counters.sent.increment(by: Int64(connection.toUpstream.count))
        relay(connection)
    }

    static let tunnelEstablished = Array("HTTP/1.1 200 Connection established\r\n\r\n".utf8)

    /// A flow that did not open: counted, logged, answered in the client's protocol, closed.
    func fail(_ connection: EngineConnection, _ failure: OpenFailure) {
        let protocolName = connection.style.metricsName
        session.opener.metrics.failed(failure, via: protocolName)
        let destination = "\(connection.requestedHost.isEmpty ? "\(connection.requestedAddress)" : connection.requestedHost):\(connection.requestedPort)"
        session.logger.info("\(protocolName): \(connection.clientAddress) -> \(destination): \(failure)",
                            metadata: ["client": "\(connection.clientAddress)", "destination": "\(destination)", "protocol": "\(protocolName)"])
        answerAndClose(connection, connection.isHTTP ? HTTPRefusal(for: failure).response : SOCKS5.reply(SOCKS5.replyCode(for: failure)))
    }

    /// Hands a UDP ASSOCIATE's control connection to the association (SwiftNIO), which answers
    /// it and lives as long as it does.
    func associate(_ connection: EngineConnection) {
        poller.unwatch(connection.client)
        let descriptor = connection.client
        connection.client = -1
        let counted = connection.admitted
        connection.admitted = false
        let (session, client) = (session, connection.clientAddress)
        UDPAssociation.serve(control: descriptor, session: session, client: client, peer: connection.peer.address,
                             local: listener.endpoint.address, lookUp: { [self] name, port, client, then in resolve(name, port: port, for: client, then: then) }) {
            if counted { session.counts.leave(client) }
        }
        close(connection)
    }
}
