import PortSliceCore
import PortSliceSockets

/// One client connection of an engine loop and, once dialed, its flow: the state machine
/// (PROXY header, SOCKS5 or HTTP head, password check, lookup, dial, relay) and the bytes held
/// for it. Objects are kept by their loop and used again for later connections, so the steady
/// path allocates nothing for them.
final class EngineConnection {
    enum Phase {
        /// Reading the PROXY protocol header that names the true client.
        case proxyHeader
        /// The first byte tells SOCKS5 (5) from HTTP.
        case sniffing
        case socksGreeting
        case socksCredentials
        case socksRequest
        case httpHead
        /// Waiting for bcrypt (on the thread pool) to check a password.
        case checkingPassword
        /// Waiting for the loop's resolver.
        case resolving
        /// The upstream handshake is under way.
        case connecting
        case relaying
        /// Answered with an error: the answer goes out, the end of the stream after it, and what
        /// the client still sends is read and dropped until it closes or `deadline`. Closing
        /// with its bytes unread would send a reset, which can destroy the answer before the
        /// client reads it.
        case draining
    }

    /// How the client spoke, which decides how it is answered.
    enum Style {
        case socks
        /// CONNECT: answered `200 Connection established` once the flow opens.
        case httpTunnel
        /// An absolute-URI request: its rewritten head goes to the origin, which answers.
        case httpForward(head: [UInt8])

        var metricsName: String {
            switch self {
            case .socks: "socks"
            case .httpTunnel, .httpForward: "http"
            }
        }
    }

    /// Bytes one side could not take yet, sent first when it can.
    struct Backlog {
        var bytes: [UInt8] = []
        var sent = 0

        var isEmpty: Bool { sent == bytes.count }
        var count: Int { bytes.count - sent }

        mutating func append(_ more: UnsafeRawBufferPointer) {
            if isEmpty { clear() }
            bytes.append(contentsOf: more)
        }

        mutating func clear() {
            bytes.removeAll(keepingCapacity: false)
            sent = 0
        }
    }

    /// The flow once its handshake ended: what it counts and what stops it (a slice taken
    /// away; a prefix flow has no such end).
    struct Flow {
        let source: FlowSource
        let local: IPEndpoint
        let remote: IPEndpoint
        let counters: ProxyMetrics.FlowCounters
        let revocation: SliceRevocation?
        let hold: PortHold?
    }

    /// Where it sits in its loop's table; with `generation`, what a registration's token names.
    let slot: Int
    /// Bumped at every close, so that late events and completions for the connection that had
    /// the slot before are recognised and dropped.
    var generation: UInt32 = 0

    var client: CInt = -1
    var upstream: CInt = -1
    var peer = Endpoint(IPv4Address(bits: 0), 0)
    /// The client whose traits and limit apply: the TCP peer, or the one a PROXY header names.
    var clientAddress: IPAddress = .v4(IPv4Address(bits: 0))
    /// Counted in the per-client limit (left on close).
    var admitted = false
    var phase = Phase.sniffing
    var style = Style.socks

    /// Handshake bytes that did not make a whole message yet.
    var unparsed: [UInt8] = []
    /// What the client sent before the relay, counted against `PreRelayLimit`.
    var receivedBeforeRelay = 0
    var toClient = Backlog()
    var toUpstream = Backlog()

    // Edge-triggered readiness as last reported, cleared when the kernel says `wouldBlock`.
    var clientReadable = false
    var clientWritable = false
    var upstreamReadable = false
    var upstreamWritable = false
    /// The poller reported the peer's end of stream (or an error): reading goes on to it even
    /// after a short read.
    var clientHungUp = false
    var upstreamHungUp = false
    /// The poller reported an error or hang-up upstream: a dial that ended so failed.
    var upstreamFailed = false
    /// The client (or the destination) sent the end of its stream.
    var clientEnded = false
    var upstreamEnded = false
    /// The end of the stream was passed on to the destination (or the client).
    var upstreamShutDown = false
    var clientShutDown = false

    /// Milliseconds on the loop's clock of the last byte either way.
    var lastActivity: Int64 = 0
    /// When the upstream handshake (connecting) or the drain (draining) gives up.
    var deadline: Int64 = 0
    /// The request is known (SOCKS request or HTTP head): bytes that arrive now are the flow's.
    var requestParsed = false
    /// The destination as the client named it (a name, or else the address), for logs.
    var requestedHost = ""
    var requestedAddress = IPAddress.v4(IPv4Address(bits: 0))
    var requestedPort: UInt16 = 0
    /// Where the dial goes, once the destination is known and allowed.
    var dialedTo = IPEndpoint(.v4(IPv4Address(bits: 0)), 0)

    var dial: FlowOpener.PendingDial?
    var flow: Flow?

    // Happy Eyeballs (RFC 8305): a name with addresses of both families is dialed over IPv6
    // first; `fallback` (IPv4) is started beside it when its moment in the loop's
    // `fallbacksDue` comes unless IPv6 connected, or at once if IPv6 failed. The first to
    // connect is kept.
    var fallback: IPEndpoint?
    /// The IPv4 attempt racing the first one, and its readiness as reported.
    var racer: FlowOpener.PendingDial?
    var racerWritable = false
    var racerFailed = false

    init(slot: Int) { self.slot = slot }

    /// Back to the state of a new connection (descriptors already closed by the loop).
    func reset() {
        // 31 bits: a token with the top bit set is the resolver's.
        generation = (generation &+ 1) & 0x7fff_ffff
        client = -1
        upstream = -1
        admitted = false
        phase = .sniffing
        style = .socks
        unparsed.removeAll(keepingCapacity: false)
        receivedBeforeRelay = 0
        toClient.clear()
        toUpstream.clear()
        clientReadable = false
        clientWritable = false
        upstreamReadable = false
        upstreamWritable = false
        clientHungUp = false
        upstreamHungUp = false
        upstreamFailed = false
        clientEnded = false
        upstreamEnded = false
        upstreamShutDown = false
        clientShutDown = false
        requestParsed = false
        requestedHost = ""
        requestedPort = 0
        dial = nil
        flow = nil
        fallback = nil
        racer = nil
        racerWritable = false
        racerFailed = false
    }
}

/// Everything a client sends before its relay starts (PROXY header, handshake, request head,
/// and bytes sent ahead of the destination's answer) is held by the proxy meanwhile: at most
/// this much, far above any honest handshake. Past it the client gets its protocol's error.
enum PreRelayLimit {
    static let bytes = 64 * 1024
}
