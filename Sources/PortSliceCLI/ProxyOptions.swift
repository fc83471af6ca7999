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

    @Option(name: .customLong("allow-port"),
            help: ArgumentHelp("Open a destination port or range LOW-HIGH that is refused by default (only 25, SMTP, is); repeat for several. --deny-port wins over it.", valueName: "ports"))
    var allowedPorts: [String] = []

    @Option(name: .customLong("deny-port"),
            help: ArgumentHelp("Refuse a destination port or range LOW-HIGH; repeat for several. Checked first: no --allow-port opens it.", valueName: "ports"))
    var deniedPorts: [String] = []

    @Option(help: ArgumentHelp("Seconds to wait for a destination to accept.", valueName: "seconds"))
    var connectTimeout = 10.0

    @Option(help: ArgumentHelp("Seconds without traffic after which a connection is closed.", valueName: "seconds"))
    var idleTimeout = 300

    @Option(help: "Open connections one client address may hold.")
    var connectionsPerClient = 256

    @Option(help: ArgumentHelp("A file of NAME:BCRYPT-HASH lines, made with `portslice users add NAME --file FILE`; clients must authenticate as one of them.", valueName: "file"))
    var users: String?

    @Flag(help: "Read a PROXY protocol header (v1 or v2) first on every connection and take the client from it; needs --proxy-protocol-from.")
    var trustProxyProtocol = false

    @Option(name: .customLong("proxy-protocol-from"),
            help: ArgumentHelp("A balancer's address or prefix whose PROXY headers are believed; repeat for several. Connections from any other peer are closed unread.", valueName: "prefix"))
    var proxyProtocolFrom: [String] = []

    @Flag(inversion: .prefixedNo,
          help: "Keep each connection loop (one per CPU this process may use) on its own CPU; --no-pin-loops leaves them to the scheduler, for a proxy sharing its CPUs with busier work.")
    var pinLoops = true

    @Option(help: ArgumentHelp("Where the status page and /metrics are served (loopback only: they have no login); port 0 picks one.", valueName: "host:port"))
    var adminListen = "127.0.0.1:1081"

    @Option(name: .customLong("dns-server"),
            help: ArgumentHelp("A name server to ask, IPV4 or IPV4:PORT, instead of resolv.conf's; repeat for several (asked in order).", valueName: "address"))
    var dnsServers: [String] = []

    @Option(help: ArgumentHelp("Name servers (IPv4), search list, ndots, timeout and attempts, as glibc reads them.", valueName: "file"))
    var resolvConf = "/etc/resolv.conf"

    @Option(help: ArgumentHelp("Static names, consulted before DNS.", valueName: "file"))
    var hostsFile = "/etc/hosts"

    @Option(help: ArgumentHelp("Send the egress address's /24 as EDNS Client Subnet (RFC 7871) so geo-DNS answers for where flows leave: on or off.", valueName: "on|off"))
    var ecs = "on"

    @Option(help: "Name lookups one client may have waiting for a name server at once; more are refused.")
    var lookupsPerClient = 32

    @Option(help: ArgumentHelp("The secret that picks each client's IPv6 address inside a prefix (32 bytes; made on first start, readable by its owner only). Keep it to keep clients' addresses across restarts.", valueName: "file"))
    var addressKey = "./portslice-data/address-key"

    func validate() throws {
        guard connectTimeout > 0 && connectTimeout <= 120 else { throw ValidationError("--connect-timeout \(connectTimeout) is out of range; give 0 to 120 seconds") }
        guard (1...86_400).contains(idleTimeout) else { throw ValidationError("--idle-timeout \(idleTimeout) is out of range; give 1 to 86400 seconds") }
        guard (1...100_000).contains(connectionsPerClient) else { throw ValidationError("--connections-per-client \(connectionsPerClient) is out of range; give 1 to 100000") }
        _ = try listenAddress()
        _ = try adminAddress()
        if trustProxyProtocol && proxyProtocolFrom.isEmpty {
            throw ValidationError("--trust-proxy-protocol needs --proxy-protocol-from PREFIX naming the balancers: anyone else could name any client in a PROXY header")
        }
        if !trustProxyProtocol && !proxyProtocolFrom.isEmpty {
            throw ValidationError("--proxy-protocol-from is for --trust-proxy-protocol; give both, or neither")
        }
        _ = try Self.prefixes(proxyProtocolFrom, option: "proxy-protocol-from")
        _ = try portPolicy()
        guard ["on", "off"].contains(ecs) else { throw ValidationError("--ecs '\(ecs)' must be on or off") }
        guard (1...10_000).contains(lookupsPerClient) else { throw ValidationError("--lookups-per-client \(lookupsPerClient) is out of range; give 1 to 10000") }
        _ = try nameServers()
    }

    /// The --dns-server endpoints (port 53 unless given); empty when none is given.
    func nameServers() throws -> [Endpoint] {
        try dnsServers.map { text in
            if let address = try? IPv4Address(parsing: text) { return Endpoint(address, 53) }
            return try Self.endpoint(text, option: "dns-server", example: "192.0.2.53:53")
        }
    }

    /// How the proxy resolves names: --dns-server or resolv.conf's IPv4 servers, its search
    /// rules, the hosts file.
    func resolverSettings() throws -> ResolverSettings {
        // A missing system file means none, as for glibc; a file named on the command line must be there.
        for (path, option, standard) in [(resolvConf, "--resolv-conf", "/etc/resolv.conf"), (hostsFile, "--hosts-file", "/etc/hosts")]
        where path != standard && !FileManager.default.isReadableFile(atPath: path) {
            throw CommandFailure("\(option) \(path) cannot be read; check the path")
        }
        var settings = ResolverSettings.system(resolvConf: resolvConf, hostsFile: hostsFile)
        let servers = try nameServers()
        if !servers.isEmpty { (settings.servers, settings.unusableServers) = (servers, []) }
        settings.sendsClientSubnet = ecs == "on"
        settings.lookupsPerClient = lookupsPerClient
        return settings
    }

    /// The destination ports policy of --allow-port and --deny-port (25 refused by default).
    func portPolicy() throws -> PortPolicy {
        do { return try PortPolicy(allowing: allowedPorts, denying: deniedPorts) } catch { throw ValidationError("\(error)") }
    }

    /// IPV4:PORT given to `--option`; port 0 stands for one the system picks.
    static func endpoint(_ text: String, option: String, example: String) throws -> Endpoint {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        guard parts.count == 2, let address = try? IPv4Address(parsing: parts[0]), let port = UInt16(parts[1]) else {
            throw ValidationError("--\(option) '\(text)' is not IPV4:PORT, such as \(example) (port 0 picks one)")
        }
        return Endpoint(address, port)
    }

    /// Where the admin pages listen: loopback only, since they answer without a login.
    func adminAddress() throws -> Endpoint {
        let endpoint = try Self.endpoint(adminListen, option: "admin-listen", example: "127.0.0.1:1081")
        guard endpoint.address.octets.0 == 127 else {
            throw ValidationError("--admin-listen \(adminListen) is beyond loopback; the status page and metrics have no login, so they stay on 127.0.0.0/8 (reach them through SSH or a reverse proxy that authenticates)")
        }
        return endpoint
    }

    func listenAddress() throws -> Endpoint {
        let endpoint = try Self.endpoint(listen, option: "listen", example: "127.0.0.1:1080")
        guard endpoint.address.octets.0 == 127 || users != nil else {
            throw ValidationError("--listen \(listen) is beyond loopback, where an open proxy would serve anyone: give --users FILE, or listen on 127.0.0.1")
        }
        return endpoint
    }

    /// The users of the --users file (NAME:HASH lines, written by `portslice users add`); nil
    /// without --users.
    func userTable() throws -> ProxyUsers? {
        guard let users else { return nil }
        let text = String(decoding: try readFile(users, what: "users file"), as: UTF8.self)
        do { return try ProxyUsers(parsing: text, file: users) } catch { throw CommandFailure("\(error)") }
    }

    /// Reads the client feeds and users, and builds what opens flows from `slices`, checking
    /// passwords on `passwordChecks`. `allowLoopback` opens loopback destinations (the local
    /// demo only). `prefixesMayCome` reads (or makes) the address key even while `prefixes` is
    /// empty, for an agent that may lease prefixes later.
    func makeServerParts(slices: EgressSlices, prefixes: EgressPrefixes = EgressPrefixes(), prefixesMayCome: Bool = false, allowLoopback: Bool = false,
                         passwordChecks: NIOThreadPool) throws -> (opener: FlowOpener, settings: ProxyServer.Settings) {
        let feeds = try clientFeeds.map { try Geofeed.read(readFile($0, what: "client geofeed"), source: $0) }
        let policy = DestinationPolicy(allowLoopback: allowLoopback, allow: try Self.anyPrefixes(allowed, option: "allow"),
                                       deny: try Self.anyPrefixes(denied, option: "deny"), ports: try portPolicy())
        var clientAddresses: ClientAddresses?
        if prefixesMayCome || !prefixes.isEmpty {
            do { clientAddresses = ClientAddresses(key: try ClientAddresses.key(at: addressKey)) } catch { throw CommandFailure("--address-key: \(error)") }
        }
        let opener = FlowOpener(slices: slices, prefixes: prefixes, clientAddresses: clientAddresses, clientTraits: TraitIndex(feeds: feeds),
                                policy: policy, connectTimeout: .milliseconds(Int(connectTimeout * 1000)), passwordChecks: passwordChecks)
        let settings = ProxyServer.Settings(connectionsPerClient: connectionsPerClient, idleTimeout: .seconds(Int64(idleTimeout)),
                                            trustProxyProtocol: trustProxyProtocol,
                                            proxyProtocolPeers: try Self.prefixes(proxyProtocolFrom, option: "proxy-protocol-from"), users: try userTable(),
                                            resolver: try resolverSettings(), pinsLoops: pinLoops)
        return (opener, settings)
    }

    /// Starts serving flows with `opener` on --listen.
    func listen(opener: FlowOpener, settings: ProxyServer.Settings, logger: Logger) throws -> ProxyServer {
        try ProxyServer.start(on: try listenAddress(), opener: opener, settings: settings, logger: logger)
    }

    /// The admin pages of `opener`'s proxy on --admin-listen; `onListening` gets the bound port.
    func adminPages(of opener: FlowOpener, logger: Logger, onListening: @escaping @Sendable (Int) -> Void) throws -> some Service {
        let endpoint = try adminAddress()
        if endpoint.port != 0, let problem = HostNetwork.tcpBindProblem(endpoint) {
            throw CommandFailure("cannot serve the admin pages on \(adminListen) (\(problem)); give --admin-listen 127.0.0.1:PORT with a free port")
        }
        return ProxyAdminPages(opener: opener).application(host: "\(endpoint.address)", port: Int(endpoint.port), logger: logger, onListening: onListening)
    }

    /// Threads for password checks (bcrypt is CPU work: one per core).
    static let passwordCheckThreads = ProcessInfo.processInfo.activeProcessorCount

    /// Prefixes of either family given to `--option`; an address alone is its /32 or /128.
    static func anyPrefixes(_ texts: [String], option: String) throws -> [IPPrefix] {
        try texts.map { text in
            let whole = text.contains("/") ? text : text + (text.contains(":") ? "/128" : "/32")
            do { return try IPPrefix(parsing: whole) } catch { throw CommandFailure("--\(option) '\(text)': \(error)") }
        }
    }

    static func prefixes(_ texts: [String], option: String) throws -> [IPv4Prefix] {
        try texts.map { text in
            do { return try IPv4Prefix(parsing: text.contains("/") ? text : text + "/32") } catch { throw CommandFailure("--\(option) '\(text)': \(error)") }
        }
    }
}

/// The egress proxy as a service (`portslice proxy`, and beside the agent): while it runs it
/// owns the threads a proxy needs (its loops, and the pool that checks passwords); it serves
/// from `slices` and `prefixes` until graceful shutdown, then closes its listeners and stops
/// those threads.
struct ProxyService: Service, CustomStringConvertible {
    let options: ProxyOptions
    let slices: EgressSlices
    var prefixes = EgressPrefixes()
    /// Set beside an agent, whose prefixes come and go with its leases.
    var prefixesMayCome = false
    var allowLoopback = false
    let logger: Logger

    var description: String { "proxy on \(options.listen)" }

    func run() async throws {
        let passwordChecks = NIOThreadPool(numberOfThreads: ProxyOptions.passwordCheckThreads)
        passwordChecks.start()
        do {
            let (opener, settings) = try options.makeServerParts(slices: slices, prefixes: prefixes, prefixesMayCome: prefixesMayCome, allowLoopback: allowLoopback,
                                                                 passwordChecks: passwordChecks)
            let (adminPort, portFound) = AsyncStream.makeStream(of: Int.self)
            let admin = try options.adminPages(of: opener, logger: logger) { port in
                portFound.yield(port)
                portFound.finish()
            }
            let server = try options.listen(opener: opener, settings: settings, logger: logger)
            try await withThrowingDiscardingTaskGroup { group in
                group.addTask { try await server.run() }
                group.addTask {
                    // A listener that fails ends the wait for its port too.
                    defer { portFound.finish() }
                    try await admin.run()
                }
                for await port in adminPort {
                    let proxyPort = server.endpoint.port
                    let endpoint = try options.listenAddress(), adminEndpoint = try options.adminAddress()
                    // Unbuffered: scripts and tests wait for this line before connecting.
                    let ipv6 = prefixes.isEmpty ? "" : ", \(prefixes.all.count) IPv6 prefix(es)"
                    let ready = "portslice proxy listening on \(endpoint.address):\(proxyPort) (SOCKS5 and HTTP); \(slices.slices.count) slice(s) on "
                        + "\(slices.addresses.count) address(es)\(ipv6); status and metrics on http://\(adminEndpoint.address):\(port)/\n"
                    FileHandle.standardOutput.write(Data(ready.utf8))
                }
            }
        } catch {
            try? await passwordChecks.shutdownGracefully()
            throw error
        }
        try await passwordChecks.shutdownGracefully()
        logger.info("the proxy stopped; its listeners are closed")
    }
}
