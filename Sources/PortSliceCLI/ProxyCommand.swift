import ArgumentParser
import Foundation
import NIOCore
import NIOPosix
import PortSliceCore
import PortSliceProxy
import PortSliceSockets
import UnixSignals

/// `portslice proxy`: the egress proxy, from slices given on the command line.
struct ProxyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "proxy",
        abstract: "Run the egress proxy: SOCKS5 and HTTP CONNECT on one port, each flow leaving from a slice whose address's traits mirror the client's.",
        discussion: """
            The client's traits come from the client geofeeds (longest prefix); the egress \
            address is the closest in traits among the slices' addresses (the same client keeps \
            its address), and the flow is opened from that address's slices through the data \
            plane's dialer; when they are out of ports for the destination, equally close \
            addresses are tried, then the client gets SOCKS reply 1 or HTTP 503.

            By default no destination inside the network is reached: loopback, private, \
            link-local, shared address space, multicast, reserved, and the egress addresses \
            themselves are refused (SOCKS reply 2, HTTP 403) unless --allow names them. \
            Beyond loopback it listens only with --users (SOCKS username/password, RFC 1929; \
            HTTP Proxy-Authorization: Basic). With --trust-proxy-protocol every connection must \
            start with a PROXY protocol v1 or v2 header, whose source is taken as the client: \
            for a load balancer or VPN concentrator in front. Stops on SIGTERM or SIGINT.

            Example:
              portslice proxy --slice 127.0.0.2:20000-20999 --pool pool.csv --clients clients.csv --allow 127.0.0.1/32
              curl --socks5-hostname 127.0.0.1:1080 http://127.0.0.1:8080/
            """
    )

    @Option(help: ArgumentHelp("Address and port to listen on; port 0 picks one.", valueName: "host:port"))
    var listen = "127.0.0.1:1080"

    @Option(name: .customLong("slice"), help: ArgumentHelp("A slice this host may send from, ADDRESS:LOW-HIGH; repeat for several.", valueName: "slice"))
    var slices: [String] = []

    @Option(help: ArgumentHelp("Pool geofeed: the traits of the slices' addresses.", valueName: "file"))
    var pool: String

    @Option(name: .customLong("clients"), help: ArgumentHelp("Client geofeed; repeat for several (later ones override).", valueName: "file"))
    var clientFeeds: [String] = []

    @Option(name: .customLong("allow"), help: ArgumentHelp("A destination prefix to allow although it is internal; repeat for several.", valueName: "prefix"))
    var allowed: [String] = []

    @Option(name: .customLong("deny"), help: ArgumentHelp("A destination prefix to refuse; repeat for several (checked before --allow).", valueName: "prefix"))
    var denied: [String] = []

    @Option(help: ArgumentHelp("Seconds to wait for a destination to accept.", valueName: "seconds"))
    var connectTimeout = 10.0

    @Option(help: ArgumentHelp("Seconds without traffic after which a connection is closed.", valueName: "seconds"))
    var idleTimeout = 300

    @Option(help: "Open connections one client address may hold.")
    var connectionsPerClient = 256

    @Option(help: ArgumentHelp("A file of NAME:PASSWORD lines; clients must authenticate as one of them.", valueName: "file"))
    var users: String?

    @Flag(help: "Read a PROXY protocol header (v1 or v2) first on every connection and take the client from it; only for a listener that the trusted balancer alone can reach.")
    var trustProxyProtocol = false

    func validate() throws {
        if slices.isEmpty { throw ValidationError("give at least one --slice ADDRESS:LOW-HIGH to send from") }
        guard connectTimeout > 0 && connectTimeout <= 120 else { throw ValidationError("--connect-timeout \(connectTimeout) is out of range; give 0 to 120 seconds") }
        guard (1...86_400).contains(idleTimeout) else { throw ValidationError("--idle-timeout \(idleTimeout) is out of range; give 1 to 86400 seconds") }
        guard (1...100_000).contains(connectionsPerClient) else { throw ValidationError("--connections-per-client \(connectionsPerClient) is out of range; give 1 to 100000") }
        _ = try listenAddress()
    }

    func listenAddress() throws -> Endpoint {
        let parts = listen.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2, let address = try? IPv4Address(parsing: parts[0]), let port = UInt16(parts[1]) else {
            throw ValidationError("--listen '\(listen)' is not IPV4:PORT, such as 127.0.0.1:1080 (port 0 picks one)")
        }
        let endpoint = Endpoint(address, port)
        guard endpoint.address.octets.0 == 127 || users != nil else {
            throw ValidationError("--listen \(listen) is beyond loopback, where an open proxy would serve anyone: give --users FILE, or listen on 127.0.0.1")
        }
        return endpoint
    }

    /// NAME:PASSWORD lines of the --users file.
    func userTable() throws -> [String: String] {
        guard let users else { return [:] }
        var table: [String: String] = [:]
        let text = String(decoding: try readFile(users, what: "users file"), as: UTF8.self)
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() where !line.trimmingCharacters(in: .whitespaces).isEmpty {
            guard let colon = line.firstIndex(of: ":"), colon != line.startIndex, line.utf8.count <= 511 else {
                throw CommandFailure("\(users) line \(number + 1): write NAME:PASSWORD (each at most 255 bytes)")
            }
            table[String(line[..<colon])] = String(line[line.index(after: colon)...])
        }
        guard !table.isEmpty else { throw CommandFailure("\(users) names no users; write NAME:PASSWORD lines") }
        return table
    }

    /// Reads the pool, client feeds and users, and builds what opens flows. Kept out of `run`,
    /// which only serves.
    func makeServerParts() throws -> (opener: FlowOpener, settings: ProxyServer.Settings) {
        let poolFeed = try Geofeed.read(readFile(pool, what: "pool file"), source: pool)
        let egressPool: EgressPool
        do { egressPool = try EgressPool(feed: poolFeed) } catch { throw CommandFailure("\(pool): \(error)") }
        let feeds = try clientFeeds.map { try Geofeed.read(readFile($0, what: "client geofeed"), source: $0) }
        let parsedSlices = try slices.map { text in
            do { return try EgressSlice(parsing: text) } catch { throw CommandFailure("--slice '\(text)': \(error)") }
        }
        let egressSlices: EgressSlices
        do { egressSlices = try EgressSlices(slices: parsedSlices, pool: egressPool) } catch { throw CommandFailure("\(error)") }
        let policy = DestinationPolicy(allow: try Self.prefixes(allowed, option: "allow"), deny: try Self.prefixes(denied, option: "deny"),
                                       egressAddresses: egressSlices.addresses)
        let opener = FlowOpener(slices: egressSlices, clientTraits: TraitIndex(feeds: feeds), policy: policy,
                                connectTimeout: .milliseconds(Int(connectTimeout * 1000)), threadPool: Self.dialingThreads)
        let settings = ProxyServer.Settings(connectionsPerClient: connectionsPerClient, idleTimeout: .seconds(Int64(idleTimeout)),
                                            trustProxyProtocol: trustProxyProtocol, users: try userTable())
        return (opener, settings)
    }

    /// Each dial holds one of these threads until its handshake completes, so their number
    /// bounds the connects in flight (128 at 50 ms each is 2,560 new flows per second).
    static let dialingThreads: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 128)
        pool.start()
        return pool
    }()

    static func prefixes(_ texts: [String], option: String) throws -> [IPv4Prefix] {
        try texts.map { text in
            do { return try IPv4Prefix(parsing: text.contains("/") ? text : text + "/32") } catch { throw CommandFailure("--\(option) '\(text)': \(error)") }
        }
    }

    func run() async throws {
        let endpoint = try listenAddress()
        let (opener, settings) = try makeServerParts()
        let server = try await ProxyServer.start(
            on: try SocketAddress(ipAddress: "\(endpoint.address)", port: Int(endpoint.port)), opener: opener, settings: settings,
            group: MultiThreadedEventLoopGroup.singleton, log: { printToStandardError("proxy: \($0)") })
        // Written unbuffered: scripts wait for this line before connecting.
        let port = server.localAddress?.port ?? Int(endpoint.port)
        let ready = "portslice proxy listening on \(endpoint.address):\(port) (SOCKS5 and HTTP); \(slices.count) slice(s) on \(opener.slices.addresses.count) address(es)\n"
        FileHandle.standardOutput.write(Data(ready.utf8))
        await Self.waitForStopSignal()
        try await server.close()
    }

    static func waitForStopSignal() async {
        for await _ in await UnixSignalsSequence(trapping: .sigterm, .sigint) { return }
    }
}
