import NIOCore
import NIOPosix
import PortSliceCore
import PortSliceSockets

/// Why a requested flow was not opened; each maps to a SOCKS reply and an HTTP status.
public enum OpenFailure: Error, Sendable, CustomStringConvertible {
    /// The destination policy refuses it.
    case refused(String)
    /// The name does not resolve to an IPv4 address.
    case unresolved(String)
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
        case .unresolved(let name): "cannot resolve \(name) to an IPv4 address"
        case .exhausted(let destination): "every slice for this client is out of ports towards \(destination)"
        case .connectionRefused(let destination): "\(destination) refused the connection"
        case .timedOut(let destination): "\(destination) did not answer in time"
        case .failed(let reason): reason
        }
    }
}

/// Opens a client's TCP flow (or connected UDP flow): resolves the destination, applies the
/// policy, picks the egress slices by the client's traits and dials from them (blocking calls,
/// on a thread pool whose size bounds the dials in flight), then hands the connected socket to
/// SwiftNIO on the client's event loop.
public struct FlowOpener: Sendable {
    public let slices: EgressSlices
    public let clientTraits: TraitIndex
    public let policy: DestinationPolicy
    public let connectTimeout: Duration
    public let metrics: ProxyMetrics
    public let recent: RecentFlows
    let threadPool: NIOThreadPool

    public init(slices: EgressSlices, clientTraits: TraitIndex, policy: DestinationPolicy, connectTimeout: Duration = .seconds(10),
                metrics: ProxyMetrics = ProxyMetrics(), recent: RecentFlows = RecentFlows(), threadPool: NIOThreadPool) {
        self.slices = slices
        self.clientTraits = clientTraits
        self.policy = policy
        self.connectTimeout = connectTimeout
        self.metrics = metrics
        self.recent = recent
        self.threadPool = threadPool
    }

    /// An opened flow: a NIO channel that is not yet reading, the local end it left from, and
    /// the slice that end belongs to.
    public struct Opened: @unchecked Sendable {
        public let channel: Channel
        public let local: Endpoint
        public let remote: Endpoint
        public let slice: EgressSlice
    }

    /// A dialed socket before NIO takes it.
    struct Dialed: Sendable {
        let descriptor: CInt
        let local: Endpoint
        let remote: Endpoint
        let slice: EgressSlice
    }

    public func open(host: String, port: UInt16, for client: IPAddress, on eventLoop: any EventLoop) -> EventLoopFuture<Opened> {
        threadPool.runIfActive(eventLoop: eventLoop) {
            try dial(host: host, port: port, for: client)
        }.flatMap { dialed in
            ClientBootstrap(group: eventLoop)
                .channelOption(.autoRead, value: false)
                .channelOption(.allowRemoteHalfClosure, value: true)
                .withConnectedSocket(dialed.descriptor)
                .flatMapThrowing { try tracked(Opened(channel: $0, local: dialed.local, remote: dialed.remote, slice: dialed.slice), client: client, transport: .tcp) }
        }
    }

    /// A connected UDP flow to `host:port` from the client's slices, as a NIO datagram
    /// channel set up by `initializer`.
    public func openUDP(host: String, port: UInt16, for client: IPAddress, on eventLoop: any EventLoop,
                        initializer: @escaping @Sendable (Channel) -> EventLoopFuture<Void>) -> EventLoopFuture<Opened> {
        threadPool.runIfActive(eventLoop: eventLoop) {
            try dial(host: host, port: port, for: client, transport: .udp)
        }.flatMap { dialed in
            DatagramBootstrap(group: eventLoop)
                .channelInitializer(initializer)
                .withBoundSocket(dialed.descriptor)
                .flatMapThrowing { try tracked(Opened(channel: $0, local: dialed.local, remote: dialed.remote, slice: dialed.slice), client: client, transport: .udp) }
        }
    }

    /// `opened`, once recorded as a flow of its slice; closed and refused as exhausted when
    /// the slice was taken away while it was dialed.
    private func tracked(_ opened: Opened, client: IPAddress, transport: Transport) throws -> Opened {
        guard slices.track(opened.channel, from: opened.slice) else {
            opened.channel.close(promise: nil)
            throw OpenFailure.exhausted(opened.remote)
        }
        recent.record(opened, client: client, transport: transport)
        return opened
    }

    func dial(host: String, port: UInt16, for client: IPAddress, transport: Transport = .tcp) throws -> Dialed {
        let address: IPv4Address
        if let literal = try? IPv4Address(parsing: host) {
            address = literal
        } else {
            guard let resolved = try? HostNetwork.resolveIPv4(host), let first = resolved.first(where: { policy.refusal(for: $0, egressAddresses: slices.held.dialers.keys) == nil }) ?? resolved.first else {
                throw OpenFailure.unresolved(host)
            }
            address = first
        }
        let held = slices.held
        if let reason = policy.refusal(for: address, egressAddresses: held.dialers.keys) { throw OpenFailure.refused(reason) }
        let destination = Endpoint(address, port)
        let traits = clientTraits.lookup(client)?.traits ?? .unknown
        guard let chosen = held.chosen(for: client, traits: traits) else { throw OpenFailure.exhausted(destination) }
        if let dialed = try dial(destination, from: chosen.dialers, transport: transport) { return dialed }
        if let dialed = try dial(destination, from: held.alternatives(to: chosen.address, for: client, traits: traits), transport: transport) { return dialed }
        throw OpenFailure.exhausted(destination)
    }

    /// The first of `dialers` that opens the flow, or nil when every one is out of ports for
    /// `destination`; any other failure ends the attempt.
    func dial(_ destination: Endpoint, from dialers: [SliceDialer], transport: Transport) throws -> Dialed? {
        for dialer in dialers {
            do {
                let socket = transport == .tcp
                    ? try dialer.connectTCP(to: destination, timeout: connectTimeout, nonBlocking: true)
                    : try dialer.connectUDP(to: destination, nonBlocking: true)
                let local = socket.local
                return Dialed(descriptor: socket.takeDescriptor(), local: local, remote: destination, slice: dialer.slice)
            } catch .sliceExhausted {
                metrics.sliceExhausted(dialer.slice)
            } catch .timedOut {
                throw OpenFailure.timedOut(destination)
            } catch .system(_, let errno) where errno == .connectionRefused {
                throw OpenFailure.connectionRefused(destination)
            } catch {
                throw OpenFailure.failed("\(error)")
            }
        }
        return nil
    }
}
