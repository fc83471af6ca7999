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
    case exhausted(IPEndpoint)
    /// The client has no egress of the destination's family (no IPv6 prefix for an IPv6-only
    /// destination, no slice for an IPv4 one).
    case noEgress(IPEndpoint)
    /// The destination refused the connection.
    case connectionRefused(IPEndpoint)
    /// The destination did not answer in time.
    case timedOut(IPEndpoint)
    /// Anything else the network or the system said.
    case failed(String)

    public var description: String {
        switch self {
        case .refused(let reason): "refused by policy: \(reason)"
        case .unresolved(let name, let failure): "cannot resolve \(name): \(failure)"
        case .exhausted(let destination): "every slice for this client is out of ports towards \(destination)"
        case .noEgress(let destination):
            switch destination.address {
            case .v4: "no IPv4 slice serves this client, so \(destination) cannot be reached"
            case .v6: "no IPv6 prefix serves this client (give --prefix), so \(destination) cannot be reached"
            }
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
///
/// IPv4 flows leave from port slices of shared addresses; IPv6 flows from an address of the
/// client's own inside an IPv6 prefix (`prefixes`, `clientAddresses`), where there is one.
public struct FlowOpener: Sendable {
    public let slices: EgressSlices
    public let prefixes: EgressPrefixes
    /// Which address of a prefix each client leaves from; nil without prefixes.
    public let clientAddresses: ClientAddresses?
    public let clientTraits: TraitIndex
    public let policy: DestinationPolicy
    public let connectTimeout: Duration
    public let metrics: ProxyMetrics
    public let recent: RecentFlows
    /// Where passwords are checked: bcrypt takes tens of milliseconds of CPU.
    let passwordChecks: NIOThreadPool

    public init(slices: EgressSlices, prefixes: EgressPrefixes = EgressPrefixes(), clientAddresses: ClientAddresses? = nil,
                clientTraits: TraitIndex, policy: DestinationPolicy, connectTimeout: Duration = .seconds(10),
                metrics: ProxyMetrics = ProxyMetrics(), recent: RecentFlows = RecentFlows(), passwordChecks: NIOThreadPool) {
        precondition(prefixes.isEmpty || clientAddresses != nil, "IPv6 prefixes need the key that picks each client's address")
        self.slices = slices
        self.prefixes = prefixes
        self.clientAddresses = clientAddresses
        self.clientTraits = clientTraits
        self.policy = policy
        self.connectTimeout = connectTimeout
        self.metrics = metrics
        self.recent = recent
        self.passwordChecks = passwordChecks
    }

    /// How long an IPv6 attempt has before IPv4 is tried beside it (RFC 8305's recommended
    /// Connection Attempt Delay).
    public static let happyEyeballsDelay: Int64 = 250

    /// Where a flow of a name goes: the first allowed address of the family tried first, and of
    /// the other family, if any, the one tried `happyEyeballsDelay` later.
    struct Destinations {
        let first: IPEndpoint
        let fallback: IPEndpoint?
        /// Where the client's IPv6 flows leave from, found once for the lookup's subnet and
        /// kept for the dial.
        let ipv6Source: IPv6Source?
        /// Where its IPv4 flows leave from, found for the lookup's subnet, kept for the first
        /// dial (and a fallback started because it failed at once) while the held slices stay
        /// as they were; a Happy Eyeballs IPv4 attempt started later chooses again.
        let ipv4Egress: IPv4Egress?
    }

    /// The address a client's IPv4 flows leave from (the one its traits choose) and its
    /// slices, in the picture of the held slices it was chosen from.
    struct IPv4Egress: Sendable {
        let held: EgressSlices.Held
        let client: IPAddress
        let traits: Traits
        let address: EgressAddress
        let dialers: [SliceDialer]

        /// The slices of the other addresses as close to the client's traits: where a flow
        /// goes when the chosen address's slices are out of ports.
        var alternatives: [SliceDialer] { held.alternatives(to: address, for: client, traits: traits) }
    }

    /// The prefix a client's IPv6 flows leave from, and its address there.
    struct IPv6Source: Sendable {
        let prefix: IPv6Prefix
        let address: IPv6Address
    }

    /// A name looked up for a UDP flow of a client, from any thread: the first IPv4 address the
    /// policy allows, or why none; the answer may come on another thread.
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

    /// A TCP flow whose handshake ended well: its socket, its ends, where it left from.
    struct DialedStream: Sendable {
        let descriptor: CInt
        let local: IPEndpoint
        let remote: IPEndpoint
        let source: FlowSource
        /// A slice flow's port, counted by its dialer until the flow closes (so the dialer's
        /// one-port hints see the proxy's flows when the slice is nearly full).
        var hold: PortHold? = nil
    }

    /// A dialed UDP socket before NIO takes it.
    struct Dialed: Sendable {
        let descriptor: CInt
        let local: Endpoint
        let remote: Endpoint
        let slice: EgressSlice
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

    /// `address:port` of either family when the policy allows it; an address of the proxy's
    /// own prefixes is refused as an egress address.
    func allowed(_ address: IPAddress, port: UInt16) throws(OpenFailure) -> IPEndpoint {
        switch address {
        case .v4(let v4):
            return IPEndpoint(try allowed(v4, port: port))
        case .v6:
            if let refusal = policy.refusal(for: address, port: port, egressPrefixes: prefixes.networks) { throw .refused(refusal) }
            return IPEndpoint(address, port)
        }
    }

    /// The first of a name's `addresses` the policy allows, with `port`; else the refusal of
    /// the first.
    func allowed(among addresses: [IPv4Address], port: UInt16) throws(OpenFailure) -> Endpoint {
        let own = slices.held.dialers.keys
        return try allowed(addresses.first { policy.refusal(for: $0, egressAddresses: own) == nil } ?? addresses[0], port: port)
    }

    /// Where a TCP flow to a name with `resolved` addresses goes: IPv6 first when the client
    /// can leave over IPv6 (`ipv6Source`) and the name has an allowed IPv6 address, IPv4
    /// then (or alone).
    func destinations(_ resolved: ResolvedAddresses, port: UInt16, ipv6Source: IPv6Source?, ipv4Egress: IPv4Egress?) throws(OpenFailure) -> Destinations {
        var refusal: OpenFailure?
        func firstAllowed(_ addresses: [IPAddress]) -> IPEndpoint? {
            for address in addresses {
                do throws(OpenFailure) { return try allowed(address, port: port) } catch { refusal = refusal ?? error }
            }
            return nil
        }
        let viaIPv6 = ipv6Source == nil ? nil : firstAllowed(resolved.ipv6.map(IPAddress.v6))
        let viaIPv4 = firstAllowed(resolved.ipv4.map(IPAddress.v4))
        switch (viaIPv6, viaIPv4) {
        case (let six?, let four): return Destinations(first: six, fallback: four, ipv6Source: ipv6Source, ipv4Egress: ipv4Egress)
        case (nil, let four?): return Destinations(first: four, fallback: nil, ipv6Source: nil, ipv4Egress: ipv4Egress)
        case (nil, nil):
            if let refusal { throw refusal }
            throw .noEgress(IPEndpoint(resolved.ipv6.first.map(IPAddress.v6) ?? .v4(resolved.ipv4.first ?? IPv4Address(bits: 0)), port))
        }
    }

    func traits(of client: IPAddress) -> Traits { clientTraits.lookup(client)?.traits ?? .unknown }

    /// Where a flow of `client` (with `traits`, when known) leaves from now over IPv4, which a
    /// name lookup also names to geo-DNS: `earlier` when it was chosen for this client from the
    /// slices held now; nil while no slice is held.
    func ipv4Egress(for client: IPAddress, traits known: Traits? = nil, reusing earlier: IPv4Egress? = nil) -> IPv4Egress? {
        let held = slices.held
        if let earlier, earlier.held.version == held.version, earlier.client == client { return earlier }
        let traits = known ?? traits(of: client)
        guard let chosen = held.chosen(for: client, traits: traits) else { return nil }
        return IPv4Egress(held: held, client: client, traits: traits, address: chosen.address, dialers: chosen.dialers)
    }

    /// The prefix `client`'s IPv6 flows leave from, and its address there; nil without prefixes.
    func ipv6Source(for client: IPAddress, traits known: Traits? = nil) -> IPv6Source? {
        guard let clientAddresses, let prefix = prefixes.chosen(traits: known ?? traits(of: client)) else { return nil }
        return IPv6Source(prefix: prefix, address: clientAddresses.address(for: client, in: prefix))
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
    private func candidates(for client: IPAddress, towards destination: Endpoint, reusing earlier: IPv4Egress? = nil) throws -> (first: [SliceDialer], then: () -> [SliceDialer]) {
        guard let egress = ipv4Egress(for: client, reusing: earlier) else { throw OpenFailure.exhausted(IPEndpoint(destination)) }
        return (egress.dialers, { egress.alternatives })
    }

    /// Starts the TCP handshake: to an IPv4 destination from the first slice with a port free
    /// towards it, to an IPv6 one from the client's address in its prefix (`known`, when the
    /// caller found it already; `known4`, the IPv4 egress a lookup found, is kept while the
    /// held slices have not changed).
    func startTCP(to destination: IPEndpoint, for client: IPAddress, from known: IPv6Source? = nil, egress known4: IPv4Egress? = nil) throws -> PendingDial {
        switch destination.address {
        case .v6(let address):
            guard let source = known ?? ipv6Source(for: client) else { throw OpenFailure.noEgress(destination) }
            do {
                return PendingDial(try IPv6Dial.start(from: source.address, to: address, port: destination.port), prefix: source.prefix, remote: destination)
            } catch {
                throw OpenFailure(error, towards: destination)
            }
        case .v4(let address):
            let target = Endpoint(address, destination.port)
            let (first, then) = try candidates(for: client, towards: target, reusing: known4)
            let start = { (dialer: SliceDialer) throws(DialError) -> PendingDial in PendingDial(try dialer.startTCP(to: target), slice: dialer.slice) }
            if let pending = try firstDialer(first, towards: target, start) { return pending }
            if let pending = try firstDialer(then(), towards: target, start) { return pending }
            throw OpenFailure.exhausted(destination)
        }
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
        throw OpenFailure.exhausted(IPEndpoint(destination))
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

    /// A TCP handshake under way, from a slice or from a prefix; the loop watching its
    /// descriptor ends it with `finishEnded`. Dropped unfinished, it closes its socket (and a
    /// slice's gives its port back).
    final class PendingDial: @unchecked Sendable {
        private var connection: PendingConnection?
        private var prefixSocket: CInt = -1
        let source: FlowSource
        let remote: IPEndpoint

        init(_ connection: consuming PendingConnection, slice: EgressSlice) {
            remote = IPEndpoint(connection.remote)
            self.connection = consume connection
            source = .slice(slice)
        }

        init(_ descriptor: CInt, prefix: IPv6Prefix, remote: IPEndpoint) {
            prefixSocket = descriptor
            source = .prefix(prefix)
            self.remote = remote
        }

        deinit { if prefixSocket >= 0 { StreamIO.close(prefixSocket) } }

        /// The socket whose handshake is under way, to watch for its end.
        var descriptor: CInt { connection?.pollableDescriptor ?? prefixSocket }

        /// Ends the dial once its watcher saw the handshake end (`failed`: with an error or a
        /// hang-up).
        func finishEnded(failed: Bool) throws(OpenFailure) -> DialedStream {
            if prefixSocket >= 0 {
                let descriptor = prefixSocket
                // As for IPv4: the poller's word is enough when the handshake ended well; why it
                // failed is asked only when it did.
                if failed {
                    throw OpenFailure(IPv6Dial.failure(of: descriptor) ?? .system(call: "connect", errno: .connectionRefused), towards: remote)
                }
                prefixSocket = -1
                let local = IPv6Dial.local(of: descriptor).map { IPEndpoint(.v6($0.address), $0.port) } ?? remote
                return DialedStream(descriptor: descriptor, local: local, remote: remote, source: source)
            }
            guard let connection = connection.take() else { throw .failed("a dial was finished twice") }
            do {
                let socket = try connection.finishEnded(failed: failed)
                let local = socket.local
                let (descriptor, hold) = socket.handOff()
                return DialedStream(descriptor: descriptor, local: IPEndpoint(local), remote: remote, source: source, hold: hold)
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
            throw OpenFailure.exhausted(IPEndpoint(dialed.remote))
        }
        let opened = Opened(channel: channel, local: dialed.local, remote: dialed.remote, slice: dialed.slice, revocation: revocation)
        recent.record(from: IPEndpoint(opened.local), to: IPEndpoint(opened.remote), source: .slice(opened.slice), client: client, transport: transport)
        return opened
    }
}

/// Where a flow leaves from: a port slice of a shared IPv4 address, or an IPv6 prefix (the
/// client's own address in it).
enum FlowSource: Hashable, Sendable, CustomStringConvertible {
    case slice(EgressSlice)
    case prefix(IPv6Prefix)

    /// The egress label of metrics: the address, or the prefix.
    var egress: String {
        switch self {
        case .slice(let slice): "\(slice.address)"
        case .prefix(let prefix): "\(prefix)"
        }
    }

    /// The slice label of metrics: its ports, or `per-client` for a prefix's addresses.
    var ports: String {
        switch self {
        case .slice(let slice): "\(slice.ports)"
        case .prefix: "per-client"
        }
    }

    var description: String {
        switch self {
        case .slice(let slice): "\(slice)"
        case .prefix(let prefix): "\(prefix)"
        }
    }
}

extension OpenFailure {
    init(_ error: DialError, towards destination: Endpoint) {
        self.init(error, towards: IPEndpoint(destination))
    }

    /// A dialing error as the client is told it.
    init(_ error: DialError, towards destination: IPEndpoint) {
        switch error {
        case .sliceExhausted: self = .exhausted(destination)
        case .timedOut: self = .timedOut(destination)
        case .system(_, let errno) where errno == .connectionRefused: self = .connectionRefused(destination)
        default: self = .failed("\(error)")
        }
    }
}
