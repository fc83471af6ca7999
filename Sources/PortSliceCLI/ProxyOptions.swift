import ArgumentParser
import Foundation
import Logging
import NIOCore
import NIOPosix
import PortSliceCore
import PortSliceProxy
import PortSliceSockets
import ServiceLifecycle

/// The proxy's settings, shared by `portslice proxy` (fixed slices) and `portslice agent`
/// (slices leased from the allocator).
struct ProxyOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Address and port to listen on; port 0 picks one.", valueName: "host:port"))
    var listen = "127.0.0.1:1080"

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

    /// Reads the client feeds and users, and builds what opens flows from `slices`, looking
    /// names up on `lookups` and waiting for handshakes on `handshakes`. `allowLoopback` opens
    /// loopback destinations (the local demo only).
    func makeServerParts(slices: EgressSlices, allowLoopback: Bool = false, lookups: NIOThreadPool,
                         handshakes: HandshakeWaiter) throws -> (opener: FlowOpener, settings: ProxyServer.Settings) {
        let feeds = try clientFeeds.map { try Geofeed.read(readFile($0, what: "client geofeed"), source: $0) }
        let policy = DestinationPolicy(allowLoopback: allowLoopback, allow: try Self.prefixes(allowed, option: "allow"),
                                       deny: try Self.prefixes(denied, option: "deny"))
        let opener = FlowOpener(slices: slices, clientTraits: TraitIndex(feeds: feeds), policy: policy,
                                connectTimeout: .milliseconds(Int(connectTimeout * 1000)), threadPool: lookups, handshakes: handshakes)
        let settings = ProxyServer.Settings(connectionsPerClient: connectionsPerClient, idleTimeout: .seconds(Int64(idleTimeout)),
                                            trustProxyProtocol: trustProxyProtocol, users: try userTable())
        return (opener, settings)
    }

    /// Starts serving flows from `slices` and says so on standard output (unbuffered: scripts
    /// wait for this line before connecting).
    func start(sendingFrom slices: EgressSlices, allowLoopback: Bool = false, lookups: NIOThreadPool, handshakes: HandshakeWaiter,
               logger: Logger) async throws -> ProxyServer {
        let endpoint = try listenAddress()
        let (opener, settings) = try makeServerParts(slices: slices, allowLoopback: allowLoopback, lookups: lookups, handshakes: handshakes)
        let server = try await ProxyServer.start(
            on: try SocketAddress(ipAddress: "\(endpoint.address)", port: Int(endpoint.port)), opener: opener, settings: settings,
            group: MultiThreadedEventLoopGroup.singleton, logger: logger)
        let port = server.localAddress?.port ?? Int(endpoint.port)
        let held = slices.slices
        let ready = "portslice proxy listening on \(endpoint.address):\(port) (SOCKS5 and HTTP); \(held.count) slice(s) on \(slices.addresses.count) address(es)\n"
        FileHandle.standardOutput.write(Data(ready.utf8))
        return server
    }

    /// Threads for name lookups: a lookup holds one until the system resolver answers.
    static let lookupThreadCount = 128

    static func prefixes(_ texts: [String], option: String) throws -> [IPv4Prefix] {
        try texts.map { text in
            do { return try IPv4Prefix(parsing: text.contains("/") ? text : text + "/32") } catch { throw CommandFailure("--\(option) '\(text)': \(error)") }
        }
    }
}

/// The egress proxy as a service (`portslice proxy`, and beside the agent): while it runs it
/// owns the threads a proxy needs, the name-lookup pool and the handshake waiter; it serves
/// from `slices` until graceful shutdown, then closes its listeners and stops those threads.
struct ProxyService: Service, CustomStringConvertible {
    let options: ProxyOptions
    let slices: EgressSlices
    var allowLoopback = false
    let logger: Logger

    var description: String { "proxy on \(options.listen)" }

    func run() async throws {
        let handshakes: HandshakeWaiter
        do { handshakes = try HandshakeWaiter() } catch { throw CommandFailure("cannot watch TCP handshakes (epoll): \(error)") }
        // Handshakes still waited for when it stops are called back at once, as failed.
        defer { handshakes.stop() }
        let lookups = NIOThreadPool(numberOfThreads: ProxyOptions.lookupThreadCount)
        lookups.start()
        do {
            let server = try await options.start(sendingFrom: slices, allowLoopback: allowLoopback, lookups: lookups, handshakes: handshakes,
                                                 logger: logger)
            try await server.run()
        } catch {
            try? await lookups.shutdownGracefully()
            throw error
        }
        try await lookups.shutdownGracefully()
        logger.info("the proxy stopped; its listeners are closed")
    }
}
