import Foundation
import PortSliceCore
import PortSliceStore

/// `portslice bench alloc`: acquire and renew-all requests against the store, on SQLite and
/// optionally PostgreSQL, with thousands of hosts on a pool of addresses, beside a plain-SQL
/// first-fit allocator on the same engine (the least a durable, logged allocator must do:
/// find a free row, mark it, append a log row, commit).
public struct AllocBenchmark: Sendable {
    public var hosts = 10_000
    public var addresses = 1_000
    /// Slices each host asks for in its one acquire request.
    public var slicesPerHost = 3
    /// Renewal period the CPU share is stated for.
    public var renewalPeriod = Duration.seconds(10)

    public init() {}

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
    }

    public struct Row: Sendable, Encodable {
        public let engine: String
        public let operation: String
        public let operationsPerSecond: Double
        public let p50Milliseconds: Double
        public let p99Milliseconds: Double
        public let peerOperationsPerSecond: Double
        public let peerP99Milliseconds: Double
        /// CPU used by one renewal round of every host, as a share of one core over the period:
        /// this process plus, for PostgreSQL on this machine, the server backend, less the load
        /// generator's own share.
        public let corePercentPerPeriod: Double?
        /// The load generator's own CPU in the same paced round, already taken off the above.
        public let generatorCorePercentPerPeriod: Double?
        public let peerCorePercentPerPeriod: Double?
        public let target: String
        public let meetsTarget: Bool
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

    public func run(on engine: Engine, progress: @Sendable (String) -> Void) async throws -> [Row] {
        var random = SplitMix64(seed: 8805)
        let wanted = (0..<hosts).map { _ in Self.classes.randomElement(using: &random)! }

        let (store, dropStore) = try await openStore(engine, label: "store")
        let ours: Measured
        do {
            ours = try await measure(store, engine: engine, wanted: wanted, progress: progress)
            try await store.close()
            try await dropStore()
        } catch {
            try? await store.close()
            try? await dropStore()
            throw error
        }

        progress("\(engine): the plain-SQL first-fit peer: \(hosts) acquires, then \(hosts) renewals one after another")
        let peer = try await FirstFitPeer(engine: engine, benchmark: self)
        let theirs: Measured
        do {
            theirs = try await measure(peer)
            try await peer.close()
        } catch {
            try? await peer.close()
            throw error
        }

        let acquire = Latencies(ours.acquire), peerAcquire = Latencies(theirs.acquire)
        let renew = Latencies(ours.renew), peerRenew = Latencies(theirs.renew)
        // What the renewals cost the allocator: the round's CPU less the load generator's.
        let corePercent = (ours.renewCPUSeconds - ours.generatorCPUSeconds) / renewalPeriod.seconds * 100
        return [
            Row(engine: engine.description, operation: "acquire (\(slicesPerHost) slices)", operationsPerSecond: acquire.perSecond,
                p50Milliseconds: acquire.p50, p99Milliseconds: acquire.p99,
                peerOperationsPerSecond: peerAcquire.perSecond, peerP99Milliseconds: peerAcquire.p99,
                corePercentPerPeriod: nil, generatorCorePercentPerPeriod: nil, peerCorePercentPerPeriod: nil,
                target: "p99 < 10 ms", meetsTarget: acquire.p99 < 10),
            // Renewals are paced, so their rate is the one offered: every host once per period.
            Row(engine: engine.description, operation: "renew all of a host's leases", operationsPerSecond: Double(hosts) / renewalPeriod.seconds,
                p50Milliseconds: renew.p50, p99Milliseconds: renew.p99,
                peerOperationsPerSecond: peerRenew.perSecond, peerP99Milliseconds: peerRenew.p99,
                corePercentPerPeriod: corePercent, generatorCorePercentPerPeriod: ours.generatorCPUSeconds / renewalPeriod.seconds * 100,
                peerCorePercentPerPeriod: theirs.renewCPUSeconds / renewalPeriod.seconds * 100,
                target: "\(hosts) hosts every \(Int(renewalPeriod.seconds)) s < 10% of a core",
                meetsTarget: corePercent < 10),
        ]
    }

    struct Measured {
        var acquire: [Duration] = []
        var renew: [Duration] = []
        var renewCPUSeconds = 0.0
        /// The CPU the paced round costs with renewals that do nothing: the load generator's own.
        var generatorCPUSeconds = 0.0
    }

    static let start = Moment(milliseconds: 1_800_000_000_000)
    static let timeToLive = Duration.seconds(3_600)

    /// Fills the pool; every host acquires once, one after another; then one renewal period
    /// in real time, each host renewing at its own moment, spread evenly over the period, as
    /// agents do. CPU is counted over that period.
    private func measure(_ store: SQLSliceStore, engine: Engine, wanted: [Traits], progress: @Sendable (String) -> Void) async throws -> Measured {
        let clock = ContinuousClock()
        var measured = Measured()
        progress("\(engine): adding \(addresses) addresses x \(Self.plan.slices.count) slices")
        for index in 0..<addresses {
            let address = IPv4Address(bits: IPv4Address(198, 18, 0, 0).bits + UInt32(index))
            try await store.add(EgressAddress(address: address, traits: Self.classes[index % Self.classes.count]), plan: Self.plan)
        }
        progress("\(engine): \(hosts) hosts acquire \(slicesPerHost) slices each, one after another")
        for (index, traits) in wanted.enumerated() {
            let began = clock.now
            _ = try await store.acquire(host: "host\(index)", traits: traits, count: slicesPerHost, timeToLive: Self.timeToLive, now: Self.start)
            measured.acquire.append(clock.now - began)
        }
        progress("\(engine): the load generator alone, one period, for calibration")
        let generatorBefore = Self.cpuSeconds(serverProcess: nil)
        _ = try await pacedRound { _ in }
        measured.generatorCPUSeconds = Self.cpuSeconds(serverProcess: nil) - generatorBefore
        progress("\(engine): every host renews all its leases once, spread over \(renewalPeriod)")
        let serverProcess = try await store.serverProcessID()
        let cpuBefore = Self.cpuSeconds(serverProcess: serverProcess)
        measured.renew = try await pacedRound { host in
            let renewed = try await store.renewAll(host: "host\(host)", timeToLive: Self.timeToLive, now: Self.start + .seconds(60))
            guard !renewed.isEmpty else { throw BenchmarkFailure("host\(host) had no lease to renew") }
        }
        measured.renewCPUSeconds = Self.cpuSeconds(serverProcess: serverProcess) - cpuBefore
        return measured
    }

    /// One renewal period in real time: host i calls `renew(i)` at i/hosts of the period, each
    /// in its own task, as independent agents would; the time each call took.
    private func pacedRound(_ renew: @escaping @Sendable (Int) async throws -> Void) async throws -> [Duration] {
        let clock = ContinuousClock()
        let hosts = self.hosts, periodMilliseconds = Int(renewalPeriod.seconds * 1_000)
        return try await withThrowingTaskGroup(of: Duration.self) { group in
            let began = clock.now
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
    }

    /// The peer's acquires and renewals, one after another (it has no batching to wait for).
    private func measure(_ peer: FirstFitPeer) async throws -> Measured {
        let clock = ContinuousClock()
        var measured = Measured()
        for index in 0..<hosts {
            let began = clock.now
            try await peer.acquire(host: "host\(index)", count: slicesPerHost, expires: Self.start + Self.timeToLive, now: Self.start)
            measured.acquire.append(clock.now - began)
        }
        let serverProcess = try await peer.serverProcessID()
        let cpuBefore = Self.cpuSeconds(serverProcess: serverProcess)
        for index in 0..<hosts {
            let began = clock.now
            try await peer.renewAll(host: "host\(index)", expires: Self.start + Self.timeToLive + .seconds(60))
            measured.renew.append(clock.now - began)
        }
        measured.renewCPUSeconds = Self.cpuSeconds(serverProcess: serverProcess) - cpuBefore
        return measured
    }

    /// A store in a fresh place, and how to remove that place afterwards.
    private func openStore(_ engine: Engine, label: String) async throws -> (SQLSliceStore, @Sendable () async throws -> Void) {
        switch engine {
        case .sqlite(let directory):
            let path = "\(directory)/bench-\(label).sqlite"
            try? FileManager.default.removeItem(atPath: path)
            return (try await SQLSliceStore.openSQLite(path: path), { Self.removeSQLite(path) })
        case .postgres(let url):
            let scratch = try await Self.createScratchDatabase(beside: url, label: label)
            return (try await SQLSliceStore.openPostgres(url: scratch.url), scratch.drop)
        }
    }

    static func removeSQLite(_ path: String) {
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
    }

    /// Creates `portslice_bench_<label>_<random>` on the server of `url`.
    static func createScratchDatabase(beside url: String, label: String) async throws
        -> (url: String, drop: @Sendable () async throws -> Void)
    {
        guard let slash = url.lastIndex(of: "/"), url[..<slash].contains("@") else {
            throw BenchmarkFailure("--postgres '\(url)' must look like postgres://USER@HOST:PORT/DATABASE")
        }
        let name = "portslice_bench_\(label)_\(UInt32.random(in: 0...UInt32.max))"
        let admin = try await SQLConnections.postgres(url: url)
        _ = try await admin.query("CREATE DATABASE \(name)", [])
        try await admin.close()
        return (String(url[..<slash]) + "/\(name)", {
            let admin = try await SQLConnections.postgres(url: url)
            _ = try await admin.query("DROP DATABASE IF EXISTS \(name)", [])
            try await admin.close()
        })
    }

    /// CPU seconds used so far by this process and by the PostgreSQL server process serving
    /// the connection, when there is one on this machine.
    static func cpuSeconds(serverProcess: Int?) -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        var seconds = Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
            + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
        if let serverProcess, let stat = try? String(contentsOfFile: "/proc/\(serverProcess)/stat", encoding: .utf8),
           let endOfName = stat.lastIndex(of: ")") {
            // utime and stime, fields 14 and 15, in clock ticks; fields count from the state after the name.
            let fields = stat[stat.index(after: endOfName)...].split(separator: " ")
            let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
            seconds += ((Double(fields[11]) ?? 0) + (Double(fields[12]) ?? 0)) / ticks
        }
        return seconds
    }
}

/// Request times: rate over the whole run and percentiles, in milliseconds.
struct Latencies {
    let perSecond: Double
    let p50: Double
    let p99: Double

    init(_ times: [Duration]) {
        let sorted = times.map(\.seconds).sorted()
        let total = sorted.reduce(0, +)
        perSecond = total > 0 ? Double(sorted.count) / total : 0
        p50 = sorted.isEmpty ? 0 : sorted[sorted.count / 2] * 1000
        p99 = sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, sorted.count * 99 / 100)] * 1000
    }
}

/// The benchmark's peer: first-fit allocation in plain SQL on the same engine and settings,
/// with no trait matching, spreading, quarantine or expiry, but the same durable log.
struct FirstFitPeer {
    let connection: any SQLConnection
    let drop: @Sendable () async throws -> Void

    init(engine: AllocBenchmark.Engine, benchmark: AllocBenchmark) async throws {
        switch engine {
        case .sqlite(let directory):
            let path = "\(directory)/bench-peer.sqlite"
            AllocBenchmark.removeSQLite(path)
            connection = try await SQLConnections.sqlite(path: path)
            drop = { AllocBenchmark.removeSQLite(path) }
        case .postgres(let url):
            let scratch = try await AllocBenchmark.createScratchDatabase(beside: url, label: "peer")
            connection = try await SQLConnections.postgres(url: scratch.url)
            drop = scratch.drop
        }
        let key = connection.dialect == .sqlite ? "INTEGER PRIMARY KEY AUTOINCREMENT" : "BIGSERIAL PRIMARY KEY"
        for statement in [
            "CREATE TABLE slices (address BIGINT, slice_index BIGINT, state TEXT NOT NULL, host TEXT, expires BIGINT, PRIMARY KEY (address, slice_index))",
            "CREATE INDEX slices_by_state ON slices (state, address, slice_index)",
            "CREATE INDEX slices_by_host ON slices (host)",
            "CREATE TABLE log (id \(key), host TEXT NOT NULL, address BIGINT NOT NULL, slice_index BIGINT NOT NULL, started BIGINT NOT NULL)",
        ] {
            _ = try await connection.query(statement, [])
        }
        let slices = AllocBenchmark.plan.slices.count
        for address in 0..<benchmark.addresses {
            try await transaction {
                for index in 0..<slices {
                    _ = try await connection.query(
                        "INSERT INTO slices (address, slice_index, state) VALUES (?, ?, 'free')", [.integer(Int64(address)), .integer(Int64(index))])
                }
            }
        }
    }

    func acquire(host: String, count: Int, expires: Moment, now: Moment) async throws {
        try await transaction {
            let free = try await connection.query(
                "SELECT address, slice_index FROM slices WHERE state = 'free' ORDER BY address, slice_index LIMIT ?", [.integer(Int64(count))])
            guard free.count == count else { throw BenchmarkFailure("the peer ran out of slices") }
            for row in free {
                let slice: [SQLValue] = [.integer(row.integer("address") ?? 0), .integer(row.integer("slice_index") ?? 0)]
                _ = try await connection.query(
                    "UPDATE slices SET state = 'leased', host = ?, expires = ? WHERE address = ? AND slice_index = ?",
                    [.text(host), .integer(expires.milliseconds)] + slice)
                _ = try await connection.query(
                    "INSERT INTO log (host, address, slice_index, started) VALUES (?, ?, ?, ?)", [.text(host)] + slice + [.integer(now.milliseconds)])
            }
        }
    }

    func serverProcessID() async throws -> Int? {
        guard connection.dialect == .postgres else { return nil }
        return try await connection.query("SELECT pg_backend_pid() AS pid", []).first?.integer("pid").map(Int.init)
    }

    func renewAll(host: String, expires: Moment) async throws {
        try await transaction {
            _ = try await connection.query("UPDATE slices SET expires = ? WHERE host = ?", [.integer(expires.milliseconds), .text(host)])
        }
    }

    func close() async throws {
        try await connection.close()
        try await drop()
    }

    private func transaction(_ body: () async throws -> Void) async throws {
        for statement in connection.dialect.beginWrite { _ = try await connection.query(statement, []) }
        do {
            try await body()
            _ = try await connection.query("COMMIT", [])
        } catch {
            _ = try? await connection.query("ROLLBACK", [])
            throw error
        }
    }
}
