import Foundation
import PortSliceCore
import PortSliceSockets

/// `portslice bench proxy`: one load generator against portslice's SOCKS5 proxy, microsocks
/// and Dante on loopback, in one run: new connections per second (SOCKS handshake, CONNECT,
/// reply, reset) and bytes per second sent through the proxy to a sink, each with 1 and with
/// 64 concurrent clients, and for portslice the same connections naming the destination by
/// a name its resolver looks up (from a name server of the benchmark's own); then per proxy,
/// freshly started, thousands of held connections (idle relays and slow clients) with what
/// they cost in memory and how new connections fare beside them; and for portslice, the
/// connection rate towards a destination its slice is 99% full towards.
public struct ProxyBenchmark: Sendable {
    public var seconds = 3.0
    public var concurrencies = [1, 64]
    /// The proxies measured, by name, in this order.
    public var contenders = contenderNames
    /// Connections each held-connection row asks to keep open (0: no such rows); `HoldPlan`
    /// splits them into relays and slow clients.
    public var heldConnections = 10_000
    /// Whether portslice keeps each loop on its CPU (`proxy --pin-loops`, its default); off,
    /// the rows of the loops left to the scheduler.
    public var pinsLoops = true

    public static let contenderNames = ["portslice", "microsocks", "dante"]
    /// The rows of portslice's connections that name their destination instead of giving its address.
    public static let namesRowProxy = "portslice (names)"

    public init() {}

    public struct Report: Sendable, Encodable {
        public var rates: [Row] = []
        public var held: [HeldRow] = []
        /// portslice's connection rate with its slice empty and 99% full towards one
        /// destination; nil when portslice was not measured.
        public var fill: FillRow?
    }

    public struct Row: Sendable, Encodable {
        public let proxy: String
        public let clients: Int
        public let connectionsPerSecond: Double
        /// CPU time (user and system) the proxy's processes spent per connection while the
        /// connection rate was measured: what each new connection costs the proxy itself,
        /// apart from the load generator sharing the machine.
        public let proxyMicrosecondsPerConnection: Double
        /// The part of it spent in the proxy's own code and libraries (user time); the rest is
        /// the kernel's, mostly TCP on loopback.
        public let proxyUserMicrosecondsPerConnection: Double
        /// This process's CPU time (user and system) while the connection rate was measured,
        /// as a percentage of one core: the load threads with the kernel's work for their ends
        /// of loopback TCP, and the closing listener's accept thread. Near 100% per load
        /// thread, the load generator would be what limits the rate.
        public let loadGeneratorCorePercent: Double
        /// The part of it spent in user space.
        public let loadGeneratorUserCorePercent: Double
        /// The threads the load generator drove its clients from.
        public let loadGeneratorThreads: Int
        /// nil for the by-name rows: once a flow is open, it relays as any other.
        public var bytesPerSecond: Double?
    }

    public struct HeldRow: Sendable, Encodable {
        public let proxy: String
        public let plan: HoldPlan
        /// Relays whose CONNECT the proxy answered, and slow clients whose TCP connection it
        /// took, before the first failure of each kind (if any).
        public let relaysOpened: Int
        public let slowClientsOpened: Int
        /// Of those, still open when the memory was read (a proxy may close slow clients).
        public let relaysStillOpen: Int
        public let slowClientsStillOpen: Int
        public var stillOpen: Int { relaysStillOpen + slowClientsStillOpen }
        /// The proxy's memory, summed over its processes, freshly started and while holding.
        public let residentKilobytesFresh: Int
        public let residentKilobytesHeld: Int
        public let proportionalKilobytesFresh: Int
        public let proportionalKilobytesHeld: Int
        /// (held - fresh) / still open; nil with nothing held.
        public let residentBytesPerHeldConnection: Double?
        public let proportionalBytesPerHeldConnection: Double?
        /// New connections (SOCKS5 CONNECT to a closing listener, one after another) made
        /// while the others were held, and their times from connect to reply.
        public let newConnections: Int
        public let newConnectionP50Milliseconds: Double
        public let newConnectionP99Milliseconds: Double
        /// What went wrong opening relays, slow clients or new connections, and how many of
        /// the connections opened the proxy had closed by the end.
        public let problems: [String]
    }

    public struct FillRow: Sendable, Encodable {
        public let slice: String
        public let slicePorts: Int
        /// Relays held towards the destination during the second measurement.
        public let relaysHeld: Int
        public let emptyConnectionsPerSecond: Double
        public let fullConnectionsPerSecond: Double
        /// Full over empty: 1 when the fill costs nothing.
        public let ratio: Double

        init(slice: String, slicePorts: Int, relaysHeld: Int, emptyConnectionsPerSecond: Double, fullConnectionsPerSecond: Double) {
            self.slice = slice
            self.slicePorts = slicePorts
            self.relaysHeld = relaysHeld
            self.emptyConnectionsPerSecond = emptyConnectionsPerSecond
            self.fullConnectionsPerSecond = fullConnectionsPerSecond
            ratio = emptyConnectionsPerSecond > 0 ? fullConnectionsPerSecond / emptyConnectionsPerSecond : 0
        }
    }

    /// How many held connections are idle relays and how many slow clients (connected, the
    /// SOCKS greeting never finished). A relay costs the proxy two descriptors, a slow client
    /// one, and the open-file limit (20,000 per process here; only CAP_SYS_RESOURCE raises it)
    /// binds the proxy: so as many relays as fit, the rest slow clients, and at least one in
    /// twenty slow, so both kinds are held. This process holds one descriptor per connection;
    /// the relays' far ends are another process's (`IdleDestination`).
    public struct HoldPlan: Sendable, Equatable, Encodable {
        public let relays: Int
        public let slowClients: Int
        public var total: Int { relays + slowClients }

        /// Descriptors left for everything else a process has open: listeners, event loops,
        /// logs, the new connections measured while holding.
        static let reserve = 500

        init(held wanted: Int, openFileLimit: Int) {
            let held = max(0, min(wanted, openFileLimit - Self.reserve))
            let relaysThatFit = max(0, openFileLimit - Self.reserve - held)
            slowClients = max(held - relaysThatFit, held / 20)
            relays = held - slowClients
        }
    }

    /// A proxy under test: how to start it on `port` (asking `nameServer` for names, if it
    /// can be told one).
    struct Contender {
        let name: String
        let start: (_ port: UInt16, _ nameServer: Endpoint?, _ directory: String) throws -> GuardedProcess
    }

    static let portsliceSlice = "127.0.0.2:10000-60999"
    /// The fill row's slice: small, so that 990 relays fill it to 99%.
    static let fillSlice = "127.0.0.3:20000-20999"
    static let fillSlicePorts = 1_000
    static let fillRelays = 990
    /// New connections timed while the held connections are open.
    static let newConnectionsWhileHolding = 300
    /// Where the held connections come from: an address of their own, and ports below the
    /// kernel's ephemeral range. From 127.0.0.1, every later connect to the proxy (the timed
    /// ones) would have the kernel search its ephemeral range past the held ports, 0.6 ms at
    /// 5,000 held (measured), counted against the proxy; and 10,000 of the host's ephemeral
    /// ports would be needed at once, which the TIME_WAITs of a run just before (on the
    /// proxy's side, from slices that overlap the range) can leave too few of.
    static let heldConnectionSlice = "127.0.0.4:10000-29999"
    /// The zone the benchmark's name server answers for, and the names the by-name rows
    /// CONNECT to, in turn: a fixed set, each looked up once per proxy loop and then answered
    /// from that loop's cache for its TTL (300 s), as a proxy serving browsers sees a working
    /// set of popular names again and again.
    static let benchmarkZone = "portslice-bench.test"
    static let destinationNames = (0..<100).map { "host\($0).\(benchmarkZone)" }

    /// Runs every contender; `portslice` is the executable to start our proxy from.
    public func run(portslice: String, progress: (String) -> Void) throws -> Report {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("portslice-bench-proxy-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let all = [
            Contender(name: "portslice") { port, nameServer, directory in
                try Self.startPortslice(portslice, port: port, slice: Self.portsliceSlice, nameServer: nameServer, pinsLoops: pinsLoops, directory: directory)
            },
            // The peers use the system's resolver, which cannot be pointed at another server
            // without root: their rows are by address only.
            Contender(name: "microsocks") { port, _, _ in
                try GuardedProcess(try Self.installed("microsocks", package: "microsocks"), ["-i", "127.0.0.1", "-p", "\(port)"])
            },
            Contender(name: "dante") { port, _, directory in
                let configuration = "\(directory)/danted.conf"
                try """
                    logoutput: /dev/null
                    internal: 127.0.0.1 port = \(port)
                    external: lo
                    socksmethod: none
                    clientmethod: none
                    user.privileged: root
                    user.unprivileged: nobody
                    client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }
                    socks pass { from: 127.0.0.0/8 to: 0.0.0.0/0 command: connect }

                    """.write(toFile: configuration, atomically: true, encoding: .utf8)
                return try GuardedProcess(try Self.installed("danted", package: "dante-server"), ["-f", configuration, "-N", "2"])
            },
        ]
        let contenders = all.filter { self.contenders.contains($0.name) }
        let openFileLimit = Int(HostNetwork.raiseOpenFileLimit(to: 65536))
        let plan = HoldPlan(held: heldConnections, openFileLimit: openFileLimit)
        if plan.total < heldConnections {
            progress("holding \(plan.total) connections, not \(heldConnections): the open-file limit is \(openFileLimit) per process")
        }
        let closing = try AcceptingListener(Endpoint(IPv4Address(127, 0, 0, 1), 0))
        let sink = try EchoServers(Endpoint(IPv4Address(127, 0, 0, 1), 0), mode: .tcpSink)
        let nameServer = try BenchmarkNameServer(zone: Self.benchmarkZone, answering: closing.endpoint.address)
        defer { nameServer.stop() }
        var report = Report()
        report.rates = try measureRates(contenders, closing: closing.endpoint, sink: sink, nameServer: nameServer, directory: directory, progress: progress)
        if plan.total > 0 {
            for (number, contender) in contenders.enumerated() {
                // A proxy of its own, freshly started, so its memory before holding is its memory at rest.
                report.held.append(try holdConnections(contender, port: UInt16(31090 + number), plan: plan, newConnectionsTo: closing.endpoint,
                                                       directory: directory, progress: progress))
            }
        }
        if contenders.contains(where: { $0.name == "portslice" }) {
            report.fill = try measureFill(portslice: portslice, directory: directory, progress: progress)
        }
        return report
    }

    /// How many pieces each connection-rate row is measured in. The rows of one number of
    /// clients take turns piece by piece (portslice, portslice by name, microsocks, Dante,
    /// then again), so a change in what else the shared machine is doing, which moves a rate
    /// by several percent over seconds, falls on every row alike instead of on whichever ran
    /// at the time.
    static let interleavedPieces = 6

    /// Connection rates and throughput with each number of clients, every contender running at
    /// once on a port of its own: the connection rows of one number of clients in turns (see
    /// `interleavedPieces`), by name too for portslice (started asking `nameServer`), then each
    /// contender's throughput.
    func measureRates(_ contenders: [Contender], closing: Endpoint, sink: EchoServers, nameServer: BenchmarkNameServer?,
                      directory: String, progress: (String) -> Void) throws -> [Row] {
        var processes: [GuardedProcess] = []
        defer { GuardedProcess.stop(processes) }
        var proxies: [Endpoint] = []
        for (number, contender) in contenders.enumerated() {
            let proxy = Endpoint(IPv4Address(127, 0, 0, 1), UInt16(31080 + number))
            try Self.requireFree(proxy)
            processes.append(try contender.start(proxy.port, contender.name == "portslice" ? nameServer?.endpoint : nil, directory))
            try Self.waitUntilListening(proxy, process: processes[number], name: contender.name)
            proxies.append(proxy)
        }
        /// One connection row: the contender it measures, and the names it asks for (none: by address).
        struct Variant {
            let contender: Int
            let proxy: String
            let names: [String]
        }
        var variants: [Variant] = []
        for (number, contender) in contenders.enumerated() {
            variants.append(Variant(contender: number, proxy: contender.name, names: []))
            if contender.name == "portslice" && nameServer != nil {
                variants.append(Variant(contender: number, proxy: Self.namesRowProxy, names: Self.destinationNames))
            }
        }
        // Keyed for the table's order: each contender's rows together, by clients, by address first.
        var rows: [(contender: Int, clients: Int, variant: Int, row: Row)] = []
        for (clientsIndex, clients) in concurrencies.enumerated() {
            progress("\(clients) client(s): connections, \(variants.map(\.proxy).joined(separator: ", ")) in turn, \(Self.interleavedPieces) times")
            var samples = [ConnectionSample](repeating: ConnectionSample(), count: variants.count)
            let piece = seconds / Double(Self.interleavedPieces)
            for _ in 0..<Self.interleavedPieces {
                for (index, variant) in variants.enumerated() {
                    samples[index] += try sampleConnections(of: processes[variant.contender]) {
                        try connectionRate(via: proxies[variant.contender], to: closing, names: variant.names, clients: clients, seconds: piece)
                    }
                }
            }
            for (index, variant) in variants.enumerated() {
                var row = samples[index].row(proxy: variant.proxy, clients: clients)
                if variant.names.isEmpty {
                    progress("\(variant.proxy), \(clients) client(s): throughput")
                    row.bytesPerSecond = try throughput(via: proxies[variant.contender], to: sink, clients: clients)
                }
                rows.append((variant.contender, clientsIndex, index, row))
            }
        }
        return rows.sorted { ($0.contender, $0.clients, $0.variant) < ($1.contender, $1.clients, $1.variant) }.map(\.row)
    }

    /// What one piece of a connection-rate measurement saw; pieces of one row add up.
    struct ConnectionSample {
        var connections = 0.0
        var seconds = 0.0
        var proxyUser = 0.0
        var proxySystem = 0.0
        var ownUser = 0.0
        var ownSystem = 0.0
        var threads = 0

        static func += (sum: inout ConnectionSample, piece: ConnectionSample) {
            sum.connections += piece.connections
            sum.seconds += piece.seconds
            sum.proxyUser += piece.proxyUser
            sum.proxySystem += piece.proxySystem
            sum.ownUser += piece.ownUser
            sum.ownSystem += piece.ownSystem
            sum.threads = max(sum.threads, piece.threads)
        }

        func row(proxy: String, clients: Int) -> Row {
            let perConnection = { (cpu: Double) in connections > 0 ? cpu * 1e6 / connections : 0 }
            let rate = seconds > 0 ? connections / seconds : 0
            return Row(proxy: proxy, clients: clients, connectionsPerSecond: rate,
                       proxyMicrosecondsPerConnection: perConnection(proxyUser + proxySystem),
                       proxyUserMicrosecondsPerConnection: perConnection(proxyUser),
                       loadGeneratorCorePercent: seconds > 0 ? (ownUser + ownSystem) * 100 / seconds : 0,
                       loadGeneratorUserCorePercent: seconds > 0 ? ownUser * 100 / seconds : 0, loadGeneratorThreads: threads,
                       bytesPerSecond: nil)
        }
    }

    /// `load`'s connections and time beside the CPU time the proxy's process group and this
    /// process spent meanwhile.
    func sampleConnections(of process: GuardedProcess, _ load: () throws -> (rate: Double, seconds: Double, threads: Int)) throws -> ConnectionSample {
        let before = Self.cpuSeconds(ofGroup: process.group)
        let ownBefore = ProcessCPU.ownUsage()
        let (rate, elapsed, threads) = try load()
        let ownAfter = ProcessCPU.ownUsage()
        let after = Self.cpuSeconds(ofGroup: process.group)
        return ConnectionSample(connections: rate * elapsed, seconds: elapsed, proxyUser: after.user - before.user, proxySystem: after.system - before.system,
                                ownUser: ownAfter.user - ownBefore.user, ownSystem: ownAfter.system - ownBefore.system, threads: threads)
    }

    /// Starts `contender` afresh, reads its memory, opens `plan`'s relays and slow clients and
    /// times new connections beside them, reads its memory again, and lets everything go.
    /// Whatever the proxy refuses along the way is reported in the row, not thrown: a peer
    /// that cannot hold this many is a result.
    func holdConnections(_ contender: Contender, port: UInt16, plan: HoldPlan, newConnectionsTo target: Endpoint, directory: String,
                         progress: (String) -> Void) throws -> HeldRow {
        let destination = try IdleDestination(keepingFirst: plan.relays)
        defer { destination.stop() }
        try Self.requireFree(Endpoint(IPv4Address(127, 0, 0, 1), port))
        let process = try contender.start(port, nil, directory)
        defer { GuardedProcess.stop([process]) }  // before the destination (see `IdleDestination.stop`)
        let proxy = Endpoint(IPv4Address(127, 0, 0, 1), port)
        try Self.waitUntilListening(proxy, process: process, name: contender.name)
        let group = process.group
        let fresh = ProcessMemory.kilobytes(ofGroup: group)
        var problems: [String] = []

        progress("\(contender.name), held: \(plan.relays) idle relays")
        let dialer = try SliceDialer(slice: EgressSlice(parsing: Self.heldConnectionSlice))
        let relays = try SOCKSConnectLoad(proxy: proxy, target: destination.endpoint, concurrency: 64, completion: .keep, dialer: dialer)
            .run(for: .seconds(60), limit: plan.relays)
        if let failure = relays.failure { problems.append("relays, after \(relays.completed): \(failure)") }
        if relays.failure == nil && relays.completed < plan.relays { problems.append("relays: only \(relays.completed) opened in 60 s") }

        progress("\(contender.name), held: \(plan.slowClients) slow clients")
        let slow = Self.openSlowClients(plan.slowClients, to: proxy, from: dialer, within: .seconds(30))
        if let failure = slow.failure { problems.append("slow clients, after \(slow.clients.count): \(failure)") }

        progress("\(contender.name), held: \(Self.newConnectionsWhileHolding) new connections beside them")
        let probes = Self.timeNewConnections(via: proxy, to: target, count: Self.newConnectionsWhileHolding, within: .seconds(20))
        if let failure = probes.failure { problems.append("new connections, after \(probes.times.count): \(failure)") }

        // A connection the proxy closed reads as ready (end of stream, or an error); an idle one does not.
        let stillOpen = { (held: [HeldSocket]) in held.count - PollSet.ready(held.map(\.descriptor), timeoutMilliseconds: 0).count }
        let relaysStillOpen = stillOpen(relays.kept), slowClientsStillOpen = stillOpen(slow.clients)
        if slowClientsStillOpen < slow.clients.count { problems.append("\(slow.clients.count - slowClientsStillOpen) slow clients answered or closed by the proxy") }
        if relaysStillOpen < relays.kept.count { problems.append("\(relays.kept.count - relaysStillOpen) relays closed by the proxy") }
        let loaded = ProcessMemory.kilobytes(ofGroup: group)
        let held = relaysStillOpen + slowClientsStillOpen
        let perHeld = { (fresh: Int, loaded: Int) in held > 0 ? Double(loaded - fresh) * 1024 / Double(held) : nil }
        let latencies = Latencies(probes.times, elapsed: .zero)
        return HeldRow(
            proxy: contender.name, plan: plan, relaysOpened: relays.kept.count, slowClientsOpened: slow.clients.count,
            relaysStillOpen: relaysStillOpen, slowClientsStillOpen: slowClientsStillOpen,
            residentKilobytesFresh: fresh.resident, residentKilobytesHeld: loaded.resident,
            proportionalKilobytesFresh: fresh.proportional, proportionalKilobytesHeld: loaded.proportional,
            residentBytesPerHeldConnection: perHeld(fresh.resident, loaded.resident),
            proportionalBytesPerHeldConnection: perHeld(fresh.proportional, loaded.proportional),
            newConnections: latencies.count, newConnectionP50Milliseconds: latencies.p50, newConnectionP99Milliseconds: latencies.p99,
            problems: problems)
    }

    /// portslice from a 1,000-port slice: the connection rate (1 client) towards one
    /// destination with the slice empty, then with 990 relays held towards it, 99% full.
    func measureFill(portslice: String, directory: String, progress: (String) -> Void) throws -> FillRow {
        let port: UInt16 = 31099
        let destination = try IdleDestination(keepingFirst: 0)
        defer { destination.stop() }
        try Self.requireFree(Endpoint(IPv4Address(127, 0, 0, 1), port))
        let process = try Self.startPortslice(portslice, port: port, slice: Self.fillSlice, pinsLoops: pinsLoops, directory: directory)
        defer { GuardedProcess.stop([process]) }  // before the destination (see `IdleDestination.stop`)
        let proxy = Endpoint(IPv4Address(127, 0, 0, 1), port)
        try Self.waitUntilListening(proxy, process: process, name: "portslice (fill)")
        progress("portslice, fill: connections towards one destination, slice empty")
        let empty = try connectionRate(via: proxy, to: destination.endpoint, clients: 1, completion: .resetAfterDestinationCloses)
        progress("portslice, fill: \(Self.fillRelays) relays held towards it")
        try destination.keep(next: Self.fillRelays)
        let relays = try SOCKSConnectLoad(proxy: proxy, target: destination.endpoint, concurrency: 16, completion: .keep)
            .run(for: .seconds(30), limit: Self.fillRelays)
        if let failure = relays.failure { throw BenchmarkFailure("portslice held only \(relays.completed) of \(Self.fillRelays) relays: \(failure)") }
        progress("portslice, fill: connections towards it, slice 99% full")
        let full = try withExtendedLifetime(relays.kept) {
            try connectionRate(via: proxy, to: destination.endpoint, clients: 1, completion: .resetAfterDestinationCloses)
        }
        return FillRow(slice: Self.fillSlice, slicePorts: Self.fillSlicePorts, relaysHeld: relays.kept.count,
                       emptyConnectionsPerSecond: empty.rate, fullConnectionsPerSecond: full.rate)
    }

    /// Starts `portslice proxy` on `port`, sending from `slice`; with `nameServer`, asking it
    /// alone for names, with a resolv.conf of the benchmark's own (no search list, ndots 1), so
    /// the host's search rules add no queries (the hosts file stays the system's).
    static func startPortslice(_ executable: String, port: UInt16, slice: String, nameServer: Endpoint? = nil, pinsLoops: Bool = true,
                               directory: String) throws -> GuardedProcess {
        let address = slice.prefix { $0 != ":" }
        let pool = "\(directory)/pool-\(address).csv"
        try "\(address)/32,US,US-CA,San Jose,,hosting,high\n".write(toFile: pool, atomically: true, encoding: .utf8)
        // The load's clients all come from 127.0.0.1, one address standing for many clients:
        // neither per-client limit may bind (64 clients' first lookups wait at once).
        var arguments = ["proxy", "--listen", "127.0.0.1:\(port)", "--admin-listen", "127.0.0.1:0", "--slice", slice, "--pool", pool,
                         "--allow", "127.0.0.1/32", "--connections-per-client", "100000"] + (pinsLoops ? [] : ["--no-pin-loops"])
        if let nameServer {
            let resolvConf = "\(directory)/resolv.conf"
            try "options ndots:1 timeout:2 attempts:2\n".write(toFile: resolvConf, atomically: true, encoding: .utf8)
            arguments += ["--dns-server", "\(nameServer)", "--resolv-conf", resolvConf, "--lookups-per-client", "10000"]
        }
        return try GuardedProcess(executable, arguments)
    }

    static let socksGreeting: [UInt8] = [5, 1, 0]

    /// CONNECT to an IPv4 address and port.
    static func socksConnectRequest(to target: Endpoint) -> [UInt8] {
        let (a, b, c, d) = target.address.octets
        return [5, 1, 0, 1, a, b, c, d, UInt8(target.port >> 8), UInt8(target.port & 0xff)]
    }

    /// CONNECT to a domain name (address type 3) and port.
    /// - Throws: `BenchmarkFailure` for a name SOCKS5 cannot carry (empty, or over 255 bytes).
    static func socksConnectRequest(toName name: String, port: UInt16) throws -> [UInt8] {
        let bytes = Array(name.utf8)
        guard (1...255).contains(bytes.count) else { throw BenchmarkFailure("a SOCKS5 name is 1 to 255 bytes, not \(bytes.count): '\(name)'") }
        return [5, 1, 0, 3, UInt8(bytes.count)] + bytes + [UInt8(port >> 8), UInt8(port & 0xff)]
    }

    /// A SOCKS5 CONNECT through `proxy` to `target`, without authentication.
    static func socksConnect(via proxy: Endpoint, to target: Endpoint) throws -> ConnectedSocket {
        let socket = try UnslicedConnect.tcp(to: proxy)
        try socket.send(socksGreeting)
        guard try receive(socket, exactly: 2) == [5, 0] else { throw BenchmarkFailure("the proxy refused SOCKS5 without authentication") }
        try socket.send(socksConnectRequest(to: target))
        let reply = try receive(socket, exactly: 10)
        guard reply[1] == 0 else { throw BenchmarkFailure("the proxy answered CONNECT with reply \(reply[1])") }
        return socket
    }

    static func receive(_ socket: borrowing ConnectedSocket, exactly count: Int) throws -> [UInt8] {
        var bytes: [UInt8] = []
        while bytes.count < count {
            let more = try socket.receive(upTo: count - bytes.count, timeout: .seconds(10))
            guard !more.isEmpty else { throw BenchmarkFailure("the proxy closed the connection during the SOCKS exchange") }
            bytes += more
        }
        return bytes
    }

    /// New connections per second, the seconds it measured, and the load threads it used.
    /// With `names`, each CONNECT names the next of them (and `target`'s port) instead of
    /// giving the address.
    /// `seconds` defaults to the benchmark's.
    func connectionRate(via proxy: Endpoint, to target: Endpoint, names: [String] = [], clients: Int, seconds: Double? = nil,
                        completion: SOCKSConnectLoad.Completion = .reset) throws -> (rate: Double, seconds: Double, threads: Int) {
        let load = SOCKSConnectLoad(proxy: proxy, target: target, names: names, concurrency: clients, completion: completion)
        let outcome = try load.run(for: .milliseconds(Int((seconds ?? self.seconds) * 1000)), limit: 10_000_000)
        if let failure = outcome.failure { throw BenchmarkFailure(failure) }
        return (Double(outcome.completed) / outcome.seconds, outcome.seconds, load.threadCount)
    }

    /// TCP connections to `proxy` that never finish the SOCKS greeting: every other one has
    /// sent its first byte, the rest nothing. Stops at the first failure.
    static func openSlowClients(_ count: Int, to proxy: Endpoint, from dialer: SliceDialer, within limit: Duration) -> (clients: [HeldSocket], failure: String?) {
        let deadline = ContinuousClock.now + limit
        var clients: [HeldSocket] = []
        for number in 0..<count {
            guard ContinuousClock.now < deadline else { return (clients, "no more within \(limit)") }
            do {
                let client = HeldSocket(try dialer.connectTCP(to: proxy, timeout: .seconds(5)))
                try client.socket.resetOnClose()  // no TIME_WAIT left on this side (see `SOCKSConnectLoad.Completion.keep`)
                if number.isMultiple(of: 2) { try client.socket.send([socksGreeting[0]]) }
                clients.append(client)
            } catch {
                return (clients, "\(error)")
            }
        }
        return (clients, nil)
    }

    /// Times `count` SOCKS5 CONNECTs through `proxy`, one after another, from connect to reply.
    /// Stops at the first failure.
    static func timeNewConnections(via proxy: Endpoint, to target: Endpoint, count: Int, within limit: Duration) -> (times: [Duration], failure: String?) {
        let deadline = ContinuousClock.now + limit
        var times: [Duration] = []
        while times.count < count && ContinuousClock.now < deadline {
            let started = ContinuousClock.now
            do {
                let socket = try socksConnect(via: proxy, to: target)
                times.append(ContinuousClock.now - started)
                try socket.resetOnClose()
            } catch {
                return (times, "\(error)")
            }
        }
        return (times, nil)
    }

    func throughput(via proxy: Endpoint, to sink: EchoServers, clients: Int) throws -> Double {
        let before = sink.byteCount
        let chunk = [UInt8](repeating: 0x5a, count: 256 * 1024)
        let elapsed = try onThreads(clients) { _ in
            let socket = try Self.socksConnect(via: proxy, to: sink.endpoint)
            let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
            // A proxy that stops reading ends this client's part at the deadline.
            while ContinuousClock.now < deadline {
                do { try socket.send(chunk, timeout: max(deadline - ContinuousClock.now, .milliseconds(100))) } catch DialError.timedOut { break }
            }
        }
        // Bytes still in flight arrive within moments; count what reached the sink.
        Thread.sleep(forTimeInterval: 0.3)
        return Double(sink.byteCount - before) / elapsed
    }

    /// Kills the process's whole group (Foundation makes every child the leader of one) and
    /// waits for it. SIGKILL, because a child started from a Swift concurrency thread inherits
    /// its blocked signal mask, SIGTERM included, and would never see a SIGTERM (the benchmark
    /// hung waiting for microsocks and Dante to exit).
    static func stop(_ process: Process) { stop([process]) }

    /// Kills every one's group, then waits for each: waiting for one while another still runs
    /// hung (seen with portslice killed and left a zombie while microsocks and Dante ran).
    static func stop(_ processes: [Process]) {
        for process in processes { kill(-process.processIdentifier, SIGKILL) }
        for process in processes { process.waitUntilExit() }
    }

    /// User and system CPU seconds of every process in process group `group`, from
    /// `/proc/PID/stat`; threads that ended are included in their process's count.
    static func cpuSeconds(ofGroup group: Int32) -> (user: Double, system: Double) {
        ProcessCPU.processIDs.compactMap(ProcessCPU.record(of:)).filter { $0.group == group }
            .reduce((user: 0, system: 0)) { ($0.user + $1.user, $0.system + $1.system) }
    }

    static func installed(_ tool: String, package: String) throws -> String {
        for directory in ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin"] where FileManager.default.isExecutableFile(atPath: "\(directory)/\(tool)") {
            return "\(directory)/\(tool)"
        }
        throw BenchmarkFailure("\(tool) is not installed; apt-get install \(package) (scripts/bench-proxy.sh installs the peers and runs this benchmark)")
    }

    /// Throws when something listens on `endpoint` already: a proxy left from an earlier run
    /// would answer in place of the one about to start there (which then exits), and be measured.
    static func requireFree(_ endpoint: Endpoint) throws {
        if (try? UnslicedConnect.tcp(to: endpoint, timeout: .milliseconds(200))) != nil {
            throw BenchmarkFailure("something listens on \(endpoint) already (a proxy left from an earlier run?); stop it and run again")
        }
    }

    static func waitUntilListening(_ endpoint: Endpoint, process guarded: GuardedProcess, name: String) throws {
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline {
            guard guarded.process.isRunning else { throw BenchmarkFailure("\(name) exited at start (status \(guarded.process.terminationStatus)); run it by hand with the same arguments to see why") }
            if (try? UnslicedConnect.tcp(to: endpoint, timeout: .milliseconds(200))) != nil { return }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw BenchmarkFailure("\(name) did not listen on \(endpoint) within 15 s")
    }
}
