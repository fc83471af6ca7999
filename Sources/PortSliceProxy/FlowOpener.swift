import NIOCore
import NIOPosix
import PortSliceCore
import PortSliceSockets

/// Why a requested flow was not opened; each maps to a SOCKS reply and an HTTP status.
public enum OpenFailure: Error, Sendable, CustomStringConvertible {
    /// The destination policy refuses it (its port or its address).
    case refused(DestinationRefusal)
    /// The name gave no IPv4 address, and why.
    case unresolved(String, LookupFailure)
    /// Every slice that could serve the client is out of ports for this destination.
    case exhausted(Endpoint)
    /// The destination refused the connection.
    case connectionRefused(Endpoint)
    /// The destination did not answer in time.
    case timedOut(Endpoint)
    /// Anything else the network or the system said.
    case failed(String)

    public var description: String {
        switch self {
        case .refused(let reason): "refused by policy: \(reason)"
        case .unresolved(let name, let failure): "cannot resolve \(name) to an IPv4 address: \(failure)"
        case .exhausted(let destination): "every slice for this client is out of ports towards \(destination)"
        case .connectionRefused(let destination): "\(destination) refused the connection"
        case .timedOut(let destination): "\(destination) did not answer in time"
        case .failed(let reason): reason
        }
    }
}

/// Opens a client's flows: resolves the destination, applies the policy, picks the egress
/// slices by the client's traits and dials from them. TCP dials are started here and finished
/// by the proxy engine's loop that watches them (`startTCP`, `PendingDial.finishEnded`);
/// connected UDP flows (SOCKS UDP ASSOCIATE) are handed to SwiftNIO (`openUDP`).
///
/// Dialing is non-blocking system calls, so it runs on the caller's thread. Names are looked
/// up by the engine's resolver (`EngineLoop.lookUp`), on the loops.
public struct FlowOpener: Sendable {
    public let slices: EgressSlices
    public let clientTraits: TraitIndex
    public let policy: DestinationPolicy
    public let connectTimeout: Duration
    public let metrics: ProxyMetrics
    public let recent: RecentFlows
    /// Where passwords are checked: bcrypt takes tens of milliseconds of CPU.
    let passwordChecks: NIOThreadPool

    public init(slices: EgressSlices, clientTraits: TraitIndex, policy: DestinationPolicy, connectTimeout: Duration = .seconds(10),
                metrics: ProxyMetrics = ProxyMetrics(), recent: RecentFlows = RecentFlows(), passwordChecks: NIOThreadPool) {
        self.slices = slices
        self.clientTraits = clientTraits
        self.policy = policy
        self.connectTimeout = connectTimeout
        self.metrics = metrics
        self.recent = recent
        self.passwordChecks = passwordChecks
    }

    /// A name looked up for a flow of a client, from any thread: the first address the policy
    /// allows, or why none; the answer may come on another thread.
    public typealias NameLookup = @Sendable (_ name: String, _ port: UInt16, _ client: IPAddress,
                                             _ then: @escaping @Sendable (Result<Endpoint, OpenFailure>) -> Void) -> Void

    /// An opened flow: a NIO channel that is not yet reading, the local end it left from, and
    /// the slice that end belongs to.
    public struct Opened: @unchecked Sendable {
        public let channel: Channel
        public let local: Endpoint
        public let remote: Endpoint
        public let slice: EgressSlice
        /// Set when the slice is taken away: check before sending.
        let revocation: SliceRevocation
    }

    /// A dialed socket before NIO takes it.
    struct Dialed: Sendable {
        let descriptor: CInt
        let local: Endpoint
        let remote: Endpoint
        let slice: EgressSlice
        /// A TCP flow's port, counted by its dialer until the channel closes (so the dialer's
        /// one-port hints see the proxy's flows when the slice is nearly full).
        var hold: PortHold? = nil
    }

    /// A connected UDP flow to `host:port` from the client's slices, as a NIO datagram
    /// channel set up by `initializer`.
    public func openUDP(host: String, port: UInt16, for client: IPAddress, on eventLoop: any EventLoop, lookUp: NameLookup,
                        initializer: @escaping @Sendable (Channel) -> EventLoopFuture<Void>) -> EventLoopFuture<Opened> {
        destination(host: host, port: port, for: client, on: eventLoop, lookUp: lookUp).flatMapThrowing { destination in
            try dialUDP(to: destination, for: client)
        }.flatMap { dialed in
            DatagramBootstrap(group: eventLoop)
                .channelInitializer(initializer)
                .withBoundSocket(dialed.descriptor)
                .flatMapThrowing { try tracked($0, dialed, client: client, transport: .udp) }
        }
    }

    /// `address:port` when the policy allows both.
    func allowed(_ address: IPv4Address, port: UInt16) throws(OpenFailure) -> Endpoint {
        if let refusal = policy.refusal(for: address, port: port, egressAddresses: slices.held.dialers.keys) { throw .refused(refusal) }
        return Endpoint(address, port)
    }

    /// The first of a name's `addresses` the policy allows, with `port`; else the refusal of
    /// the first.
    func allowed(among addresses: [IPv4Address], port: UInt16) throws(OpenFailure) -> Endpoint {
        let own = slices.held.dialers.keys
        return try allowed(addresses.first { policy.refusal(for: $0, egressAddresses: own) == nil } ?? addresses[0], port: port)
    }

    /// The address a flow of `client` would leave from now (the one its traits choose), which
    /// a name lookup names to geo-DNS; nil while no slice is held.
    func egressAddress(for client: IPAddress) -> IPv4Address? {
        slices.held.chosen(for: client, traits: clientTraits.lookup(client)?.traits ?? .unknown)?.address.address
    }

    /// `host:port` as an allowed IPv4 destination, on `eventLoop`: a literal at once, a name
    /// through `lookUp`.
    func destination(host: String, port: UInt16, for client: IPAddress, on eventLoop: any EventLoop, lookUp: NameLookup) -> EventLoopFuture<Endpoint> {
        if let literal = try? IPv4Address(parsing: host) {
            return eventLoop.makeCompletedFuture { () throws(OpenFailure) in try allowed(literal, port: port) }
        }
        let promise = eventLoop.makePromise(of: Endpoint.self)
        lookUp(host, port, client) { promise.completeWith($0.mapError { $0 as any Error }) }
        return promise.futureResult
    }

    /// The chosen address's slices, then the equally close addresses' slices, for `client`.
    private func candidates(for client: IPAddress, towards destination: Endpoint) throws -> (first: [SliceDialer], then: () -> [SliceDialer]) {
        let held = slices.held
        let traits = clientTraits.lookup(client)?.traits ?? .unknown
        guard let chosen = held.chosen(for: client, traits: traits) else { throw OpenFailure.exhausted(destination) }
        return (chosen.dialers, { held.alternatives(to: chosen.address, for: client, traits: traits) })
    }

    /// Starts the TCP handshake from the first slice with a port free towards `destination`.
    func startTCP(to destination: Endpoint, for client: IPAddress) throws -> PendingDial {
        let (first, then) = try candidates(for: client, towards: destination)
        let start = { (dialer: SliceDialer) throws(DialError) -> PendingDial in PendingDial(try dialer.startTCP(to: destination), slice: dialer.slice) }
        if let pending = try firstDialer(first, towards: destination, start) { return pending }
        if let pending = try firstDialer(then(), towards: destination, start) { return pending }
        throw OpenFailure.exhausted(destination)
    }

    func dialUDP(to destination: Endpoint, for client: IPAddress) throws -> Dialed {
        let (first, then) = try candidates(for: client, towards: destination)
        let connect = { (dialer: SliceDialer) throws(DialError) -> Dialed in
            let socket = try dialer.connectUDP(to: destination, nonBlocking: true)
            let local = socket.local
            return Dialed(descriptor: socket.takeDescriptor(), local: local, remote: destination, slice: dialer.slice)
        }
        if let dialed = try firstDialer(first, towards: destination, connect) { return dialed }
        if let dialed = try firstDialer(then(), towards: destination, connect) { return dialed }
        throw OpenFailure.exhausted(destination)
    }

    /// What `attempt` makes with the first of `dialers` that has a port free towards
    /// `destination`; nil when every one is out of ports. Any other failure ends the search.
    private func firstDialer<Made>(_ dialers: [SliceDialer], towards destination: Endpoint,
                                   _ attempt: (SliceDialer) throws(DialError) -> Made) throws -> Made? {
        for dialer in dialers {
            do {
                return try attempt(dialer)
            } catch .sliceExhausted {
                metrics.sliceExhausted(dialer.slice)
            } catch {
                throw OpenFailure(error, towards: destination)
            }
        }
        return nil
    }

    /// A TCP handshake under way from a slice; `finish` waits for its end. A class so that
    /// the not-copyable connection can cross to the thread that waits.
    final class PendingDial: @unchecked Sendable {
        private var connection: PendingConnection?
        let slice: EgressSlice

        init(_ connection: consuming PendingConnection, slice: EgressSlice) {
            self.connection = consume connection
            self.slice = slice
        }

        /// The socket whose handshake is under way, to watch for its end.
        var descriptor: CInt { connection?.pollableDescriptor ?? -1 }

        /// Ends the dial once its watcher saw the handshake end (`failed`: with an error or a
        /// hang-up).
        func finishEnded(failed: Bool) throws(OpenFailure) -> Dialed {
            guard let connection = connection.take() else { throw .failed("a dial was finished twice") }
            let remote = connection.remote
            do {
                let socket = try connection.finishEnded(failed: failed)
                let local = socket.local
                let (descriptor, hold) = socket.handOff()
                return Dialed(descriptor: descriptor, local: local, remote: remote, slice: slice, hold: hold)
            } catch {
                throw OpenFailure(error, towards: remote)
            }
        }
    }

    /// The flow on `channel`, once recorded as a flow of its slice; closed and refused as
    /// exhausted when the slice was taken away while it was dialed.
    private func tracked(_ channel: any Channel, _ dialed: Dialed, client: IPAddress, transport: Transport) throws -> Opened {
        guard let revocation = slices.track(channel, from: dialed.slice) else {
            channel.close(promise: nil)
            throw OpenFailure.exhausted(dialed.remote)
        }
        let opened = Opened(channel: channel, local: dialed.local, remote: dialed.remote, slice: dialed.slice, revocation: revocation)
        recent.record(from: opened.local, to: opened.remote, slice: opened.slice, client: client, transport: transport)
        return opened
    }
}

extension OpenFailure {
    /// A dialing error as the client is told it.
    init(_ error: DialError, towards destination: Endpoint) {
        switch error {
        case .sliceExhausted: self = .exhausted(destination)
        case .timedOut: self = .timedOut(destination)
        case .system(_, let errno) where errno == .connectionRefused: self = .connectionRefused(destination)
        default: self = .failed("\(error)")
        }
    }
}
