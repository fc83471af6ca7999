import Foundation
import PortSliceAPI
import PortSliceCore
import Synchronization

/// The HTTP rows: the same hosts and requests through the allocator's HTTP API, with the
/// allocator in processes of its own (`portslice serve`; on PostgreSQL two replicas on one
/// database), beside the first-fit peer served the same way (`portslice bench alloc-peer`,
/// two replicas on PostgreSQL too).
///
/// For each: addresses and hosts are registered (not measured); `clients` concurrent clients
/// acquire for every host, each client sending its next request when its last is answered;
/// then one paced renewal round, every host once, spread over the period; then `clients`
/// clients release one lease of every host. The renewal round's CPU is read from `/proc`: the
/// server processes, plus on PostgreSQL the server's processes for the database. Nothing is
/// subtracted from either side: the load generator is this process, which is not counted.
extension AllocBenchmark {
    /// Allocator processes on PostgreSQL (one database), for us and for the peer; on SQLite, one.
    static let postgresReplicas = 2

    enum Contender: String {
        case ours, peer
    }

    struct HTTPMeasured {
        var acquire = Timings()
        var renew = Timings()
        var release = Timings()
        var renewCPUSeconds = 0.0
        /// CPU seconds per second with no requests.
        var idleCores = 0.0
    }

    /// How long the servers' CPU is read with no requests, before the renewal round.
    static let idleSample = Duration.seconds(3)

    func runThroughHTTP(_ engine: Engine, wanted: [Traits], executable: String, progress: @Sendable (String) -> Void) async throws -> [Row] {
        let ours = try await measureThroughHTTP(.ours, engine: engine, wanted: wanted, executable: executable, progress: progress)
        let theirs = try await measureThroughHTTP(.peer, engine: engine, wanted: wanted, executable: executable, progress: progress)
        func share(_ seconds: Double) -> Double { seconds / renewalPeriod.seconds * 100 }
        let postgres = if case .postgres = engine { true } else { false }
        let servers = postgres ? "\(Self.postgresReplicas) allocators and the database server" : "the allocator process"
        let limit = engine.renewalCoreLimit
        let renewCPU = share(ours.renewCPUSeconds)
        let acquireTarget = postgres ? nil : ours.acquire.latencies.p99 < 10
        return [
            Row(engine: engine.description, path: "http", operation: "acquire (\(slicesPerHost) slices)", load: "\(clients) clients",
                ours: ours.acquire, theirs: theirs.acquire, cpu: nil, generator: nil, peerCPU: nil,
                target: postgres ? "-" : "p99 < 10 ms", meetsTarget: acquireTarget),
            Row(engine: engine.description, path: "http", operation: "renew all of a host's leases", load: pacedLoad,
                ours: ours.renew, theirs: theirs.renew, cpu: renewCPU, generator: nil, peerCPU: share(theirs.renewCPUSeconds),
                idle: ours.idleCores * 100, peerIdle: theirs.idleCores * 100,
                target: "\(hosts) hosts every \(periodText) s < \(Int(limit))% of a core (\(servers))",
                meetsTarget: renewCPU < limit),
            Row(engine: engine.description, path: "http", operation: "release one lease", load: "\(clients) clients",
                ours: ours.release, theirs: theirs.release, cpu: nil, generator: nil, peerCPU: nil, target: "-", meetsTarget: nil),
        ]
    }

    private func measureThroughHTTP(
        _ contender: Contender, engine: Engine, wanted: [Traits], executable: String, progress: @Sendable (String) -> Void
    ) async throws -> HTTPMeasured {
        let name = contender == .ours ? "\(engine), http: portslice" : "\(engine), http: the first-fit peer"
        let work: String = switch engine {
        case .sqlite(let directory): "\(directory)/http-\(contender)"
        case .postgres: FileManager.default.temporaryDirectory.appendingPathComponent("portslice-bench-http-\(contender)-\(UUID().uuidString)").path
        }
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        var database: (url: String, name: String, drop: @Sendable () async throws -> Void)?
        var servers: [ServerProcess] = []
        let client = LoadClient(connectionsPerServer: Self.renewalConnections)
        func cleanUp() async {
            for server in servers { server.stop() }
            try? await client.shutdown()
            try? await database?.drop()
            try? FileManager.default.removeItem(atPath: work)
        }
        do {
            if case .postgres(let url) = engine { database = try await Self.createScratchDatabase(beside: url, label: "http_\(contender)") }
            if contender == .peer {
                try await FirstFitPeer.createSchema(database.map { .postgres(url: $0.url) } ?? .sqlite(path: "\(work)/peer.sqlite"))
            }
            let adminToken = (0..<4).map { _ in String(UInt64.random(in: 0...UInt64.max), radix: 16) }.joined()
                .padding(toLength: 64, withPad: "0", startingAt: 0)
            let replicas = database == nil ? 1 : Self.postgresReplicas
            progress("\(name): starting \(replicas) server process(es)")
            for replica in 0..<replicas {
                let arguments = switch contender {
                case .ours: ["serve", "--data-dir", "\(work)/serve-\(replica)", "--listen", "127.0.0.1:0"] + (database.map { ["--database", $0.url] } ?? [])
                case .peer: ["bench", "alloc-peer", "--listen", "127.0.0.1:0"] + (database.map { ["--postgres", $0.url] } ?? ["--sqlite", "\(work)/peer.sqlite"])
                }
                servers.append(try await ServerProcess.start(
                    executable, arguments, environment: ["PORTSLICE_ADMIN_TOKEN": adminToken], log: "\(work)/server-\(replica).log",
                    name: "\(name) server \(replica)"))
            }
            let measured = try await measureThroughHTTP(
                name: name, bases: servers.map(\.base), adminToken: adminToken, wanted: wanted, client: client,
                load: HTTPRequestLoad(servers: servers.map { Endpoint(IPv4Address(127, 0, 0, 1), UInt16($0.port)) }, clients: clients),
                cpu: { [pids = servers.map(\.pid), database = database?.name] in
                    (pids.map { ProcessCPU.seconds(of: $0) ?? 0 }.reduce(0, +), database.map { ProcessCPU.postgres(database: $0) } ?? [:])
                },
                progress: progress)
            for server in servers where ProcessCPU.seconds(of: server.pid) == nil {
                throw BenchmarkFailure("\(server.name) exited during the run; see its log")
            }
            await cleanUp()
            return measured
        } catch {
            await cleanUp()
            throw error
        }
    }

    /// Connections per server the load may open: enough that a renewal round never waits for
    /// one (about rate x answer time: 1,000/s x up to 150 ms).
    static let renewalConnections = 512

    private func measureThroughHTTP(
        name: String, bases: [String], adminToken: String, wanted: [Traits], client: LoadClient, load: HTTPRequestLoad,
        cpu: @escaping () -> (servers: Double, postgres: [Int32: Double]), progress: @Sendable (String) -> Void
    ) async throws -> HTTPMeasured {
        var measured = HTTPMeasured()
        let slicesPerHost = self.slicesPerHost, timeToLive = Int64(Self.timeToLive.components.seconds)

        // Registration through the allocator's own client, which both sides must understand.
        let admin = try AllocatorClient(base: bases[0], token: adminToken)
        progress("\(name): adding \(addresses) addresses and \(hosts) hosts (not measured)")
        _ = try await Self.closedLoop(count: addresses, clients: clients) { index in
            try await admin.addAddress(NewAddress(
                address: Self.address(index), traits: Self.classes[index % Self.classes.count], range: Self.plan.range, sliceSize: 2048))
        }
        let tokens = try await Self.closedLoop(count: hosts, clients: clients) { index in
            try await admin.addHost(NewHost(name: "host\(index)")).token
        }

        progress("\(name): \(clients) clients acquire \(slicesPerHost) slices for each of \(hosts) hosts")
        // Written out before the clock starts, as the releases are.
        let acquires = try (0..<hosts).map { index in
            try load.request(.acquire, to: index % load.servers.count, token: tokens[index],
                             body: AcquireRequest(count: slicesPerHost, ttlSeconds: timeToLive, traits: wanted[index]))
        }
        let acquired = try await load.run(acquires, expect: 201)
        let leaseIDs = try acquired.bodies.enumerated().map { index, body in
            let leases = try JSONDecoder().decode(LeaseList.self, from: Data(body)).leases
            guard leases.count == slicesPerHost else { throw BenchmarkFailure("host\(index) got \(leases.count) slices") }
            return leases[0].id
        }
        measured.acquire = acquired.timings
        try writeRequestTimes(acquired.timings, name: name, request: "acquire")

        progress("\(name): the servers' CPU with no requests, \(Self.idleSample)")
        func spent(_ before: (servers: Double, postgres: [Int32: Double]), _ after: (servers: Double, postgres: [Int32: Double])) -> Double {
            after.servers - before.servers + ProcessCPU.spent(from: before.postgres, to: after.postgres)
        }
        let idleBefore = cpu()
        try await Task.sleep(for: Self.idleSample)
        measured.idleCores = spent(idleBefore, cpu()) / Self.idleSample.seconds

        progress("\(name): every host renews all its leases once, spread over \(renewalPeriod)")
        let before = cpu()
        measured.renew = try await pacedRound { index in
            let leases = try await client.call(
                .renewAll, base: bases[index % bases.count], token: tokens[index], body: RenewRequest(ttlSeconds: timeToLive),
                expect: 200, as: LeaseList.self
            ).leases
            guard leases.count == slicesPerHost else { throw BenchmarkFailure("host\(index) renewed \(leases.count) leases") }
        }
        measured.renewCPUSeconds = spent(before, cpu())

        progress("\(name): \(clients) clients release one lease of each host")
        let releases = try (0..<hosts).map { index in
            try load.request(.release, ["id": String(leaseIDs[index])], to: index % load.servers.count, token: tokens[index], body: AllocatorClient.Empty?.none)
        }
        let released = try await load.run(releases, expect: 204)
        measured.release = released.timings
        try writeRequestTimes(released.timings, name: name, request: "release")
        return measured
    }

    /// With `requestTimesDirectory`, writes `timings` there as CSV, one request a line in the
    /// order sent: milliseconds from the start when it was sent, and how long it took.
    private func writeRequestTimes(_ timings: Timings, name: String, request: String) throws {
        guard let requestTimesDirectory else { return }
        let file = "\(requestTimesDirectory)/\(String(name.split { !$0.isLetter && !$0.isNumber }.joined(separator: "-")))-\(request).csv"
        let lines = zip(timings.sent, timings.times).sorted { $0.0 < $1.0 }.map { sent, time in
            String(format: "%.3f,%.3f", sent.seconds * 1000, time.seconds * 1000)
        }
        do {
            try (["sent_ms,time_ms"] + lines).joined(separator: "\n").appending("\n").write(toFile: file, atomically: true, encoding: .utf8)
        } catch {
            throw BenchmarkFailure("cannot write the request times to \(file): \(error.localizedDescription)")
        }
    }

    /// `count` requests from `clients` concurrent clients, each sending its next request when
    /// its last is answered; every request's result, in order. For what is not measured.
    static func closedLoop<T: Sendable>(count: Int, clients: Int, _ request: @escaping @Sendable (Int) async throws -> T) async throws -> [T] {
        let next = Counter()
        return try await withThrowingTaskGroup(of: [(index: Int, result: T)].self) { group in
            for _ in 0..<max(1, min(clients, count)) {
                group.addTask {
                    var done: [(index: Int, result: T)] = []
                    while case let index = next.take(), index < count { done.append((index, try await request(index))) }
                    return done
                }
            }
            return try await group.reduce(into: []) { $0 += $1 }
        }.sorted { $0.index < $1.index }.map(\.result)
    }
}

/// Hands out 0, 1, 2, ... to concurrent takers.
final class Counter: Sendable {
    private let value = Mutex(0)

    func take() -> Int {
        value.withLock { value in
            defer { value += 1 }
            return value
        }
    }
}
