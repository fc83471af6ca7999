import Foundation
import PortSliceCore
import PortSliceStore

/// `portslice bench alloc`: acquire, renew-all and release requests, on SQLite and optionally
/// PostgreSQL, with thousands of hosts on a pool of addresses, each beside a first-fit peer
/// on the same engine (`FirstFitPeer`). Two paths: straight against the store in this process
/// (`store`), and through the HTTP API to allocator processes with concurrent clients (`http`,
/// see `AllocBenchmark+HTTP.swift`).
public struct AllocBenchmark: Sendable {
    public var hosts = 10_000
    public var addresses = 1_000
    /// Slices each host asks for in its one acquire request.
    public var slicesPerHost = 3
    /// Renewal period the CPU share is stated for.
    public var renewalPeriod = Duration.seconds(10)
    /// Concurrent clients of the HTTP rows' acquires and releases.
    public var clients = 32
    public var paths: Set<Path> = [.store, .http]
    /// The `portslice` executable: the HTTP rows run `portslice serve` and `portslice bench
    /// alloc-peer` processes.
    public var executable: String?
    /// Where to write every closed-loop request's time through HTTP, one CSV file per row and
    /// contender: when it was sent and how long it took, to see when the slow ones come.
    public var requestTimesDirectory: String?

    public init() {}

    public enum Path: String, Sendable, CaseIterable {
        /// Calls on the store in this process, one after another.
        case store
        /// Requests through the HTTP API to allocator processes.
        case http
    }

    /// Where the stores live.
    public enum Engine: Sendable, CustomStringConvertible {
        case sqlite(directory: String)
        /// A server URL: the benchmark creates scratch databases beside the one named and drops them.
        case postgres(url: String)

        public var description: String {
            switch self {
            case .sqlite: "SQLite"
            case .postgres: "PostgreSQL"
            }
        }

        /// The renewal round's CPU target, as a percentage of one core: 10 on SQLite, 25 on
        /// PostgreSQL, where the database server's processes are counted with the allocator's.
        var renewalCoreLimit: Double {
            switch self {
            case .sqlite: 10
            case .postgres: 25
            }
        }

        /// Whose CPU the store path's renewal target counts, as the target column says it.
        var storeRenewalCounted: String {
            switch self {
            case .sqlite: ""
            case .postgres: " (allocator and server)"
            }
        }
    }

    public struct Row: Sendable, Encodable {
        public let engine: String
        /// "store" or "http".
        public let path: String
        public let operation: String
        /// Who sends the requests, such as "32 clients" or "10000 hosts over 10 s".
        public let load: String
        /// Requests measured (every one answered as expected).
        public let requests: Int
        /// Measured: requests answered over the time from the first sent to the last answered.
        public let operationsPerSecond: Double
        public let p50Milliseconds: Double
        public let p99Milliseconds: Double
        /// CPU used by one renewal round of every host, as a share of one core over the period.
        /// Store path: this process (less the load generator's own share, measured alone) plus,
        /// on PostgreSQL, the server's processes for the database. HTTP path: the allocator
        /// processes plus, on PostgreSQL, the server's processes for the database.
        public let corePercentPerPeriod: Double?
        /// Store path: the load generator's own CPU in the same paced round, already taken off
        /// the above and off the peer's.
        public let generatorCorePercentPerPeriod: Double?
        public let peerRequests: Int
        public let peerOperationsPerSecond: Double
        public let peerP50Milliseconds: Double
        public let peerP99Milliseconds: Double
        public let peerCorePercentPerPeriod: Double?
        /// HTTP path: the same processes' CPU with no requests at all (measured over a few
        /// seconds before the round) as a share of a core: part of the above, not taken off.
        public let idleCorePercent: Double?
        public let peerIdleCorePercent: Double?
        public let target: String
        /// nil when the row has no target.
        public let meetsTarget: Bool?
    }

    /// The plan every address gets: 1024-65535 in 2,048-port slices, 31 of them.
    static let plan = try! SlicePlan(range: try! PortRange(1024, 65535), layout: .portsPerSlice(2048))

    /// Trait classes of the pool and of the requests, chosen by a seeded generator.
    static let classes: [Traits] = {
        let countries = ["US", "DE", "FR", "GB", "JP", "BR", "IN", "AU"]
        let categories: [PortSliceCore.Category] = [.residential, .mobile, .business, .hosting]
        return countries.flatMap { country in
            categories.map { try! Traits(country: try! CountryCode(parsing: country), category: $0) }
        }
    }()

    static func address(_ index: Int) -> IPv4Address {
        IPv4Address(bits: IPv4Address(198, 18, 0, 0).bits + UInt32(index))
    }

    /// The rows of the chosen paths on one engine.
    public func run(on engine: Engine, progress: @Sendable (String) -> Void) async throws -> [Row] {
        var random = SplitMix64(seed: 8805)
        let wanted = (0..<hosts).map { _ in Self.classes.randomElement(using: &random)! }
        var rows: [Row] = []
        if paths.contains(.store) { rows += try await runOnStore(engine, wanted: wanted, progress: progress) }
        if paths.contains(.http) {
            guard let executable else { throw BenchmarkFailure("the HTTP rows need the portslice executable") }
            rows += try await runThroughHTTP(engine, wanted: wanted, executable: executable, progress: progress)
        }
        return rows
    }

    // MARK: - Store path

    struct Measured {
        var acquire = Timings()
        var renew = Timings()
        var renewCPUSeconds = 0.0
    }

    static let start = Moment(milliseconds: 1_800_000_000_000)
    static let timeToLive = Duration.seconds(3_600)

    private func runOnStore(_ engine: Engine, wanted: [Traits], progress: @Sendable (String) -> Void) async throws -> [Row] {
        let (store, database) = try await openStore(engine, label: "store")
        let ours: Measured
        let generatorCPUSeconds: Double
        do {
            progress("\(engine), store: the load generator alone, one period, for calibration")
            let generatorBefore = ProcessCPU.ownSeconds()
            _ = try await pacedRound { _ in }
            generatorCPUSeconds = ProcessCPU.ownSeconds() - generatorBefore
            ours = try await measure(store, engine: engine, database: database.name, wanted: wanted, progress: progress)
            try await store.close()
            try await database.drop()
        } catch {
            try? await store.close()
            try? await database.drop()
            throw error
        }

        progress("\(engine), store: the first-fit peer: \(hosts) acquires one after another, then the same paced renewal round")
        let peerDatabase = try await Self.place(engine, label: "peer")
        let theirs: Measured
        do {
            try await FirstFitPeer.createSchema(peerDatabase.peer)
            let peer = try await FirstFitPeer.open(peerDatabase.peer)
            do {
                theirs = try await measure(peer, database: peerDatabase.name)
                try await peer.close()
            } catch {
                try? await peer.close()
                throw error
            }
            try await peerDatabase.drop()
        } catch {
            try? await peerDatabase.drop()
            throw error
        }

        // What the renewals cost: the round's CPU less the load generator's, for both.
        func share(_ seconds: Double) -> Double { seconds / renewalPeriod.seconds * 100 }
        let corePercent = share(ours.renewCPUSeconds - generatorCPUSeconds)
        return [
            Row(engine: engine.description, path: "store", operation: "acquire (\(slicesPerHost) slices)", load: "1 client",
                ours: ours.acquire, theirs: theirs.acquire, cpu: nil, generator: nil, peerCPU: nil,
                target: "p99 < 10 ms", meetsTarget: ours.acquire.latencies.p99 < 10),
            Row(engine: engine.description, path: "store", operation: "renew all of a host's leases", load: pacedLoad,
                ours: ours.renew, theirs: theirs.renew, cpu: corePercent, generator: share(generatorCPUSeconds),
                peerCPU: share(theirs.renewCPUSeconds - generatorCPUSeconds),
                target: "\(hosts) hosts every \(periodText) s < \(Int(engine.renewalCoreLimit))% of a core\(engine.storeRenewalCounted)",
                meetsTarget: corePercent < engine.renewalCoreLimit),
        ]
    }

    var pacedLoad: String { "\(hosts) hosts over \(periodText) s" }

    /// The period in seconds, as a person writes it: "10", "0.5".
    var periodText: String {
        let seconds = renewalPeriod.seconds
        return seconds == seconds.rounded() ? "\(Int(seconds))" : String(format: "%.1f", seconds)
    }

    /// Fills the pool; every host acquires once, one after another; then one renewal period
    /// in real time, each host renewing at its own moment, spread evenly over the period, as
    /// agents do. CPU is counted over that period.
    private func measure(_ store: SQLSliceStore, engine: Engine, database: String?, wanted: [Traits], progress: @Sendable (String) -> Void) async throws -> Measured {
        let clock = ContinuousClock()
        var measured = Measured()
        progress("\(engine), store: adding \(addresses) addresses x \(Self.plan.slices.count) slices")
        for index in 0..<addresses {
            try await store.add(EgressAddress(address: Self.address(index), traits: Self.classes[index % Self.classes.count]), plan: Self.plan)
        }
        progress("\(engine), store: \(hosts) hosts acquire \(slicesPerHost) slices each, one after another")
        let began = clock.now
        for (index, traits) in wanted.enumerated() {
            let requested = clock.now
            let leases = try await store.acquire(host: "host\(index)", traits: traits, count: slicesPerHost, timeToLive: Self.timeToLive, now: Self.start)
            guard leases.count == slicesPerHost else { throw BenchmarkFailure("host\(index) got \(leases.count) slices") }
            measured.acquire.times.append(clock.now - requested)
        }
        measured.acquire.elapsed = clock.now - began
        progress("\(engine), store: every host renews all its leases once, spread over \(renewalPeriod)")
        let cpuBefore = Self.cpuSeconds(database: database)
        measured.renew = try await pacedRound { host in
            let renewed = try await store.renewAll(host: "host\(host)", timeToLive: Self.timeToLive, now: Self.start + .seconds(60))
            guard renewed.slices.count == slicesPerHost else { throw BenchmarkFailure("host\(host) renewed \(renewed.slices.count) leases") }
        }
        measured.renewCPUSeconds = Self.cpuSpent(since: cpuBefore, database: database)
        return measured
    }

    /// The peer's acquires one after another, then the same paced round as ours.
    private func measure(_ peer: FirstFitPeer, database: String?) async throws -> Measured {
        let clock = ContinuousClock()
        var measured = Measured()
        for index in 0..<addresses { try await peer.add(Self.address(index), plan: Self.plan) }
        let began = clock.now
        for index in 0..<hosts {
            let requested = clock.now
            let leases = try await peer.acquire(host: "host\(index)", count: slicesPerHost, expires: Self.start + Self.timeToLive, now: Self.start)
            guard leases.count == slicesPerHost else { throw BenchmarkFailure("the peer gave host\(index) \(leases.count) slices") }
            measured.acquire.times.append(clock.now - requested)
        }
        measured.acquire.elapsed = clock.now - began
        let cpuBefore = Self.cpuSeconds(database: database)
        measured.renew = try await pacedRound { host in
            let renewed = try await peer.renewAll(host: "host\(host)", expires: Self.start + Self.timeToLive + .seconds(60), now: Self.start + .seconds(60))
            guard renewed.count == slicesPerHost else { throw BenchmarkFailure("the peer renewed \(renewed.count) leases of host\(host)") }
        }
        measured.renewCPUSeconds = Self.cpuSpent(since: cpuBefore, database: database)
        return measured
    }

    /// One renewal period in real time: host i calls `renew(i)` at i/hosts of the period, each
    /// in its own task, as independent agents would; the time each call took, and the time
    /// from the first call to the last answer.
    func pacedRound(_ renew: @escaping @Sendable (Int) async throws -> Void) async throws -> Timings {
        let clock = ContinuousClock()
        let hosts = self.hosts, periodMilliseconds = Int(renewalPeriod.seconds * 1_000)
        let began = clock.now
        let times = try await withThrowingTaskGroup(of: Duration.self) { group in
            var launched = 0
            while launched < hosts {
                // Every host whose moment has come, checked every 10 ms.
                let due = min(hosts, hosts * Int((clock.now - began).seconds * 1_000) / periodMilliseconds + 1)
                while launched < due {
                    let host = launched
                    group.addTask {
                        let requested = clock.now
                        try await renew(host)
                        return clock.now - requested
                    }
                    launched += 1
                }
                try await Task.sleep(for: .milliseconds(10))
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        return Timings(times: times, elapsed: clock.now - began)
    }

    /// A store in a fresh place, and that place.
    private func openStore(_ engine: Engine, label: String) async throws -> (SQLSliceStore, Place) {
        let place = try await Self.place(engine, label: label)
        do {
            switch place.peer {
            case .sqlite(let path): return (try await SQLSliceStore.openSQLite(path: path), place)
            case .postgres(let url): return (try await SQLSliceStore.openPostgres(url: url), place)
            }
        } catch {
            try? await place.drop()
            throw error
        }
    }

    /// A fresh database: a SQLite file in the engine's directory, or a scratch database on
    /// the PostgreSQL server.
    struct Place: Sendable {
        /// The database as the peer names it (the same file or URL serves the store).
        let peer: FirstFitPeerServer.Database
        /// The PostgreSQL database's name, for counting its server processes' CPU.
        let name: String?
        let drop: @Sendable () async throws -> Void
    }

    static func place(_ engine: Engine, label: String) async throws -> Place {
        switch engine {
        case .sqlite(let directory):
            let path = "\(directory)/bench-\(label).sqlite"
            removeSQLite(path)
            return Place(peer: .sqlite(path: path), name: nil, drop: { removeSQLite(path) })
        case .postgres(let url):
            let scratch = try await createScratchDatabase(beside: url, label: label)
            return Place(peer: .postgres(url: scratch.url), name: scratch.name, drop: scratch.drop)
        }
    }

    static func removeSQLite(_ path: String) {
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
    }

    /// Creates `portslice_bench_<label>_<random>` on the server of `url`; dropping it ends any
    /// session still connected to it.
    static func createScratchDatabase(beside url: String, label: String) async throws
        -> (url: String, name: String, drop: @Sendable () async throws -> Void)
    {
        guard let slash = url.lastIndex(of: "/"), url[..<slash].contains("@") else {
            throw BenchmarkFailure("--postgres '\(url)' must look like postgres://USER@HOST:PORT/DATABASE")
        }
        let name = "portslice_bench_\(label)_\(UInt32.random(in: 0...UInt32.max))"
        let admin = try await SQLConnections.postgres(url: url)
        _ = try await admin.query("CREATE DATABASE \(name)", [])
        try await admin.close()
        let query = url[slash...].firstIndex(of: "?").map { String(url[$0...]) } ?? ""
        return (String(url[..<slash]) + "/\(name)" + query, name, {
            let admin = try await SQLConnections.postgres(url: url)
            _ = try await admin.query("DROP DATABASE IF EXISTS \(name) WITH (FORCE)", [])
            try await admin.close()
        })
    }

    /// This process's CPU seconds, and per process those of the PostgreSQL server's
    /// processes working for `database` (when there is one).
    static func cpuSeconds(database: String?) -> (own: Double, postgres: [Int32: Double]) {
        (ProcessCPU.ownSeconds(), database.map { ProcessCPU.postgres(database: $0) } ?? [:])
    }

    static func cpuSpent(since before: (own: Double, postgres: [Int32: Double]), database: String?) -> Double {
        let after = cpuSeconds(database: database)
        return after.own - before.own + ProcessCPU.spent(from: before.postgres, to: after.postgres)
    }
}

/// The times of one kind of request, and the time from the first sent to the last answered.
struct Timings: Sendable {
    var times: [Duration] = []
    var elapsed = Duration.zero
    /// When each request was sent, from the start of the run (the HTTP closed loops only).
    var sent: [Duration] = []

    var latencies: Latencies { Latencies(times, elapsed: elapsed) }
}

/// Request times: the measured rate and percentiles, in milliseconds.
struct Latencies {
    let count: Int
    let perSecond: Double
    let p50: Double
    let p99: Double

    init(_ times: [Duration], elapsed: Duration) {
        let sorted = times.map(\.seconds).sorted()
        count = sorted.count
        perSecond = elapsed > .zero ? Double(sorted.count) / elapsed.seconds : 0
        p50 = sorted.isEmpty ? 0 : sorted[sorted.count / 2] * 1000
        p99 = sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, sorted.count * 99 / 100)] * 1000
    }
}

extension AllocBenchmark.Row {
    init(engine: String, path: String, operation: String, load: String, ours: Timings, theirs: Timings,
         cpu: Double?, generator: Double?, peerCPU: Double?, idle: Double? = nil, peerIdle: Double? = nil,
         target: String, meetsTarget: Bool?) {
        let ours = ours.latencies, theirs = theirs.latencies
        self.init(
            engine: engine, path: path, operation: operation, load: load, requests: ours.count, operationsPerSecond: ours.perSecond,
            p50Milliseconds: ours.p50, p99Milliseconds: ours.p99, corePercentPerPeriod: cpu, generatorCorePercentPerPeriod: generator,
            peerRequests: theirs.count, peerOperationsPerSecond: theirs.perSecond, peerP50Milliseconds: theirs.p50,
            peerP99Milliseconds: theirs.p99, peerCorePercentPerPeriod: peerCPU, idleCorePercent: idle, peerIdleCorePercent: peerIdle,
            target: target, meetsTarget: meetsTarget)
    }
}
