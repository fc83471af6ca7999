import Foundation
import PortSliceCore
import PortSliceSockets
import Synchronization

/// One thread of the proxy engine: its own `SO_REUSEPORT` listener and epoll set, and every
/// connection it accepted, from the first byte to the close. Nothing here is shared with the
/// other loops but the session (flows, slices, counts, metrics); what other threads finish for
/// a connection (a name lookup, a password check, a slice taken away) comes back through the
/// loop's inbox and its eventfd.
///
/// Relaying reads into one buffer per loop and writes straight on; only what the other side
/// cannot take yet is kept, for that connection, and its source is not read again until it is
/// gone (back-pressure). A side that ends its stream has the end passed on once its bytes are
/// out (half-close); the connection closes when both ends have ended, on an error, or when it
/// has been idle for the session's limit.
final class EngineLoop: @unchecked Sendable {
    // Confined to the loop's thread, except `inbox`, `stopping` and `wakeup`, which are
    // thread-safe: that is why the class may be `@unchecked Sendable`.
    let session: ProxySession
    private let listener: SharedPortListener
    private let poller: EventPoller
    private let wakeup: Wakeup
    private let inbox = Mutex<[(slot: Int, generation: UInt32, work: @Sendable (EngineLoop, EngineConnection) -> Void)]>([])
    private let stopping = Atomic<Bool>(false)

    private var connections: [EngineConnection?] = []
    /// Connections closed, kept (each with its slot) for the next ones.
    private var spare: [EngineConnection] = []
    /// The loop's buffer for every read: relayed bytes pass through it on their way.
    private let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 * 1024, alignment: 16)
    /// Milliseconds since the loop started, read once per wake.
    private var now: Int64 = 0
    private let started = ContinuousClock.now
    private var nextSweep: Int64 = 0
    /// The listener had connections it could not take (out of descriptors): it is watched
    /// again on the next sweep.
    private var acceptDeferred = false

    private static let listenerToken = UInt64.max
    private static let wakeupToken = UInt64.max - 1
    /// How often timeouts (connect, idle) are checked.
    private static let sweepMilliseconds: Int64 = 100

    init(session: ProxySession, listener: consuming SharedPortListener) throws(DialError) {
        self.session = session
        self.listener = listener
        poller = try EventPoller()
        wakeup = try Wakeup()
        try poller.watch(self.listener.descriptor, token: Self.listenerToken, for: .listener)
        try poller.watch(wakeup.descriptor, token: Self.wakeupToken, for: .readable)
    }

    deinit { buffer.deallocate() }

    var endpoint: Endpoint { listener.endpoint }

    /// Serves until `stop`, then closes every connection it holds.
    func run() {
        while !stopping.load(ordering: .relaxed) {
            do {
                try poller.wait(timeoutMilliseconds: Int32(Self.sweepMilliseconds)) { token, readiness in handle(token, readiness) }
            } catch {
                session.logger.critical("the proxy's event loop cannot wait for events: \(error); it stops")
                break
            }
            now = milliseconds()
            if now >= nextSweep {
                nextSweep = now + Self.sweepMilliseconds
                sweep()
            }
        }
        for connection in connections.compactMap({ $0 }) { close(connection) }
    }

    /// Asks the loop to stop (from any thread); `run` returns once it has closed everything.
    func stop() {
        stopping.store(true, ordering: .relaxed)
        wakeup.signal()
    }

    /// Runs `work` on the loop for the connection in `slot`, if it is still the one of
    /// `generation` by then.
    func post(_ slot: Int, _ generation: UInt32, _ work: @escaping @Sendable (EngineLoop, EngineConnection) -> Void) {
        inbox.withLock { $0.append((slot, generation, work)) }
        wakeup.signal()
    }

    private func milliseconds() -> Int64 {
        let elapsed = ContinuousClock.now - started
        return elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000
    }

    // MARK: - Events

    private func handle(_ token: UInt64, _ readiness: Readiness) {
        switch token {
        case Self.listenerToken:
            acceptOne()
        case Self.wakeupToken:
            wakeup.drain()
            for item in inbox.withLock({ items in defer { items.removeAll(keepingCapacity: true) }; return items }) {
                guard let connection = connections[item.slot], connection.generation == item.generation else { continue }
                item.work(self, connection)
            }
        default:
            let slot = Int((token >> 1) & 0x7fff_ffff), generation = UInt32(token >> 32)
            guard slot < connections.count, let connection = connections[slot], connection.generation == generation else { return }
            let readable = readiness.readable || readiness.peerClosed || readiness.failed
            let writable = readiness.writable || readiness.failed
            if token & 1 == 0 {
                connection.clientReadable = connection.clientReadable || readable
                connection.clientWritable = connection.clientWritable || writable
                connection.clientHungUp = connection.clientHungUp || readiness.peerClosed || readiness.failed
            } else {
                connection.upstreamReadable = connection.upstreamReadable || readable
                connection.upstreamWritable = connection.upstreamWritable || writable
                connection.upstreamHungUp = connection.upstreamHungUp || readiness.peerClosed || readiness.failed
                connection.upstreamFailed = connection.upstreamFailed || readiness.failed
            }
            advance(connection)
        }
    }

    private func token(_ connection: EngineConnection, upstream: Bool) -> UInt64 {
        UInt64(connection.generation) << 32 | UInt64(connection.slot) << 1 | (upstream ? 1 : 0)
    }

    /// Takes one connection: the listener is reported at every wait while more are queued,
    /// so a busy loop takes one per wait beside its other events, and an idle one spends no
    /// `accept` on an empty queue.
    private func acceptOne() {
        switch listener.accept() {
        case .connection(let descriptor, let peer):
            admit(descriptor, peer: peer)
        case .failed(let errno) where errno == .tooManyOpenFiles || errno == .tooManyOpenFilesInSystem || errno == .noBufferSpace || errno == .noMemory:
            // The connections wait in the backlog until descriptors are free again; the listener
            // is not watched meanwhile (it would be reported ready at every wait).
            session.logger.warning("cannot accept connections: \(errno); retrying every \(Self.sweepMilliseconds) ms")
            poller.unwatch(listener.descriptor)
            acceptDeferred = true
        case .none, .failed:
            break  // taken by no one, or gone (reset before it was taken)
        }
    }

    private func admit(_ descriptor: CInt, peer: Endpoint) {
        let settings = session.settings
        if settings.trustProxyProtocol && !session.mayNameClients(.v4(peer.address)) {
            // Its PROXY header could name any client: not one byte of it is read.
            session.logger.warning("closed a connection from \(peer.address): not among --proxy-protocol-from, so its PROXY header is not believed",
                                   metadata: ["peer": "\(peer.address)"])
            StreamIO.close(descriptor)
            return
        }
        let connection = take()
        connection.client = descriptor
        connection.peer = peer
        connection.clientAddress = .v4(peer.address)
        connection.lastActivity = now
        connection.phase = settings.trustProxyProtocol ? .proxyHeader : .sniffing
        if !settings.trustProxyProtocol && !countIn(connection) { return }
        do {
            try poller.watch(descriptor, token: token(connection, upstream: false), for: .stream)
        } catch {
            session.logger.error("cannot watch a client connection: \(error)")
            close(connection)
            return
        }
        // A client usually sends its first bytes right behind its handshake, often before the
        // loop got round to accepting it: read them now rather than after another wait.
        connection.clientReadable = true
        advance(connection)
    }

    /// Counts the connection against its client's limit, or closes it when over.
    private func countIn(_ connection: EngineConnection) -> Bool {
        let limit = session.settings.connectionsPerClient
        guard session.counts.admit(connection.clientAddress, limit: limit) else {
            session.logger.warning("refused a connection from \(connection.clientAddress): over the per-client limit of \(limit)",
                                   metadata: ["client": "\(connection.clientAddress)"])
            close(connection)
            return false
        }
        connection.admitted = true
        return true
    }

    private func take() -> EngineConnection {
        let connection: EngineConnection
        if let reused = spare.popLast() {
            connection = reused
        } else {
            connection = EngineConnection(slot: connections.count)
        }
        if connection.slot == connections.count { connections.append(connection) } else { connections[connection.slot] = connection }
        return connection
    }

    /// Closes both sides, gives back what the flow held, and keeps the object for the next
    /// connection.
    func close(_ connection: EngineConnection) {
        guard connections[connection.slot] === connection else { return }
        if connection.client >= 0 { StreamIO.close(connection.client) }
        // While dialing, the pending dial owns the upstream descriptor and closes it.
        if connection.dial == nil && connection.upstream >= 0 { StreamIO.close(connection.upstream) }
        if let flow = connection.flow {
            flow.hold?.end()
            session.opener.slices.untrack(ObjectIdentifier(connection), from: flow.slice)
        }
        if connection.admitted { session.counts.leave(connection.clientAddress) }
        connection.reset()
        connections[connection.slot] = nil
        spare.append(connection)
    }

    private func sweep() {
        if acceptDeferred {
            acceptDeferred = false
            do {
                try poller.watch(listener.descriptor, token: Self.listenerToken, for: .listener)
            } catch {
                session.logger.error("cannot watch the listener again: \(error)")
                acceptDeferred = true
            }
        }
        let idleLimit = session.idleMilliseconds
        for case let connection? in connections {
            if connection.phase == .connecting && now >= connection.deadline {
                fail(connection, .timedOut(connection.dialedTo))
            } else if connection.phase == .draining && now >= connection.deadline {
                close(connection)
            } else if now - connection.lastActivity >= idleLimit {
                close(connection)
            }
        }
    }

    // MARK: - The state machine

    private func advance(_ connection: EngineConnection) {
        switch connection.phase {
        case .proxyHeader, .sniffing, .socksGreeting, .socksCredentials, .socksRequest, .httpHead, .checkingPassword, .resolving:
            guard flushToClient(connection) else { return close(connection) }
            readBeforeRelay(connection)
        case .connecting:
            readBeforeRelay(connection)
            if connections[connection.slot] === connection && connection.upstreamWritable { finishDial(connection) }
        case .relaying:
            relay(connection)
        case .draining:
            drain(connection)
        }
    }

    /// How long a refused client has to read its answer and close.
    private static let drainMilliseconds: Int64 = 2000
    /// What a refused client may still send before it is cut off.
    private static let drainBytes = 1024 * 1024

    /// Sends `answer` (an error), then the end of the stream, and drains the client until it
    /// closes (see `EngineConnection.Phase.draining`).
    private func answerAndClose(_ connection: EngineConnection, _ answer: [UInt8]) {
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

    private func drain(_ connection: EngineConnection) {
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
    private func readBeforeRelay(_ connection: EngineConnection) {
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
    private func keep(_ connection: EngineConnection, _ bytes: UnsafeRawBufferPointer) {
        guard !bytes.isEmpty else { return }
        if connection.requestParsed {
            connection.toUpstream.append(bytes)
        } else {
            connection.unparsed.append(contentsOf: bytes)
        }
    }

    /// The part of the loop's buffer a read before the relay may fill: one byte past what the
    /// client may still send, so that nothing over the limit is ever held.
    private func beforeRelayBuffer(_ connection: EngineConnection) -> UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(rebasing: buffer[..<min(buffer.count, max(1, PreRelayLimit.bytes - connection.receivedBeforeRelay + 1))])
    }

    private func withinLimit(_ connection: EngineConnection, adding count: Int) -> Bool {
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
    private func consume(_ connection: EngineConnection, _ bytes: UnsafeRawBufferPointer) {
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
    private func resumeParsing(_ connection: EngineConnection) {
        let generation = connection.generation
        let kept = connection.unparsed
        connection.unparsed = []
        let used = kept.withUnsafeBytes { parse(connection, $0) }
        guard connection.generation == generation else { return }
        kept.withUnsafeBytes { keep(connection, UnsafeRawBufferPointer(rebasing: $0[used...])) }
    }

    /// Parses handshake messages from the start of `bytes` while whole ones are there.
    /// - Returns: the bytes used (the connection may have closed meanwhile).
    private func parse(_ connection: EngineConnection, _ bytes: UnsafeRawBufferPointer) -> Int {
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
    private func malformed(_ connection: EngineConnection, _ reason: String) {
        session.logger.info("\(connection.style.metricsName): \(connection.clientAddress): \(reason); closing")
        close(connection)
    }

    /// Checks a password on the thread pool, then runs `then` on the loop with the verdict.
    private func checkPassword(_ connection: EngineConnection, _ user: [UInt8], _ password: [UInt8],
                               then: @escaping @Sendable (EngineLoop, EngineConnection, Bool) -> Void) {
        guard let users = session.settings.users else { return then(self, connection, true) }
        connection.phase = .checkingPassword
        let (slot, generation) = (connection.slot, connection.generation)
        session.verify(users, user: user, password: password) { [self] accepted in
            post(slot, generation) { loop, connection in then(loop, connection, accepted) }
        }
    }

    private func serve(_ request: SOCKS5.Request, on connection: EngineConnection) {
        switch (request.command, request.destination) {
        case (.connect, .ipv4(let address)):
            open(connection, to: .address(address), port: request.port)
        case (.connect, .name(let name)):
            open(connection, to: .name(name), port: request.port)
        case (.connect, .ipv6):
            answerAndClose(connection, SOCKS5.reply(SOCKS5.Reply.addressUnsupported))
        case (.udpAssociate, _):
            associate(connection)
        case (.bind, _):
            answerAndClose(connection, SOCKS5.reply(SOCKS5.Reply.commandUnsupported))
        }
    }

    private func serve(head: String, on connection: EngineConnection) {
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

    private func serveAuthenticated(head: String, on connection: EngineConnection) {
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

    private func refuse(_ connection: EngineConnection, _ refusal: HTTPRefusal) {
        session.logger.info("http: \(connection.clientAddress): \(refusal.reason)")
        answerAndClose(connection, refusal.response)
    }

    /// Where a request goes: an address is checked at once, a name looked up first.
    enum Target {
        case address(IPv4Address)
        case name(String)
    }

    private static func target(_ host: String) -> Target {
        (try? IPv4Address(parsing: host)).map(Target.address) ?? .name(host)
    }

    private func open(_ connection: EngineConnection, to target: Target, port: UInt16) {
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
            session.opener.lookUp(name, port: port) { [self] result in
                post(slot, generation) { loop, connection in
                    switch result {
                    case .success(let destination): loop.dial(connection, to: destination)
                    case .failure(let failure): loop.fail(connection, failure)
                    }
                }
            }
        }
    }

    private func dial(_ connection: EngineConnection, to destination: Endpoint) {
        connection.dialedTo = destination
        let pending: FlowOpener.PendingDial
        do {
            pending = try session.opener.startTCP(to: destination, for: connection.clientAddress)
        } catch {
            return fail(connection, error as? OpenFailure ?? .failed("\(error)"))
        }
        connection.dial = pending
        connection.upstream = pending.descriptor
        connection.phase = .connecting
        connection.deadline = now + session.connectMilliseconds
        do {
            try poller.watch(pending.descriptor, token: token(connection, upstream: true), for: .stream)
        } catch {
            fail(connection, .failed("cannot watch the connection: \(error)"))
        }
    }

    private func finishDial(_ connection: EngineConnection) {
        guard let pending = connection.dial else { return }
        connection.dial = nil
        let dialed: FlowOpener.Dialed
        do throws(OpenFailure) {
            dialed = try pending.finishEnded(failed: connection.upstreamFailed)
        } catch {
            connection.upstream = -1  // closed with the dial
            return fail(connection, error)
        }
        let opener = session.opener
        let (slot, generation) = (connection.slot, connection.generation)
        guard let revocation = opener.slices.track(ObjectIdentifier(connection), from: dialed.slice, close: { [self] in
            post(slot, generation) { loop, connection in loop.close(connection) }
        }) else {
            // The slice went while the flow was dialed.
            dialed.hold?.end()
            return fail(connection, .exhausted(dialed.remote))
        }
        let counters = opener.metrics.flowOpened(from: dialed.slice, via: connection.style.metricsName)
        connection.flow = EngineConnection.Flow(slice: dialed.slice, local: dialed.local, remote: dialed.remote, counters: counters,
                                                revocation: revocation, hold: dialed.hold)
        opener.recent.record(from: dialed.local, to: dialed.remote, slice: dialed.slice, client: connection.clientAddress, transport: .tcp)
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

    private static let tunnelEstablished = Array("HTTP/1.1 200 Connection established\r\n\r\n".utf8)

    /// A flow that did not open: counted, logged, answered in the client's protocol, closed.
    private func fail(_ connection: EngineConnection, _ failure: OpenFailure) {
        let protocolName = connection.style.metricsName
        session.opener.metrics.failed(failure, via: protocolName)
        let destination = "\(connection.requestedHost.isEmpty ? "\(connection.requestedAddress)" : connection.requestedHost):\(connection.requestedPort)"
        session.logger.info("\(protocolName): \(connection.clientAddress) -> \(destination): \(failure)",
                            metadata: ["client": "\(connection.clientAddress)", "destination": "\(destination)", "protocol": "\(protocolName)"])
        answerAndClose(connection, connection.isHTTP ? HTTPRefusal(for: failure).response : SOCKS5.reply(SOCKS5.replyCode(for: failure)))
    }

    /// Hands a UDP ASSOCIATE's control connection to the association (SwiftNIO), which answers
    /// it and lives as long as it does.
    private func associate(_ connection: EngineConnection) {
        poller.unwatch(connection.client)
        let descriptor = connection.client
        connection.client = -1
        let counted = connection.admitted
        connection.admitted = false
        let (session, client) = (session, connection.clientAddress)
        UDPAssociation.serve(control: descriptor, session: session, client: client, peer: connection.peer.address,
                             local: listener.endpoint.address) {
            if counted { session.counts.leave(client) }
        }
        close(connection)
    }

    // MARK: - Writing and relaying

    /// Sends `bytes` to the client now, keeping what it cannot take yet.
    func send(_ bytes: [UInt8], to connection: EngineConnection) {
        guard connection.client >= 0 else { return }
        if !connection.toClient.isEmpty {
            bytes.withUnsafeBytes { connection.toClient.append($0) }
            return
        }
        bytes.withUnsafeBytes { raw in
            switch StreamIO.writeSome(connection.client, raw) {
            case .success(let written) where written < raw.count:
                connection.toClient.append(UnsafeRawBufferPointer(rebasing: raw[written...]))
                connection.clientWritable = false
            case .success, .failure:
                break  // a client that is gone fails its next read, which closes the connection
            }
        }
    }

    /// Sends what the client could not take before; false when the connection closed.
    private func flushToClient(_ connection: EngineConnection) -> Bool {
        guard !connection.toClient.isEmpty, connection.clientWritable else { return true }
        return flush(&connection.toClient, to: connection.client, of: connection, writable: &connection.clientWritable)
    }

    private func flush(_ backlog: inout EngineConnection.Backlog, to descriptor: CInt, of connection: EngineConnection, writable: inout Bool) -> Bool {
        let result = backlog.bytes.withUnsafeBytes { StreamIO.writeSome(descriptor, UnsafeRawBufferPointer(rebasing: $0[backlog.sent...])) }
        switch result {
        case .success(let written):
            backlog.sent += written
            if backlog.isEmpty { backlog.clear() } else { writable = false }
            connection.lastActivity = now
            return true
        case .failure:
            return false
        }
    }

    private func relay(_ connection: EngineConnection) {
        let generation = connection.generation
        guard pump(connection, upstreamBound: true), connection.generation == generation,
              pump(connection, upstreamBound: false), connection.generation == generation else { return }
        if connection.clientEnded && connection.upstreamEnded && connection.toClient.isEmpty && connection.toUpstream.isEmpty {
            close(connection)
        }
    }

    /// Moves bytes one way (client to destination when `upstreamBound`) until the source has
    /// none, the destination takes no more, or the source ended (then the end is passed on).
    /// - Returns: false when the connection was closed.
    private func pump(_ connection: EngineConnection, upstreamBound: Bool) -> Bool {
        let source = upstreamBound ? connection.client : connection.upstream
        let destination = upstreamBound ? connection.upstream : connection.client
        guard let flow = connection.flow else { return true }
        // What the destination could not take before goes first.
        if upstreamBound ? !connection.toUpstream.isEmpty : !connection.toClient.isEmpty {
            if upstreamBound && flow.revocation.isRevoked { close(connection); return false }
            let flushed = upstreamBound
                ? flush(&connection.toUpstream, to: destination, of: connection, writable: &connection.upstreamWritable)
                : flush(&connection.toClient, to: destination, of: connection, writable: &connection.clientWritable)
            guard flushed else { close(connection); return false }
            if upstreamBound ? !connection.toUpstream.isEmpty : !connection.toClient.isEmpty { return true }
        }
        while upstreamBound ? connection.clientReadable : connection.upstreamReadable {
            switch StreamIO.read(source, into: buffer) {
            case .wouldBlock:
                if upstreamBound { connection.clientReadable = false } else { connection.upstreamReadable = false }
            case .endOfStream:
                if upstreamBound {
                    connection.clientReadable = false
                    connection.clientEnded = true
                } else {
                    connection.upstreamReadable = false
                    connection.upstreamEnded = true
                }
            case .failed:
                // The other side is closed normally, not reset: a slice port then keeps its
                // TIME_WAIT, which stops a new flow on the same 4-tuple from meeting the
                // destination's leftovers of the old one.
                close(connection)
                return false
            case .transferred(let count):
                // A short read emptied the socket: the next bytes bring a new edge. Not so the end
                // of the stream when its edge came already: then reading goes on until it is seen.
                if count < buffer.count {
                    if upstreamBound {
                        if !connection.clientHungUp { connection.clientReadable = false }
                    } else if !connection.upstreamHungUp {
                        connection.upstreamReadable = false
                    }
                }
                connection.lastActivity = now
                (upstreamBound ? flow.counters.sent : flow.counters.received).increment(by: Int64(count))
                if upstreamBound && flow.revocation.isRevoked { close(connection); return false }
                let bytes = UnsafeRawBufferPointer(rebasing: buffer[..<count])
                switch StreamIO.writeSome(destination, bytes) {
                case .success(let written) where written < count:
                    let rest = UnsafeRawBufferPointer(rebasing: bytes[written...])
                    if upstreamBound {
                        connection.toUpstream.append(rest)
                        connection.upstreamWritable = false
                    } else {
                        connection.toClient.append(rest)
                        connection.clientWritable = false
                    }
                    return true
                case .success:
                    break
                case .failure:
                    close(connection)
                    return false
                }
            }
        }
        // The source ended and all it sent is out: pass the end on.
        let ended = upstreamBound ? connection.clientEnded : connection.upstreamEnded
        if ended {
            if upstreamBound && !connection.upstreamShutDown {
                connection.upstreamShutDown = true
                StreamIO.shutdownWrite(destination)
            } else if !upstreamBound && !connection.clientShutDown {
                connection.clientShutDown = true
                StreamIO.shutdownWrite(destination)
            }
        }
        return true
    }
}

extension EngineConnection {
    var isHandshaking: Bool {
        switch phase {
        case .proxyHeader, .sniffing, .socksGreeting, .socksCredentials, .socksRequest, .httpHead: true
        case .checkingPassword, .resolving, .connecting, .relaying, .draining: false
        }
    }

    /// Waiting for the thread pool or the destination, the request known or not.
    var isWaiting: Bool {
        switch phase {
        case .checkingPassword, .resolving, .connecting: true
        default: false
        }
    }

    var isHTTP: Bool {
        if case .socks = style { false } else { true }
    }
}
