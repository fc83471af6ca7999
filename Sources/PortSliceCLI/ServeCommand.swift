import ArgumentParser
import Foundation
import Hummingbird
import HummingbirdTLS
import Logging
import Metrics
import NIOSSL
import PortSliceAgent
import PortSliceControl
import PortSliceCore
import PortSliceStore
import PortSliceSockets
import Prometheus
import ServiceLifecycle

/// `portslice serve`: the allocator and its HTTP API.
struct ServeCommand: AsyncParsableCommand, ServesOnEventLoops {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the slice allocator and its HTTP API; with no arguments, the whole system on this machine.",
        discussion: """
            With no arguments (or with --demo), a local demo that needs no root: the allocator, \
            one agent in the same process and the egress proxy on 127.0.0.1:1080 (SOCKS5 and \
            HTTP), with an example pool of loopback egress addresses (127.0.0.2-127.0.0.5, \
            written with an example client geofeed to the data directory) and the proxy's status \
            page and metrics at http://127.0.0.1:1081/. Only in this demo may flows go to loopback destinations. \
            Try: curl --socks5-hostname 127.0.0.1:1080 http://127.0.0.1:8000/ against any local \
            server, then `portslice status`.

            Given any setting, only the allocator runs: leases in SQLite under ./portslice-data, \
            the API on 127.0.0.1:7300 unless told otherwise. \
            Each setting can come from the command line, an environment variable (named beside \
            it) or a TOML file given with --config (keys data_dir, listen, database, pool, \
            slice_size, prefix_length, quarantine_seconds, tls_cert, tls_key), in that order of precedence. The \
            admin token (at least 32 characters) comes from PORTSLICE_ADMIN_TOKEN, or from \
            DATA-DIR/admin-token, which is created with a random token on first start. With \
            --tls-cert and --tls-key the API speaks HTTPS only; serve it so whenever it listens \
            beyond loopback. With --database, the allocator survives the database restarting or \
            failing over (list the standby in the URL: postgres://u@primary,standby/db): requests \
            get 503 while it is away and /readyz says not ready. Stops gracefully on SIGTERM or \
            SIGINT.

            Example:
              PORTSLICE_ADMIN_TOKEN=$(openssl rand -hex 32) portslice serve --pool pool.csv
              curl -H "Authorization: Bearer $PORTSLICE_ADMIN_TOKEN" -d '{"name":"h1"}' http://127.0.0.1:7300/v1/hosts
              portslice serve --listen 0.0.0.0:7300 --tls-cert cert.pem --tls-key key.pem \\
                --database 'postgres://portslice@db1,db2/portslice?sslmode=verify-full&sslrootcert=db-ca.pem'
            """
    )

    @Option(help: ArgumentHelp("Directory for the SQLite database and the admin token (PORTSLICE_DATA_DIR).", valueName: "dir"))
    var dataDir: String?

    @Option(help: ArgumentHelp("Address and port to listen on (PORTSLICE_LISTEN); port 0 picks one.", valueName: "host:port"))
    var listen: String?

    @Option(help: ArgumentHelp(
        "PostgreSQL URL, for several replicas sharing one database: postgres://USER[:PASSWORD]@HOST[:PORT][,HOST2...]/DB[?sslmode=disable|prefer|require|verify-ca|verify-full&sslrootcert=FILE] (PORTSLICE_DATABASE).",
        valueName: "url"))
    var database: String?

    @Option(help: ArgumentHelp("PEM certificate chain: serve HTTPS (with --tls-key) (PORTSLICE_TLS_CERT).", valueName: "file"))
    var tlsCert: String?

    @Option(help: ArgumentHelp("PEM private key of --tls-cert (PORTSLICE_TLS_KEY).", valueName: "file"))
    var tlsKey: String?

    @OptionGroup var logging: LoggingOptions

    @Option(help: ArgumentHelp("Pool geofeed to add at start; addresses already present are kept (PORTSLICE_POOL).", valueName: "file"))
    var pool: String?

    @Option(help: ArgumentHelp("Ports per slice for addresses added from --pool, 2048 by default (PORTSLICE_SLICE_SIZE).", valueName: "ports"))
    var sliceSize: Int?

    @Option(help: ArgumentHelp(
        "Length of the IPv6 prefixes leased out of the pool's IPv6 prefixes (from --pool, and added without leaseLength), longer than each pool prefix and at most 64, 64 by default (PORTSLICE_PREFIX_LENGTH).",
        valueName: "bits"))
    var prefixLength: Int?

    @Option(help: ArgumentHelp(
        "Seconds a released or expired slice waits before anyone else may have it, at least 120, 240 by default (PORTSLICE_QUARANTINE_SECONDS).",
        valueName: "seconds"))
    var quarantine: Int64?

    @Option(help: ArgumentHelp("A TOML file with settings (PORTSLICE_CONFIG).", valueName: "file"))
    var config: String?

    @Flag(help: "Run the whole system on this machine, as `serve` with no arguments does: the allocator, an agent and the proxy with the example pool.")
    var demo = false

    @Option(help: ArgumentHelp("Where the demo's proxy listens, on loopback, 127.0.0.1:1080 by default; port 0 picks one.", valueName: "host:port"))
    var proxyListen: String?

    @Option(help: ArgumentHelp("Where the demo proxy's status page and metrics are served, 127.0.0.1:1081 by default; port 0 picks one.", valueName: "host:port"))
    var proxyAdminListen: String?

    func validate() throws {
        if proxyAdminListen != nil && !runsDemo { throw ValidationError("--proxy-admin-listen is for the demo only (serve with no allocator settings, or --demo)") }
        guard let proxyListen else { return }
        guard runsDemo else { throw ValidationError("--proxy-listen is for the demo only (serve with no allocator settings, or --demo)") }
        guard let endpoint = try? Endpoint(parsing: proxyListen), endpoint.address.octets.0 == 127 else {
            throw ValidationError("--proxy-listen '\(proxyListen)' must be a loopback IPV4:PORT, such as 127.0.0.1:1080 (the demo proxy allows loopback destinations)")
        }
    }

    /// True when nothing configures the allocator, so `serve` runs the local demo.
    var runsDemo: Bool {
        let environment = ProcessInfo.processInfo.environment
        let configured = dataDir != nil || listen != nil || database != nil || pool != nil || sliceSize != nil || prefixLength != nil || quarantine != nil || config != nil
            || tlsCert != nil || tlsKey != nil
            || ["PORTSLICE_CONFIG", "PORTSLICE_DATA_DIR", "PORTSLICE_LISTEN", "PORTSLICE_DATABASE", "PORTSLICE_POOL", "PORTSLICE_SLICE_SIZE",
                "PORTSLICE_PREFIX_LENGTH", "PORTSLICE_QUARANTINE_SECONDS", "PORTSLICE_ADMIN_TOKEN", "PORTSLICE_TLS_CERT", "PORTSLICE_TLS_KEY"].contains { environment[$0] != nil }
        return demo || !configured
    }

    static let configKeys = ["data_dir", "listen", "database", "pool", "slice_size", "prefix_length", "quarantine_seconds", "tls_cert", "tls_key"]

    /// The shortest admin token accepted: 128 bits of hex, so guessing it is out of reach.
    static let minimumAdminTokenLength = 32

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let file = try (config ?? environment["PORTSLICE_CONFIG"]).map { path in
            try ConfigFile(text: String(decoding: readFile(path, what: "config file"), as: UTF8.self), source: path, allowed: Self.configKeys)
        }
        func number(_ text: String?, _ name: String) throws -> Int? {
            guard let text else { return nil }
            guard let value = Int(text) else { throw CommandFailure("\(name) '\(text)' must be a whole number") }
            return value
        }
        let dataDir = try dataDir ?? environment["PORTSLICE_DATA_DIR"] ?? file?.string("data_dir") ?? "./portslice-data"
        let listen = try listen ?? environment["PORTSLICE_LISTEN"] ?? file?.string("listen") ?? "127.0.0.1:7300"
        let database = try database ?? environment["PORTSLICE_DATABASE"] ?? file?.string("database")
        let pool = try pool ?? environment["PORTSLICE_POOL"] ?? file?.string("pool")
        let sliceSize = try sliceSize ?? number(environment["PORTSLICE_SLICE_SIZE"], "PORTSLICE_SLICE_SIZE")
            ?? file?.integer("slice_size") ?? 2048
        let prefixLength = try prefixLength ?? number(environment["PORTSLICE_PREFIX_LENGTH"], "PORTSLICE_PREFIX_LENGTH")
            ?? file?.integer("prefix_length") ?? PoolPrefix.defaultLeaseLength
        if let refusal = PoolPrefix.refusal(ofLeaseLength: prefixLength, as: "prefix length") { throw CommandFailure(refusal) }
        let quarantine = try quarantine ?? number(environment["PORTSLICE_QUARANTINE_SECONDS"], "PORTSLICE_QUARANTINE_SECONDS").map(Int64.init)
            ?? file?.integer("quarantine_seconds").map(Int64.init) ?? 240
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (0...65535).contains(port) else {
            throw CommandFailure("listen address '\(listen)' must be HOST:PORT, such as 127.0.0.1:7300")
        }
        let host = String(listen[..<colon])
        let tlsCert = try tlsCert ?? environment["PORTSLICE_TLS_CERT"] ?? file?.string("tls_cert")
        let tlsKey = try tlsKey ?? environment["PORTSLICE_TLS_KEY"] ?? file?.string("tls_key")
        let tls = try Self.serverTLS(certificate: tlsCert, key: tlsKey)
        let logger = try logging.bootstrap("portslice.serve")
        if tls == nil && !["127.0.0.1", "localhost", "::1"].contains(host) && !host.hasPrefix("127.") {
            logger.warning("the API listens on \(host) in plain HTTP: tokens would cross the network unencrypted; serve with --tls-cert and --tls-key")
        }

        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        let adminToken = try environment["PORTSLICE_ADMIN_TOKEN"] ?? Self.adminToken(in: dataDir)
        guard adminToken.count >= Self.minimumAdminTokenLength else {
            throw CommandFailure("""
                the admin token is \(adminToken.count) characters; it must have at least \(Self.minimumAdminTokenLength). \
                Make one with `openssl rand -hex 32` and set PORTSLICE_ADMIN_TOKEN (or write it to \(dataDir)/admin-token)
                """)
        }
        let store = if let database {
            try await SQLSliceStore.openPostgres(url: database, quarantine: .seconds(quarantine), logger: logger)
        } else {
            try await SQLSliceStore.openSQLite(path: "\(dataDir)/portslice.sqlite", quarantine: .seconds(quarantine), logger: logger)
        }
        if let pool { try await Self.importPool(pool, sliceSize: sliceSize, prefixLength: prefixLength, into: store) }

        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        var configured = ControlAPI(store: store, adminTokenHash: HostToken.hash(of: adminToken), registry: registry, logger: logger)
        configured.defaultPrefixLength = prefixLength
        let api = configured
        let demo = runsDemo ? try await demoService(store: store, dataDir: dataDir, sliceSize: sliceSize, prefixLength: prefixLength) : nil
        let served = tls == nil ? "" : " (HTTPS)"
        let serverName = "portslice"
        let http1 = DirectRoute.http1(api.directRoutes(serverName: serverName))
        let app = Application(
            router: api.router(),
            server: try tls.map { try .tls(http1, tlsConfiguration: $0) } ?? http1,
            configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: serverName),
            onServerRunning: { channel in
                let bound = channel.localAddress?.port ?? 0
                // Written straight to the descriptor, so scripts and tests see it at once.
                FileHandle.standardOutput.write(Data("portslice allocator listening on \(host):\(bound)\(served)\n".utf8))
                demo?.allocatorStarted(on: bound)
            },
            logger: logger)
        do {
            // The store first (on PostgreSQL it hears other replicas), the API last, so the API
            // stops first. The demo's agent stops (and releases its leases) while the allocator
            // still answers: services stop in reverse order. Every service has 4 s to stop, so
            // a database that is away cannot hold a shutdown.
            let services: [any Service] = [store, ExpiryReaper(store: store, logger: logger), app] + (demo.map { [$0] } ?? [])
            try await runDaemon(services, logger: logger, stopWithin: .seconds(4))
        } catch {
            try? await store.close()
            throw error
        }
        try await store.close()
    }

    /// The server's TLS settings from a certificate chain and its key (PEM), or nil for plain
    /// HTTP when neither is given.
    static func serverTLS(certificate: String?, key: String?) throws -> TLSConfiguration? {
        switch (certificate, key) {
        case (nil, nil): return nil
        case (nil, _): throw CommandFailure("--tls-key is given without --tls-cert; give both to serve HTTPS")
        case (_, nil): throw CommandFailure("--tls-cert is given without --tls-key; give both to serve HTTPS")
        case (let certificate?, let key?):
            let chain: [NIOSSLCertificate]
            do { chain = try NIOSSLCertificate.fromPEMFile(certificate) } catch {
                throw CommandFailure("--tls-cert \(certificate) is not a readable PEM certificate chain: \(error)")
            }
            guard !chain.isEmpty else { throw CommandFailure("--tls-cert \(certificate) holds no certificate") }
            let privateKey: NIOSSLPrivateKey
            do { privateKey = try NIOSSLPrivateKey(file: key, format: .pem) } catch {
                throw CommandFailure("--tls-key \(key) is not a readable PEM private key: \(error)")
            }
            return TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(privateKey))
        }
    }

    /// The demo's pool and client geofeed in the data directory, the pool in the store, and
    /// the demo host registered (its token kept beside the admin token).
    private func demoService(store: SQLSliceStore, dataDir: String, sliceSize: Int, prefixLength: Int) async throws -> DemoService {
        let poolPath = "\(dataDir)/example-pool.csv", clientsPath = "\(dataDir)/example-clients.csv"
        for (path, text) in [(poolPath, DemoService.examplePool), (clientsPath, DemoService.exampleClients)] where !FileManager.default.fileExists(atPath: path) {
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        }
        // One slice of each trait class the pool file has (which the user may have edited).
        let pool = try await Self.importPool(poolPath, sliceSize: sliceSize, prefixLength: prefixLength, into: store)
        let wants = Set(pool.addresses.map(\.traits)).sorted { $0.summary < $1.summary }.map { LeaseWant(count: 1, traits: $0) }
        let hostToken = try await Self.savedToken(at: "\(dataDir)/demo-host-token", of: .host(DemoService.hostName), dataDir: dataDir) {
            try await store.addHost(DemoService.hostName, labels: ["role": "demo"], now: .current)
        }
        let viewerToken = try await Self.savedToken(at: "\(dataDir)/console-viewer-token", of: .viewer(DemoService.viewerName), dataDir: dataDir) {
            try await store.addViewer(DemoService.viewerName, now: .current)
        }
        // The demo's proxy shares its process and CPUs with the allocator: its loops are left to
        // the scheduler rather than kept where the allocator's threads need to run too.
        var proxy = try ProxyOptions.parse(["--listen", proxyListen ?? "127.0.0.1:1080", "--admin-listen", proxyAdminListen ?? "127.0.0.1:1081",
                                            "--no-pin-loops"])
        proxy.clientFeeds = [clientsPath]
        return DemoService(hostToken: hostToken, viewerToken: viewerToken, wants: wants, proxy: proxy)
    }

    /// A demo principal's token, kept in the data directory (readable by its owner only):
    /// read when there, else made by `register` and written.
    private static func savedToken(
        at path: String, of principal: Principal, dataDir: String, register: () async throws -> String
    ) async throws -> String {
        if let saved = FileManager.default.contents(atPath: path) {
            return String(decoding: saved, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let token: String
        do {
            token = try await register()
        } catch AllocationError.duplicateHost, AllocationError.duplicateViewer {
            throw CommandFailure("\(principal) exists in \(dataDir) but its token file \(path) is gone; remove \(dataDir) to start the demo afresh")
        }
        guard FileManager.default.createFile(atPath: path, contents: Data((token + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
            throw CommandFailure("cannot write the token of \(principal) to \(path); check the directory's permissions")
        }
        return token
    }

    /// The admin token kept in the data directory, created (readable by its owner only) the
    /// first time.
    private static func adminToken(in dataDir: String) throws -> String {
        let path = "\(dataDir)/admin-token"
        if let existing = FileManager.default.contents(atPath: path) {
            return String(decoding: existing, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let token = HostToken.randomSecret()
        guard FileManager.default.createFile(atPath: path, contents: Data((token + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
            throw CommandFailure("cannot write the admin token to \(path); check the directory's permissions")
        }
        print("portslice: new admin token written to \(path)")
        return token
    }

    /// Adds the pool file's addresses and IPv6 prefixes that the store does not have yet; the
    /// IPv6 lines become pool prefixes leased out in prefixes of `prefixLength`.
    /// - Returns: the pool file's IPv4 addresses.
    @discardableResult
    private static func importPool(_ path: String, sliceSize: Int, prefixLength: Int, into store: SQLSliceStore) async throws -> EgressPool {
        let feed = try Geofeed.read(readFile(path, what: "pool file"), source: path)
        let egress: EgressPool, prefixes: [PoolPrefix]
        do {
            let split = try feed.splitPool(leaseLength: prefixLength)
            egress = try EgressPool(feed: split.addresses)
            prefixes = split.prefixes
        } catch {
            throw CommandFailure("\(path): \(error)")
        }
        let plan = try SlicePlan(layout: .portsPerSlice(sliceSize))
        var added = 0, addedPrefixes = 0
        for address in egress.addresses {
            do {
                try await store.add(address, plan: plan)
                added += 1
            } catch AllocationError.duplicateAddress {
                continue
            }
        }
        for prefix in prefixes {
            do {
                try await store.add(prefix)
                addedPrefixes += 1
            } catch AllocationError.duplicatePrefix {
                continue
            }
        }
        print("portslice: pool \(path): \(added) address(es) added, \(egress.addresses.count - added) already present; "
            + "\(addedPrefixes) IPv6 prefix(es) added, \(prefixes.count - addedPrefixes) already present")
        return egress
    }
}
