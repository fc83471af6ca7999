import ArgumentParser
import Foundation
import Hummingbird
import Metrics
import PortSliceAgent
import PortSliceControl
import PortSliceCore
import PortSliceStore
import PortSliceSockets
import Prometheus
import ServiceLifecycle

/// `portslice serve`: the allocator and its HTTP API.
struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Run the slice allocator and its HTTP API; with no arguments, the whole system on this machine.",
        discussion: """
            With no arguments (or with --demo), a local demo that needs no root: the allocator, \
            one agent in the same process and the egress proxy on 127.0.0.1:1080 (SOCKS5 and \
            HTTP), with an example pool of loopback egress addresses (127.0.0.2-127.0.0.5, \
            written with an example client geofeed to the data directory) and a status page at \
            http://127.0.0.1:1080/. Only in this demo may flows go to loopback destinations. \
            Try: curl --socks5-hostname 127.0.0.1:1080 http://127.0.0.1:8000/ against any local \
            server, then `portslice status`.

            Given any setting, only the allocator runs: leases in SQLite under ./portslice-data, \
            the API on 127.0.0.1:7300 unless told otherwise. \
            Each setting can come from the command line, an environment variable (named beside \
            it) or a TOML file given with --config (keys data_dir, listen, database, pool, \
            slice_size, quarantine_seconds), in that order of precedence. The admin token comes \
            from PORTSLICE_ADMIN_TOKEN, or from DATA-DIR/admin-token, which is created with a \
            random token on first start. Stops gracefully on SIGTERM or SIGINT.

            Example:
              PORTSLICE_ADMIN_TOKEN=... portslice serve --pool pool.csv
              curl -H "Authorization: Bearer $PORTSLICE_ADMIN_TOKEN" -d '{"name":"h1"}' http://127.0.0.1:7300/v1/hosts
            """
    )

    @Option(help: ArgumentHelp("Directory for the SQLite database and the admin token (PORTSLICE_DATA_DIR).", valueName: "dir"))
    var dataDir: String?

    @Option(help: ArgumentHelp("Address and port to listen on (PORTSLICE_LISTEN); port 0 picks one.", valueName: "host:port"))
    var listen: String?

    @Option(help: ArgumentHelp("PostgreSQL URL, for several replicas sharing one database (PORTSLICE_DATABASE).", valueName: "url"))
    var database: String?

    @Option(help: ArgumentHelp("Pool geofeed to add at start; addresses already present are kept (PORTSLICE_POOL).", valueName: "file"))
    var pool: String?

    @Option(help: ArgumentHelp("Ports per slice for addresses added from --pool, 2048 by default (PORTSLICE_SLICE_SIZE).", valueName: "ports"))
    var sliceSize: Int?

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

    func validate() throws {
        guard let proxyListen else { return }
        guard runsDemo else { throw ValidationError("--proxy-listen is for the demo only (serve with no allocator settings, or --demo)") }
        guard let endpoint = try? Endpoint(parsing: proxyListen), endpoint.address.octets.0 == 127 else {
            throw ValidationError("--proxy-listen '\(proxyListen)' must be a loopback IPV4:PORT, such as 127.0.0.1:1080 (the demo proxy allows loopback destinations)")
        }
    }

    /// True when nothing configures the allocator, so `serve` runs the local demo.
    var runsDemo: Bool {
        let environment = ProcessInfo.processInfo.environment
        let configured = dataDir != nil || listen != nil || database != nil || pool != nil || sliceSize != nil || quarantine != nil || config != nil
            || ["PORTSLICE_CONFIG", "PORTSLICE_DATA_DIR", "PORTSLICE_LISTEN", "PORTSLICE_DATABASE", "PORTSLICE_POOL", "PORTSLICE_SLICE_SIZE",
                "PORTSLICE_QUARANTINE_SECONDS", "PORTSLICE_ADMIN_TOKEN"].contains { environment[$0] != nil }
        return demo || !configured
    }

    static let configKeys = ["data_dir", "listen", "database", "pool", "slice_size", "quarantine_seconds"]

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
        let quarantine = try quarantine ?? number(environment["PORTSLICE_QUARANTINE_SECONDS"], "PORTSLICE_QUARANTINE_SECONDS").map(Int64.init)
            ?? file?.integer("quarantine_seconds").map(Int64.init) ?? 240
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]), (0...65535).contains(port) else {
            throw CommandFailure("listen address '\(listen)' must be HOST:PORT, such as 127.0.0.1:7300")
        }
        let host = String(listen[..<colon])

        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        let adminToken = try environment["PORTSLICE_ADMIN_TOKEN"] ?? Self.adminToken(in: dataDir)
        let store = if let database {
            try await SQLSliceStore.openPostgres(url: database, quarantine: .seconds(quarantine))
        } else {
            try await SQLSliceStore.openSQLite(path: "\(dataDir)/portslice.sqlite", quarantine: .seconds(quarantine))
        }
        if let pool { try await Self.importPool(pool, sliceSize: sliceSize, into: store) }

        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        let api = ControlAPI(store: store, adminTokenHash: HostToken.hash(of: adminToken), registry: registry)
        let demo = runsDemo ? try await demoService(store: store, dataDir: dataDir, sliceSize: sliceSize) : nil
        let app = Application(
            router: api.router(),
            configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: "portslice"),
            services: [ExpiryReaper(store: store)],
            onServerRunning: { channel in
                let bound = channel.localAddress?.port ?? 0
                // Written straight to the descriptor, so scripts and tests see it at once.
                FileHandle.standardOutput.write(Data("portslice allocator listening on \(host):\(bound)\n".utf8))
                demo?.allocatorStarted(on: bound)
            })
        do {
            // A group of its own so that the demo's agent stops (and releases its leases)
            // while the allocator still answers: services stop in reverse order.
            try await ServiceGroup(configuration: .init(services: [app] + (demo.map { [$0] } ?? []), gracefulShutdownSignals: [.sigterm, .sigint],
                                                        logger: app.logger)).run()
        } catch {
            try? await store.close()
            throw error
        }
        try await store.close()
    }

    /// The demo's pool and client geofeed in the data directory, the pool in the store, and
    /// the demo host registered (its token kept beside the admin token).
    private func demoService(store: SQLSliceStore, dataDir: String, sliceSize: Int) async throws -> DemoService {
        let poolPath = "\(dataDir)/example-pool.csv", clientsPath = "\(dataDir)/example-clients.csv"
        for (path, text) in [(poolPath, DemoService.examplePool), (clientsPath, DemoService.exampleClients)] where !FileManager.default.fileExists(atPath: path) {
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        }
        // One slice of each trait class the pool file has (which the user may have edited).
        let pool = try await Self.importPool(poolPath, sliceSize: sliceSize, into: store)
        let wants = Set(pool.addresses.map(\.traits)).sorted { $0.summary < $1.summary }.map { LeaseWant(count: 1, traits: $0) }
        let tokenPath = "\(dataDir)/demo-host-token"
        let hostToken: String
        if let saved = FileManager.default.contents(atPath: tokenPath) {
            hostToken = String(decoding: saved, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        } else {
            do {
                hostToken = try await store.addHost(DemoService.hostName, labels: ["role": "demo"], now: .current)
            } catch AllocationError.duplicateHost {
                throw CommandFailure("host '\(DemoService.hostName)' exists in \(dataDir) but its token file \(tokenPath) is gone; remove \(dataDir) to start the demo afresh")
            }
            guard FileManager.default.createFile(atPath: tokenPath, contents: Data((hostToken + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
                throw CommandFailure("cannot write the demo host's token to \(tokenPath); check the directory's permissions")
            }
        }
        var proxy = try ProxyOptions.parse(["--listen", proxyListen ?? "127.0.0.1:1080"])
        proxy.clientFeeds = [clientsPath]
        return DemoService(hostToken: hostToken, wants: wants, proxy: proxy)
    }

    /// The admin token kept in the data directory, created (readable by its owner only) the
    /// first time.
    private static func adminToken(in dataDir: String) throws -> String {
        let path = "\(dataDir)/admin-token"
        if let existing = FileManager.default.contents(atPath: path) {
            return String(decoding: existing, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
        var random = SystemRandomNumberGenerator()
        let token = (0..<4).map { _ in String(random.next() as UInt64, radix: 16) }.joined()
        guard FileManager.default.createFile(atPath: path, contents: Data((token + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
            throw CommandFailure("cannot write the admin token to \(path); check the directory's permissions")
        }
        print("portslice: new admin token written to \(path)")
        return token
    }

    /// Adds the pool file's addresses that the store does not have yet. - Returns: the pool
    /// as the file gives it.
    @discardableResult
    private static func importPool(_ path: String, sliceSize: Int, into store: SQLSliceStore) async throws -> EgressPool {
        let feed = try Geofeed.read(readFile(path, what: "pool file"), source: path)
        let egress: EgressPool
        do { egress = try EgressPool(feed: feed) } catch { throw CommandFailure("\(path): \(error)") }
        let plan = try SlicePlan(layout: .portsPerSlice(sliceSize))
        var added = 0
        for address in egress.addresses {
            do {
                try await store.add(address, plan: plan)
                added += 1
            } catch AllocationError.duplicateAddress {
                continue
            }
        }
        print("portslice: pool \(path): \(added) address(es) added, \(egress.addresses.count - added) already present")
        return egress
    }
}
