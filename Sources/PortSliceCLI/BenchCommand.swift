import ArgumentParser
import Foundation
import Logging
import PortSliceBenchmarks

/// `portslice bench`: benchmarks that print a table with a peer measured in the same run.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Run benchmarks; each prints our numbers beside a peer's, measured in the same run.",
        subcommands: [BenchCoreCommand.self, BenchConnectCommand.self, BenchAllocCommand.self, BenchAllocPeerCommand.self, BenchProxyCommand.self]
    )
}

struct BenchCoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "core",
        abstract: "Prefix lookups, table memory, geofeed parsing and egress choice.",
        discussion: "Build with -c release for meaningful numbers: swift run -c release portslice bench core"
    )

    @Option(help: "Prefixes in the generated (seeded) geofeed.")
    var prefixes = 300_000

    @Option(help: "Egress addresses in the pool.")
    var pool = 1_000

    @Option(help: "Minimum seconds per timed loop.")
    var seconds = 1.0

    @Option(help: "Output format.")
    var format: OutputFormat = .table

    func validate() throws {
        guard prefixes >= 1_000 && prefixes <= 5_000_000 else { throw ValidationError("--prefixes must be 1000-5000000.") }
        guard pool >= 1 && pool <= 65_536 else { throw ValidationError("--pool must be 1-65536.") }
        guard seconds > 0 && seconds <= 60 else { throw ValidationError("--seconds must be above 0 and at most 60.") }
    }

    func run() throws {
        var benchmark = CoreBenchmark()
        benchmark.prefixCount = prefixes
        benchmark.poolSize = pool
        benchmark.minimumSeconds = seconds
        let rows = try benchmark.run { printToStandardError("bench: \($0)") }
        switch format {
        case .json:
            print(try jsonText(rows))
        case .table:
            print(renderTable(
                ["metric", "portslice", "peer", "peer measured", "target", "met"],
                rows.map { [$0.metric, $0.portslice, $0.peer, $0.peerName, $0.target, $0.meetsTarget.map { $0 ? "yes" : "NO" } ?? "-"] }))
        }
    }
}

struct BenchConnectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "connect",
        abstract: "Flows per second from a slice 0/50/90/99% full, beside the plain kernel connect.",
        discussion: """
            TCP: the kernel's connect with no slice (the limit), the kernel-range fast path and \
            the port-search fallback; UDP: plain connected-UDP creation and the lock-and-check \
            path. Each flow is closed with a reset so the fill level stays put. As root the run \
            uses a fresh network namespace (removed afterwards); otherwise 127.0.0.1 here.
            Build with -c release: swift run -c release portslice bench connect
            """
    )

    @Option(help: "Ports in the slice.")
    var slicePorts = 1_000

    @Option(help: "Seconds measured per method and fill level.")
    var seconds = 1.0

    @Option(help: "Output format.")
    var format: OutputFormat = .table

    func validate() throws {
        guard (100...10_000).contains(slicePorts) else { throw ValidationError("--slice-ports must be 100-10000.") }
        guard seconds > 0 && seconds <= 60 else { throw ValidationError("--seconds must be above 0 and at most 60.") }
    }

    func run() throws {
        var benchmark = ConnectBenchmark()
        benchmark.slicePorts = slicePorts
        benchmark.secondsPerCell = seconds
        let name = "portslice-bench-\(UInt32.random(in: 0...UInt32.max))"
        let place = try benchmark.prepare(namespaceName: name)
        defer { benchmark.tearDown(place, namespaceName: name) }
        printToStandardError("bench: \(place.summary)")
        let rows = try benchmark.run(in: place) { printToStandardError("bench: \($0)") }
        switch format {
        case .json:
            print(try jsonText(rows))
        case .table:
            print(renderTable(
                ["proto", "method", "fill", "flows/s", "x limit", "target", "met"],
                rows.map {
                    [$0.transport, $0.method, "\($0.fill)%", String(format: "%.0f", $0.operationsPerSecond),
                     String(format: "%.2f", $0.ratioToLimit), $0.target, $0.meetsTarget.map { $0 ? "yes" : "NO" } ?? "-"]
                }))
        }
    }
}

struct BenchAllocCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "alloc",
        abstract: "Acquire, renew and release requests on the allocator, on its store and through HTTP, beside a first-fit peer.",
        discussion: """
            Every host acquires its slices in one request, renews all of them in one request \
            (every host once, spread over a 10-second period, as agents do) and, through HTTP, \
            releases one. Two paths: straight against the store in this process, one request \
            after another; and through the HTTP API, with --clients concurrent clients, to \
            `portslice serve` processes (two replicas on one database for PostgreSQL). SQLite \
            runs in a temporary directory; with --postgres, scratch databases are created on \
            that server and dropped afterwards. The peer is first-fit allocation in plain SQL \
            on the same engine (UPDATE ... FOR UPDATE SKIP LOCKED ... RETURNING on PostgreSQL), \
            with the same log rows, token checks and renewal batching but no trait matching, \
            spreading or quarantine; through HTTP it serves the same routes from processes of \
            its own. Renewal CPU is read per process from /proc (servers, and the PostgreSQL \
            server's processes for the database).
            Build with -c release: swift run -c release portslice bench alloc --postgres postgres://postgres@127.0.0.1:55432/postgres
            """
    )

    @Option(help: "Hosts; each acquires once and renews once.")
    var hosts = 10_000

    @Option(help: "Egress addresses, 31 slices each.")
    var addresses = 1_000

    @Option(help: "Slices each host acquires in its request.")
    var slicesPerHost = 3

    @Option(help: "Concurrent clients of the HTTP acquires and releases.")
    var clients = 32

    @Option(help: "Also measure on this PostgreSQL server (postgres://USER@HOST:PORT/DATABASE); scratch databases are created beside DATABASE.")
    var postgres: String?

    @Flag(help: "Only the HTTP rows.")
    var httpOnly = false

    @Flag(help: "Only the store rows (no HTTP).")
    var storeOnly = false

    @Option(help: ArgumentHelp(
        "Write every HTTP acquire's and release's time to this directory, a CSV file per row and contender (sent_ms,time_ms).",
        valueName: "directory"))
    var requestTimes: String?

    @Option(help: "Output format.")
    var format: OutputFormat = .table

    func validate() throws {
        guard (1...100_000).contains(hosts) else { throw ValidationError("--hosts must be 1-100000.") }
        guard (1...65_536).contains(addresses) else { throw ValidationError("--addresses must be 1-65536.") }
        guard (1...64).contains(slicesPerHost) else { throw ValidationError("--slices-per-host must be 1-64.") }
        guard (1...256).contains(clients) else { throw ValidationError("--clients must be 1-256.") }
        guard !(httpOnly && storeOnly) else { throw ValidationError("--http-only and --store-only together leave nothing to run; give one.") }
        if let requestTimes {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: requestTimes, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw ValidationError("--request-times \(requestTimes) is not a directory; create it first.")
            }
            guard FileManager.default.isWritableFile(atPath: requestTimes) else {
                throw ValidationError("--request-times \(requestTimes) is not writable; give a directory this user may write to.")
            }
            guard !storeOnly else { throw ValidationError("--request-times records the HTTP rows, which --store-only leaves out.") }
        }
        guard hosts * slicesPerHost <= addresses * 31 else {
            throw ValidationError("--hosts x --slices-per-host (\(hosts * slicesPerHost)) is more than the pool's \(addresses * 31) slices; add --addresses.")
        }
    }

    func run() async throws {
        var benchmark = AllocBenchmark()
        benchmark.hosts = hosts
        benchmark.addresses = addresses
        benchmark.slicesPerHost = slicesPerHost
        benchmark.clients = clients
        benchmark.requestTimesDirectory = requestTimes
        benchmark.paths = httpOnly ? [.http] : storeOnly ? [.store] : [.store, .http]
        benchmark.executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("portslice-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        var engines: [AllocBenchmark.Engine] = [.sqlite(directory: directory.path)]
        if let postgres { engines.append(.postgres(url: postgres)) }
        var rows: [AllocBenchmark.Row] = []
        for engine in engines {
            rows += try await benchmark.run(on: engine) { printToStandardError("bench: \($0)") }
        }
        switch format {
        case .json:
            print(try jsonText(rows))
        case .table:
            print(Self.table(rows))
        }
    }

    static func table(_ rows: [AllocBenchmark.Row]) -> String {
        func cpu(_ share: Double?, idle: Double?) -> String {
            guard let share else { return "-" }
            return String(format: "%.1f%% of a core", share) + (idle.map { String(format: " (idle %.1f%%)", $0) } ?? "")
        }
        func milliseconds(_ value: Double) -> String { String(format: "%.2f", value) }
        return renderTable(
            ["engine", "path", "request", "load", "req/s", "p50 ms", "p99 ms", "CPU per period",
             "peer req/s", "peer p50 ms", "peer p99 ms", "peer CPU per period", "target", "met"],
            rows.map {
                [$0.engine, $0.path, $0.operation, $0.load, String(format: "%.0f", $0.operationsPerSecond),
                 milliseconds($0.p50Milliseconds), milliseconds($0.p99Milliseconds), cpu($0.corePercentPerPeriod, idle: $0.idleCorePercent),
                 String(format: "%.0f", $0.peerOperationsPerSecond), milliseconds($0.peerP50Milliseconds),
                 milliseconds($0.peerP99Milliseconds), cpu($0.peerCorePercentPerPeriod, idle: $0.peerIdleCorePercent),
                 $0.target, $0.meetsTarget.map { $0 ? "yes" : "NO" } ?? "-"]
            })
    }
}

/// `portslice bench alloc-peer`: the first-fit peer of `bench alloc` as an HTTP server, which
/// `bench alloc` starts itself; not for use on its own.
struct BenchAllocPeerCommand: AsyncParsableCommand, ServesOnEventLoops {
    static let configuration = CommandConfiguration(
        commandName: "alloc-peer",
        abstract: "The first-fit peer of `bench alloc`, served over HTTP (started by `bench alloc`).",
        shouldDisplay: false
    )

    @Option(help: ArgumentHelp("Address and port to listen on; port 0 picks one.", valueName: "host:port"))
    var listen = "127.0.0.1:0"

    @Option(help: ArgumentHelp("The peer's SQLite file (its tables made beforehand).", valueName: "file"))
    var sqlite: String?

    @Option(help: ArgumentHelp("The peer's PostgreSQL database (its tables made beforehand).", valueName: "url"))
    var postgres: String?

    @Option(help: "Connections to PostgreSQL.")
    var connections = FirstFitPeerServer.defaultPostgresConnections

    func validate() throws {
        guard (sqlite == nil) != (postgres == nil) else { throw ValidationError("give --sqlite or --postgres") }
        guard (1...64).contains(connections) else { throw ValidationError("--connections must be 1-64.") }
    }

    func run() async throws {
        guard let token = ProcessInfo.processInfo.environment["PORTSLICE_ADMIN_TOKEN"], token.count >= 32 else {
            throw CommandFailure("set PORTSLICE_ADMIN_TOKEN (at least 32 characters)")
        }
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]) else {
            throw CommandFailure("--listen '\(listen)' must be HOST:PORT")
        }
        let host = String(listen[..<colon])
        try await FirstFitPeerServer.run(
            database: sqlite.map { .sqlite(path: $0) } ?? .postgres(url: postgres!), host: host, port: port, adminToken: token,
            connections: connections, logger: Logger(label: "portslice.bench.peer")
        ) { bound in
            FileHandle.standardOutput.write(Data("portslice alloc peer listening on \(host):\(bound)\n".utf8))
        }
    }
}

struct BenchProxyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "proxy",
        abstract: "SOCKS5 connections/s, throughput and held connections through portslice's proxy, microsocks and Dante.",
        discussion: """
            One load generator, on loopback, against every proxy running side by side, the rows \
            of one client count measured in turns (six pieces each, so the shared machine's drift \
            falls on all alike): new connections (SOCKS5 \
            greeting, CONNECT to a listener, reply, reset) with 1 and 64 clients, beside the CPU \
            time each proxy's processes spent per connection (user and system, from /proc; the \
            user part in brackets) and the load generator's own CPU; bytes sent through the \
            proxy to a sink. For portslice also "portslice (names)": the same connections naming \
            the destination (SOCKS5 address type 3, 100 names in turn) instead of its address, \
            looked up by the proxy's resolver from a name server the benchmark runs on 127.0.0.1 \
            (TTL 300 s: each name is asked once per proxy loop, then answered from the cache); \
            its rate is compared with the rate by address. Then each proxy, started afresh, holds --held connections (idle \
            relays, as many as the open-file limit lets it hold at two descriptors each, and \
            slow clients that never finish the SOCKS greeting) while 300 new connections are \
            timed; its memory (RSS, and PSS in brackets, summed over its processes) before and \
            while holding gives the cost per held connection. Last, portslice from a \
            1,000-port slice: the connection rate towards one destination with the slice empty \
            and with 990 relays held towards it. microsocks and Dante come from Debian \
            (apt-get install microsocks dante-server; scripts/bench-proxy.sh installs them and \
            runs this); the idle destination runs in python3.
            Build with -c release: swift run -c release portslice bench proxy
            """
    )

    @Option(help: "Seconds each rate and throughput measurement runs.")
    var seconds = 3.0

    @Option(help: "Connections each proxy is asked to hold (0 skips the held-connection rows).")
    var held = 10_000

    @Option(help: "Output format.")
    var format: OutputFormat = .table

    @Option(name: .customLong("only"), help: ArgumentHelp("Measure only this proxy (portslice, microsocks or dante), to profile it; repeat for several.", valueName: "proxy"))
    var only: [String] = []

    @Flag(inversion: .prefixedNo, help: "Start portslice's proxy with its loops kept on their CPUs (its default); --no-pin-loops measures them left to the scheduler.")
    var pinLoops = true

    func validate() throws {
        guard seconds >= 0.5 && seconds <= 60 else { throw ValidationError("--seconds \(seconds) is out of range; give 0.5 to 60") }
        guard (0...100_000).contains(held) else { throw ValidationError("--held \(held) is out of range; give 0 to 100000") }
        for name in only where !ProxyBenchmark.contenderNames.contains(name) {
            throw ValidationError("--only \(name): give one of \(ProxyBenchmark.contenderNames.joined(separator: ", "))")
        }
    }

    func run() throws {
        var benchmark = ProxyBenchmark()
        benchmark.seconds = seconds
        benchmark.heldConnections = held
        benchmark.pinsLoops = pinLoops
        if !only.isEmpty { benchmark.contenders = only }
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let report = try benchmark.run(portslice: executable) { printToStandardError("bench: \($0)") }
        switch format {
        case .json:
            print(try jsonText(report))
        case .table:
            print(([Self.ratesTable(report.rates)] + (report.held.isEmpty ? [] : [Self.heldTable(report.held)])
                   + (report.fill.map { [Self.fillTable($0)] } ?? [])).joined(separator: "\n\n"))
        }
    }

    /// One row per proxy and client count, with the targets checked on portslice's rows: by
    /// address against the peers, by name against by address (the ratio always shown).
    static func ratesTable(_ rows: [ProxyBenchmark.Row]) -> String {
        renderTable(["proxy", "clients", "connections/s", "proxy CPU/conn (user)", "loadgen CPU of a core (user)", "throughput", "target", "met"], rows.map { row in
            var target = "-", met = "-"
            if row.proxy == "portslice" {
                let peers = rows.filter { $0.proxy != "portslice" && $0.proxy != ProxyBenchmark.namesRowProxy && $0.clients == row.clients }
                target = "conn/s >= microsocks, CPU/conn <= microsocks, throughput >= best peer"
                // Without the peers in this run (--only) there is nothing to compare with.
                if let microsocks = peers.first(where: { $0.proxy == "microsocks" }), let best = peers.compactMap(\.bytesPerSecond).max(),
                   let throughput = row.bytesPerSecond {
                    met = verdict([
                        ("conn/s", row.connectionsPerSecond / microsocks.connectionsPerSecond, row.connectionsPerSecond >= microsocks.connectionsPerSecond),
                        ("CPU/conn", row.proxyMicrosecondsPerConnection / microsocks.proxyMicrosecondsPerConnection,
                         row.proxyMicrosecondsPerConnection <= microsocks.proxyMicrosecondsPerConnection),
                        ("throughput", throughput / best, throughput >= best),
                    ])
                }
            } else if row.proxy == ProxyBenchmark.namesRowProxy {
                target = "conn/s >= 0.90x portslice's by address"
                if let literal = rows.first(where: { $0.proxy == "portslice" && $0.clients == row.clients }), literal.connectionsPerSecond > 0 {
                    let ratio = row.connectionsPerSecond / literal.connectionsPerSecond
                    met = ratio >= 0.9 ? String(format: "yes (%.2fx)", ratio) : verdict([("conn/s", ratio, false)])
                }
            }
            return [row.proxy, "\(row.clients)", String(format: "%.0f", row.connectionsPerSecond),
                    String(format: "%.0f us (%.0f)", row.proxyMicrosecondsPerConnection, row.proxyUserMicrosecondsPerConnection),
                    String(format: "%.0f%% (%.0f), ", row.loadGeneratorCorePercent, row.loadGeneratorUserCorePercent)
                        + (row.loadGeneratorThreads == 1 ? "1 thread" : "\(row.loadGeneratorThreads) threads"),
                    row.bytesPerSecond.map { String(format: "%.2f Gbit/s", $0 * 8 / 1e9) } ?? "-", target, met]
        })
    }

    /// One row per proxy: what it held, at what memory, and how new connections fared meanwhile.
    static func heldTable(_ rows: [ProxyBenchmark.HeldRow]) -> String {
        let microsocks = rows.first { $0.proxy == "microsocks" }
        return renderTable(["proxy", "held", "relays + slow clients held (opened)", "RSS fresh -> holding", "RSS (PSS) per held conn",
                            "new conn p50 / p99 (count)", "problems", "target", "met"], rows.map { row in
            var target = "-", met = "-"
            if row.proxy == "portslice" {
                target = "all held, new conn p99 <= 10 ms, RSS per held conn < microsocks"
                var checks = [("held", Double(row.stillOpen) / Double(max(row.plan.total, 1)), row.stillOpen == row.plan.total),
                              ("p99", row.newConnectionP99Milliseconds / 10, row.newConnections > 0 && row.newConnectionP99Milliseconds <= 10)]
                if let ours = row.residentBytesPerHeldConnection, let theirs = microsocks?.residentBytesPerHeldConnection {
                    checks.append(("RSS/conn", ours / theirs, ours < theirs))
                }
                met = verdict(checks)
            }
            let perHeld = row.residentBytesPerHeldConnection.map { resident in
                String(format: "%.1f KiB (%.1f)", resident / 1024, (row.proportionalBytesPerHeldConnection ?? 0) / 1024)
            } ?? "-"
            return [row.proxy, "\(row.stillOpen) of \(row.plan.total)",
                    "\(row.relaysStillOpen) + \(row.slowClientsStillOpen) (\(row.relaysOpened) + \(row.slowClientsOpened))",
                    String(format: "%.1f -> %.1f MiB", Double(row.residentKilobytesFresh) / 1024, Double(row.residentKilobytesHeld) / 1024), perHeld,
                    String(format: "%.2f / %.2f ms (%d)", row.newConnectionP50Milliseconds, row.newConnectionP99Milliseconds, row.newConnections),
                    row.problems.isEmpty ? "-" : row.problems.joined(separator: "; "), target, met]
        })
    }

    static func fillTable(_ row: ProxyBenchmark.FillRow) -> String {
        renderTable(["proxy", "slice", "conn/s towards D, slice empty", "conn/s towards D, \(row.relaysHeld) relays held (\(row.relaysHeld * 100 / max(row.slicePorts, 1))%)", "ratio", "target", "met"], [[
            "portslice", "\(row.slice) (\(row.slicePorts) ports)", String(format: "%.0f", row.emptyConnectionsPerSecond),
            String(format: "%.0f", row.fullConnectionsPerSecond), String(format: "%.2f", row.ratio), "ratio >= 0.90",
            row.ratio >= 0.9 ? "yes" : "NO",
        ]])
    }

    /// "yes", or "NO" followed by each check missed and its ratio to what it is measured against.
    static func verdict(_ checks: [(name: String, ratio: Double, met: Bool)]) -> String {
        let missed = checks.filter { !$0.met }
        return missed.isEmpty ? "yes" : "NO (" + missed.map { "\($0.name) " + String(format: "%.2fx", $0.ratio) }.joined(separator: ", ") + ")"
    }
}
