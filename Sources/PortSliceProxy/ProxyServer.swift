import Foundation
import Logging
import NIOCore
import NIOPosix
import PortSliceCore
import PortSliceSockets
import ServiceLifecycle
import Synchronization

/// The egress proxy: SOCKS5 (RFC 1928: CONNECT, UDP ASSOCIATE, RFC 1929 passwords) and HTTP
/// (CONNECT and absolute-URI requests) on one port, told apart by the first byte, optionally
/// behind a PROXY protocol header naming the true client. Each flow leaves from a slice chosen
/// by the client's traits (`FlowOpener`) and is relayed both ways.
///
/// The connection path is an engine of its own rather than SwiftNIO, whose two channels per
/// connection cost several times a small C proxy's CPU per new connection: one `EngineLoop`
/// per core, each with its own `SO_REUSEPORT` listener and epoll set, serving each connection
/// on the thread that accepted it. UDP associations are served by SwiftNIO.
///
/// As a `Service`, it serves from `start` until graceful shutdown, then closes its listeners
/// and every connection.
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
        /// How destination names are looked up.
        public var resolver: ResolverSettings
        /// Keeps loop i on the i-th CPU the starting thread may use (sharing them round the list
        /// when there are more loops; none is pinned when there are fewer, as under a CPU quota),
        /// so the scheduler never moves it between CPUs, which cost
        /// each connection's round trips about a tenth more CPU (see `CPUAffinity`). Off by
        /// default here, where the embedding process owns its threads' places (the tests run
        /// many proxies in one process); `portslice proxy` and `agent` turn it on unless told
        /// `--no-pin-loops`, for a proxy on CPUs it shares with busier work.
        public var pinsLoops: Bool

        public init(connectionsPerClient: Int = 256, idleTimeout: TimeAmount = .seconds(300), trustProxyProtocol: Bool = false,
                    proxyProtocolPeers: [IPv4Prefix] = [], users: ProxyUsers? = nil, resolver: ResolverSettings = .system(), pinsLoops: Bool = false) {
            precondition(!trustProxyProtocol || !proxyProtocolPeers.isEmpty, "trusting PROXY headers needs the peers that may send them")
            self.connectionsPerClient = connectionsPerClient
            self.idleTimeout = idleTimeout
            self.trustProxyProtocol = trustProxyProtocol
            self.proxyProtocolPeers = proxyProtocolPeers
            self.users = users
            self.resolver = resolver
            self.pinsLoops = pinsLoops
        }
    }

    private let loops: [EngineLoop]
    private let finished: [DispatchSemaphore]

    /// Where it listens (the port chosen, when 0 was asked for).
    public let endpoint: Endpoint

    /// Binds `endpoint` once per loop (`threads`; by default one per CPU this process may use,
    /// as `activeProcessorCount` counts them: its affinity, and a container's CPU quota) and
    /// starts serving; connections refused and flows that could not be opened are logged to
    /// `logger`.
    public static func start(on endpoint: Endpoint, opener: FlowOpener, settings: Settings = Settings(),
                             threads: Int? = nil, logger: Logger) throws -> ProxyServer {
        if endpoint.port != 0, let problem = HostNetwork.tcpBindProblem(endpoint) {
            switch problem {
            case .system(_, let errno) where errno == .addressInUse:
                throw ProxyError("\(endpoint) is in use by another program; stop it or listen on another address")
            case .permissionDenied:
                throw ProxyError("cannot listen on \(endpoint): ports below 1024 need root (CAP_NET_BIND_SERVICE); listen on a port from 1024 up")
            default:
                throw ProxyError("cannot listen on \(endpoint): \(problem)")
            }
        }
        let session = ProxySession(opener: opener, settings: settings, counts: ClientCounts(), logger: logger)
        let servers = settings.resolver.servers.map(\.description).joined(separator: ", ")
        logger.info("names are asked of \(servers)")
        if !settings.resolver.unusableServers.isEmpty {
            let unusable = settings.resolver.unusableServers.map(\.description).joined(separator: ", ")
            logger.warning("resolv.conf names IPv6 name servers (\(unusable)), which the proxy cannot ask; it asks \(servers) (give --dns-server IPV4 to choose)")
        }
        let loopCount = max(1, threads ?? ProcessInfo.processInfo.activeProcessorCount)
        var loops: [EngineLoop] = []
        var bound = endpoint
        do {
            for _ in 0..<loopCount {
                let loop = try EngineLoop(session: session, listener: try SharedPortListener(bound))
                // Port 0 picks a port once; the other loops' listeners join it.
                bound = loop.endpoint
                loops.append(loop)
            }
        } catch {
            throw ProxyError("cannot listen on \(endpoint): \(error)")
        }
        var placement: [Int]?
        if settings.pinsLoops {
            do {
                placement = Self.placement(loops: loops.count, cpus: try CPUAffinity.allowedCPUs())
                if placement == nil { logger.info("\(loops.count) proxy loops share more CPUs (a CPU quota): left to the scheduler") }
            } catch {
                logger.warning("\(error); the proxy loops are left to the scheduler")
            }
        }
        if placement != nil {
            // A thread inherits the CPUs of the thread that starts it: SwiftNIO's shared loops,
            // which a UDP association first asks for from a proxy loop, start here instead, free.
            _ = MultiThreadedEventLoopGroup.singleton
        }
        return ProxyServer(loops: loops, endpoint: bound, cpus: placement, logger: logger)
    }

    /// The CPU of each of `loops` loops: the i-th of `cpus` (the starting thread's), round the
    /// list again when there are more loops than CPUs. Nil when there are fewer: under a CPU
    /// quota the loops may run on any of the CPUs, and pinned they would all crowd the first.
    static func placement(loops: Int, cpus: [Int]) -> [Int]? {
        loops < cpus.count || cpus.isEmpty ? nil : (0..<loops).map { cpus[$0 % cpus.count] }
    }

    private init(loops: [EngineLoop], endpoint: Endpoint, cpus: [Int]?, logger: Logger) {
        self.loops = loops
        self.endpoint = endpoint
        finished = loops.map { _ in DispatchSemaphore(value: 0) }
        // Each loop names and places its own thread; the proxy has started once all have, so
        // a ready line printed after `start` is true of every loop.
        let placed = DispatchGroup()
        let unpinned = Mutex<(count: Int, first: String?)>((0, nil))
        for (index, loop) in loops.enumerated() {
            placed.enter()
            let thread = Thread { [finished] in
                CPUAffinity.nameCurrentThread("proxy-loop-\(index)")
                if let cpu = cpus?[index] {
                    do {
                        try CPUAffinity.pinCurrentThread(to: cpu)
                    } catch {
                        unpinned.withLock { $0 = ($0.count + 1, $0.first ?? "\(error)") }
                    }
                }
                placed.leave()
                loop.run()
                finished[index].signal()
            }
            thread.start()
        }
        placed.wait()
        let (failures, first) = unpinned.withLock { $0 }
        if let first {
            logger.warning("\(failures) of \(loops.count) proxy loops are left to the scheduler (\(first)); --no-pin-loops stops trying")
        }
    }

    /// Serves until graceful shutdown (or cancellation), then stops.
    public func run() async throws {
        try? await gracefulShutdown()
        await close()
    }

    /// Stops every loop: listeners and connections closed, threads ended.
    public func close() async {
        for loop in loops { loop.stop() }
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async { [finished] in
                for semaphore in finished { semaphore.wait() }
                done.resume()
            }
        }
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

    var idleMilliseconds: Int64 { settings.idleTimeout.nanoseconds / 1_000_000 }

    var connectMilliseconds: Int64 {
        let timeout = opener.connectTimeout.components
        return timeout.seconds * 1000 + timeout.attoseconds / 1_000_000_000_000_000
    }

    /// Logs what happened to one client's connection or flow (info: routine for a proxy).
    var log: @Sendable (String) -> Void {
        { [logger] message in logger.info("\(message)") }
    }

    /// A UDP flow being opened, with its books kept: counters for a flow that opens; the reason,
    /// counted, and a log line for one that does not. - Returns: the flow and its byte counters.
    func accounted(_ opening: EventLoopFuture<FlowOpener.Opened>, to host: String, port: UInt16, for client: IPAddress,
                   via proxyProtocol: String) -> EventLoopFuture<(opened: FlowOpener.Opened, counters: ProxyMetrics.FlowCounters)> {
        opening.map { opened in (opened, opener.metrics.flowOpened(from: .slice(opened.slice), via: proxyProtocol)) }
            .flatMapErrorThrowing { error in
                if let failure = error as? OpenFailure { opener.metrics.failed(failure, via: proxyProtocol) }
                logger.info("\(proxyProtocol): \(client) -> \(host):\(port): \(error)",
                            metadata: ["client": "\(client)", "destination": "\(host):\(port)", "protocol": "\(proxyProtocol)"])
                throw error
            }
    }

    /// Checks a client's credentials against `users` (bcrypt on the lookup pool, off the
    /// engine's loops), counts the verdict, and calls `then` with true for a user's right
    /// password (on the pool's thread, or at once when no bcrypt was needed).
    func verify(_ users: ProxyUsers, user: [UInt8], password: [UInt8], then: @escaping @Sendable (Bool) -> Void) {
        users.verify(user: user, password: password, on: opener.passwordChecks) { [opener, logger] verdict in
            guard let verdict else {
                logger.error("cannot check a password: the proxy is stopping")
                return then(false)
            }
            opener.metrics.passwordChecked(verdict)
            then(verdict.isAccepted)
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

