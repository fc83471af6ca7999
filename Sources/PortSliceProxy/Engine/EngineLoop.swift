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
    let listener: SharedPortListener
    let poller: EventPoller
    let wakeup: Wakeup
    let inbox = Mutex<[(slot: Int, generation: UInt32, work: @Sendable (EngineLoop, EngineConnection) -> Void)]>([])
    /// Work for the loop from other threads (a UDP association's name lookup); nil once the
    /// loop has stopped and will run no more.
    let tasks = Mutex<[@Sendable (EngineLoop) -> Void]?>([])
    let stopping = Atomic<Bool>(false)
    let resolver: EngineResolver

    var connections: [EngineConnection?] = []
    /// Connections closed, kept (each with its slot) for the next ones.
    var spare: [EngineConnection] = []
    /// The loop's buffer for every read: relayed bytes pass through it on their way.
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 * 1024, alignment: 16)
    /// Milliseconds since the loop started, read once per wake.
    var now: Int64 = 0
    let started = ContinuousClock.now
    var nextSweep: Int64 = 0
    /// The listener had connections it could not take (out of descriptors): it is watched
    /// again on the next sweep.
    var acceptDeferred = false
    /// Connections whose IPv4 fallback starts at a moment (Happy Eyeballs): checked at every
    /// wake, and the wait is no longer than the soonest of them.
    var fallbacksDue: [(slot: Int, generation: UInt32, at: Int64)] = []

    static let listenerToken = UInt64.max
    static let wakeupToken = UInt64.max - 1
    /// How often timeouts (connect, idle) are checked.
    static let sweepMilliseconds: Int64 = 100

    init(session: ProxySession, listener: consuming SharedPortListener) throws(DialError) {
        self.session = session
        self.listener = listener
        poller = try EventPoller()
        wakeup = try Wakeup()
        resolver = EngineResolver(settings: session.settings.resolver, poller: poller)
        try poller.watch(self.listener.descriptor, token: Self.listenerToken, for: .listener)
        try poller.watch(wakeup.descriptor, token: Self.wakeupToken, for: .readable)
    }

    deinit { buffer.deallocate() }

    var endpoint: Endpoint { listener.endpoint }

    /// Serves until `stop`, then closes every connection it holds.
    func run() {
        while !stopping.load(ordering: .relaxed) {
            let soonestFallback = fallbacksDue.lazy.map(\.at).min().map { max(0, $0 - milliseconds()) } ?? Self.sweepMilliseconds
            do {
                try poller.wait(timeoutMilliseconds: Int32(min(Self.sweepMilliseconds, soonestFallback))) { token, readiness in handle(token, readiness) }
            } catch {
                session.logger.critical("the proxy's event loop cannot wait for events: \(error); it stops")
                break
            }
            now = milliseconds()
            if !fallbacksDue.isEmpty { startFallbacksDue() }
            if now >= nextSweep {
                nextSweep = now + Self.sweepMilliseconds
                sweep()
            }
        }
        for connection in connections.compactMap({ $0 }) { close(connection) }
        // What was posted before the stop still runs, after the resolver has closed: a UDP
        // flow's lookup is answered as stopping (not from the hosts file or the cache, which
        // would dial a flow while the proxy stops); what comes later is refused by `post`.
        resolver.closeAll()
        for task in tasks.withLock({ tasks in defer { tasks = nil }; return tasks ?? [] }) { task(self) }
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

    /// Runs `work` on the loop (from any thread). - Returns: false when the loop has stopped,
    /// and `work` will never run.
    @discardableResult
    func post(_ work: @escaping @Sendable (EngineLoop) -> Void) -> Bool {
        guard tasks.withLock({ tasks in tasks?.append(work) != nil }) else { return false }
        wakeup.signal()
        return true
    }

    /// Looks `name` up on this loop for a UDP flow of `client` to `port` (from any thread):
    /// the first IPv4 address the policy allows, or why none; `then` runs on the loop, or at
    /// once on the caller's thread when the loop has stopped.
    func resolve(_ name: String, port: UInt16, for client: IPAddress, then: @escaping @Sendable (Result<Endpoint, OpenFailure>) -> Void) {
        let posted = post { loop in
            let opener = loop.session.opener
            if let refusal = opener.policy.ports.refusal(for: port) { return then(.failure(.refused(.port(refusal)))) }
            loop.resolver.lookUp(name, for: client, egress4: opener.ipv4Egress(for: client)?.address.address, egress6: nil, now: loop.now) { result in
                switch result {
                case .success(let found): then(Result { () throws(OpenFailure) in try opener.allowed(among: found.ipv4, port: port) })
                case .failure(let failure): then(.failure(.unresolved(name, failure)))
                }
            }
        }
        if !posted { then(.failure(.unresolved(name, .stopping))) }
    }

    /// Looks `name` up on the loop's thread for a TCP flow of `client` to `port`: where to
    /// dial (IPv6 first when the client can leave over IPv6), or why nowhere.
    func lookUp(_ name: String, port: UInt16, for client: IPAddress, then: @escaping (Result<FlowOpener.Destinations, OpenFailure>) -> Void) {
        let opener = session.opener
        if let refusal = opener.policy.ports.refusal(for: port) { return then(.failure(.refused(.port(refusal)))) }
        // Found once: named to geo-DNS, then dialled from.
        let traits = opener.traits(of: client)
        let source6 = opener.ipv6Source(for: client, traits: traits), egress4 = opener.ipv4Egress(for: client, traits: traits)
        resolver.lookUp(name, for: client, egress4: egress4?.address.address, egress6: source6?.address, now: now) { result in
            switch result {
            case .success(let found):
                then(Result { () throws(OpenFailure) in try opener.destinations(found, port: port, ipv6Source: source6, ipv4Egress: egress4) })
            case .failure(let failure): then(.failure(.unresolved(name, failure)))
            }
        }
    }

    func milliseconds() -> Int64 {
        let elapsed = ContinuousClock.now - started
        return elapsed.components.seconds * 1000 + elapsed.components.attoseconds / 1_000_000_000_000_000
    }

    // MARK: - Events

    func handle(_ token: UInt64, _ readiness: Readiness) {
        switch token {
        case Self.listenerToken:
            acceptOne()
        case Self.wakeupToken:
            wakeup.drain()
            for item in inbox.withLock({ items in defer { items.removeAll(keepingCapacity: true) }; return items }) {
                guard let connection = connections[item.slot], connection.generation == item.generation else { continue }
                item.work(self, connection)
            }
            for task in tasks.withLock({ tasks in defer { tasks?.removeAll(keepingCapacity: true) }; return tasks ?? [] }) { task(self) }
        case let token where token & EngineResolver.tokenMark != 0:
            resolver.handle(token, readiness, now: now)
        default:
            let slot = Int((token >> 2) & 0x3fff_ffff), generation = UInt32(token >> 32)
            guard slot < connections.count, let connection = connections[slot], connection.generation == generation else { return }
            let readable = readiness.readable || readiness.peerClosed || readiness.failed
            let writable = readiness.writable || readiness.failed
            switch Side(rawValue: token & 3) {
            case .client:
                connection.clientReadable = connection.clientReadable || readable
                connection.clientWritable = connection.clientWritable || writable
                connection.clientHungUp = connection.clientHungUp || readiness.peerClosed || readiness.failed
            case .upstream:
                connection.upstreamReadable = connection.upstreamReadable || readable
                connection.upstreamWritable = connection.upstreamWritable || writable
                connection.upstreamHungUp = connection.upstreamHungUp || readiness.peerClosed || readiness.failed
                connection.upstreamFailed = connection.upstreamFailed || readiness.failed
            case .racer:
                connection.racerWritable = connection.racerWritable || writable
                connection.racerFailed = connection.racerFailed || readiness.failed || readiness.peerClosed
            case nil:
                return
            }
            advance(connection)
        }
    }

    /// Which of a connection's sockets an event is for (the low two bits of its token).
    enum Side: UInt64 {
        case client = 0, upstream = 1
        /// The IPv4 attempt racing the IPv6 one (Happy Eyeballs).
        case racer = 2
    }

    func token(_ connection: EngineConnection, _ side: Side) -> UInt64 {
        UInt64(connection.generation) << 32 | UInt64(connection.slot) << 2 | side.rawValue
    }

    /// Takes one connection: the listener is reported at every wait while more are queued,
    /// so a busy loop takes one per wait beside its other events, and an idle one spends no
    /// `accept` on an empty queue.
    func acceptOne() {
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

    func admit(_ descriptor: CInt, peer: Endpoint) {
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
            try poller.watch(descriptor, token: token(connection, .client), for: .stream)
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
    func countIn(_ connection: EngineConnection) -> Bool {
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

    func take() -> EngineConnection {
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
            if case .slice(let slice) = flow.source { session.opener.slices.untrack(ObjectIdentifier(connection), from: slice) }
        }
        if connection.admitted { session.counts.leave(connection.clientAddress) }
        connection.reset()
        connections[connection.slot] = nil
        spare.append(connection)
    }

    func sweep() {
        if acceptDeferred {
            acceptDeferred = false
            do {
                try poller.watch(listener.descriptor, token: Self.listenerToken, for: .listener)
            } catch {
                session.logger.error("cannot watch the listener again: \(error)")
                acceptDeferred = true
            }
        }
        resolver.expire(now: now)
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

    func advance(_ connection: EngineConnection) {
        switch connection.phase {
        case .proxyHeader, .sniffing, .socksGreeting, .socksCredentials, .socksRequest, .httpHead, .checkingPassword, .resolving:
            guard flushToClient(connection) else { return close(connection) }
            readBeforeRelay(connection)
        case .connecting:
            readBeforeRelay(connection)
            if connections[connection.slot] === connection && connection.upstreamWritable { finishDial(connection) }
            if connections[connection.slot] === connection && connection.phase == .connecting && connection.racerWritable { finishRacer(connection) }
        case .relaying:
            relay(connection)
        case .draining:
            drain(connection)
        }
    }
}
