import Foundation
import Logging
import PortSliceCore
import PortSliceTestSupport
import PostgresNIO
import Testing
@testable import PortSliceStore

/// Where a test's store lives: SQLite in memory (or a file), or a fresh PostgreSQL database.
enum Engine: String, Sendable, CustomTestStringConvertible {
    case sqlite, postgres

    var testDescription: String { rawValue }

    /// Set by .ci/run, which starts a PostgreSQL server for the tests.
    static let postgresURL = ProcessInfo.processInfo.environment["PORTSLICE_TEST_POSTGRES_URL"]
    static let postgresMissing: Comment = "PORTSLICE_TEST_POSTGRES_URL is not set; .ci/run starts a PostgreSQL server and sets it"

    /// A new, empty store and the way to reopen it (a restarted allocator, or a second replica).
    /// Renewals are made at once unless a test asks for a window to gather them in.
    func makeStore(quarantine: Duration = .seconds(240), renewalWindow: Duration = .zero) async throws -> (store: SQLSliceStore, reopen: @Sendable (Duration) async throws -> SQLSliceStore) {
        switch self {
        case .sqlite:
            let path = ScratchSpace.path("portslice-store", suffix: ".sqlite")
            return (try await SQLSliceStore.openSQLite(path: path, quarantine: quarantine, renewalWindow: renewalWindow),
                    { try await SQLSliceStore.openSQLite(path: path, quarantine: $0, renewalWindow: renewalWindow) })
        case .postgres:
            let (url, _) = try await ScratchSpace.database(on: try #require(Self.postgresURL))
            // These tests check the rules, not outages: a server busy with every other test may
            // take longer than an allocator's deadline.
            return (try await SQLSliceStore.openPostgres(url: url, quarantine: quarantine, renewalWindow: renewalWindow, operationTimeout: .seconds(30)),
                    { try await SQLSliceStore.openPostgres(url: url, quarantine: $0, renewalWindow: renewalWindow, operationTimeout: .seconds(30)) })
        }
    }

    /// Runs one statement alone on the database `url` names, past the store.
    static func administer(_ url: String, _ statement: String) async throws {
        let components = try #require(URLComponents(string: url))
        let configuration = PostgresConnection.Configuration(
            host: components.host ?? "127.0.0.1", port: components.port ?? 5432, username: components.user ?? "postgres",
            password: components.password, database: String(components.path.dropFirst()), tls: .disable)
        let logger = Logger(label: "portslice.tests")
        let connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
        do {
            try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger)
        } catch {
            try await connection.close()
            throw error
        }
        try await connection.close()
    }
}

@Suite("SQLite store against the allocator model")
struct SQLiteStoreTests {
    @Test func agreesWithTheModel() async throws { try await StoreConformance.agreesWithTheModelOverRandomSequences(.sqlite) }
    @Test func removeWaitsForLeasesAndQuarantine() async throws { try await StoreConformance.removeWaitsForLeasesAndQuarantine(.sqlite) }
    @Test func keepsLeasesAcrossRestarts() async throws { try await StoreConformance.keepsLeasesAcrossRestartsAndMigratesOnce(.sqlite) }
    @Test func hostsAndTokens() async throws { try await StoreConformance.hostsAndTokens(.sqlite) }
    @Test func sliceTableVersions() async throws { try await StoreConformance.sliceTableVersions(.sqlite) }
    @Test func renewalsMadeTogether() async throws { try await StoreConformance.renewalsMadeTogether(.sqlite) }
    @Test func expiryBoundFollowsEarlierExpiries() async throws { try await StoreConformance.expiryBoundFollowsEarlierExpiries(.sqlite) }
    @Test func edgesRotationAndRemoval() async throws { try await StoreConformance.edgesRotationAndRemoval(.sqlite) }
    @Test func versionFeedFollowsCommits() async throws { try await StoreConformance.versionFeedFollowsCommits(.sqlite) }
    @Test func prefixLeases() async throws { try await StoreConformance.prefixLeases(.sqlite) }
}

@Suite("PostgreSQL store against the allocator model", .enabled(if: Engine.postgresURL != nil, Engine.postgresMissing))
struct PostgresStoreTests {
    @Test func agreesWithTheModel() async throws { try await StoreConformance.agreesWithTheModelOverRandomSequences(.postgres) }
    @Test func removeWaitsForLeasesAndQuarantine() async throws { try await StoreConformance.removeWaitsForLeasesAndQuarantine(.postgres) }
    @Test func keepsLeasesAcrossRestarts() async throws { try await StoreConformance.keepsLeasesAcrossRestartsAndMigratesOnce(.postgres) }
    @Test func hostsAndTokens() async throws { try await StoreConformance.hostsAndTokens(.postgres) }
    @Test func sliceTableVersions() async throws { try await StoreConformance.sliceTableVersions(.postgres) }
    @Test func renewalsMadeTogether() async throws { try await StoreConformance.renewalsMadeTogether(.postgres) }
    @Test func expiryBoundFollowsEarlierExpiries() async throws { try await StoreConformance.expiryBoundFollowsEarlierExpiries(.postgres) }
    @Test func edgesRotationAndRemoval() async throws { try await StoreConformance.edgesRotationAndRemoval(.postgres) }
    @Test func versionFeedFollowsCommits() async throws { try await StoreConformance.versionFeedFollowsCommits(.postgres) }
    @Test func prefixLeases() async throws { try await StoreConformance.prefixLeases(.postgres) }

    /// The database itself refuses two slices of one address that share a port, whatever
    /// inserts them: a row written past the store (here by hand) is refused by the exclusion
    /// constraint, while the same row with ports of its own is accepted.
    @Test func exclusionConstraintRefusesOverlappingPorts() async throws {
        let (url, _) = try await ScratchSpace.database(on: try #require(Engine.postgresURL))
        let store = try await SQLSliceStore.openPostgres(url: url, operationTimeout: .seconds(30))
        let address = IPv4Address(203, 0, 113, 10)
        let plan = try SlicePlan(range: try PortRange(20000, 23999), layout: .sliceCount(4))
        try await store.add(EgressAddress(address: address, traits: .unknown), plan: plan)
        try await store.close()
        let overlapping = "INSERT INTO slices (address, slice_index, ports, state, port_ranges) VALUES (\(address.bits), 99, '20500-20600', 'free', '{[20500,20601)}')"
        let separate = "INSERT INTO slices (address, slice_index, ports, state, port_ranges) VALUES (\(address.bits), 98, '30000-30100', 'free', '{[30000,30101)}')"
        await #expect {
            try await Engine.administer(url, overlapping)
        } throws: { error in
            String(reflecting: error).contains("slices_address_port_ranges_excl")
        }
        try await Engine.administer(url, separate)
    }
}

/// The store conformance suite, run against each engine: the same random sequences of
/// requests and clock jumps must give the same answers, errors, leases and log as the model.
enum StoreConformance {
    static let start = Moment(milliseconds: 1_800_000_000_000)

    private static func traits(_ country: String, _ category: PortSliceCore.Category = .residential) -> Traits {
        try! Traits(country: try! CountryCode(parsing: country), category: category)
    }

    private static let pool: [(EgressAddress, SlicePlan)] = {
        let plan = try! SlicePlan(range: try! PortRange(20000, 23999), layout: .sliceCount(4))
        return [
            (EgressAddress(address: IPv4Address(203, 0, 113, 10), traits: traits("US")), plan),
            (EgressAddress(address: IPv4Address(203, 0, 113, 11), traits: traits("US")), plan),
            (EgressAddress(address: IPv4Address(203, 0, 113, 12), traits: traits("DE", .hosting)), plan),
        ]
    }()

    /// IPv6 pool prefixes small enough to run out: four /64s for US residential, two for DE hosting.
    static let prefixPool: [PoolPrefix] = [
        try! PoolPrefix(prefix: try! IPv6Prefix(parsing: "2001:db8:10::/62"), traits: traits("US")),
        try! PoolPrefix(prefix: try! IPv6Prefix(parsing: "2001:db8:20::/63"), traits: traits("DE", .hosting)),
    ]

    /// What one request gave: the leases, or the error.
    enum Outcome: Equatable {
        case leases([Lease])
        case prefixes([PrefixLease])
        case held(HeldLeases)
        case done
        case failed(AllocationError)
    }

    static func outcome(_ body: () async throws -> Outcome) async throws -> Outcome {
        do { return try await body() } catch let error as AllocationError { return .failed(error) }
    }

    static func outcome(_ body: () throws -> Outcome) throws -> Outcome {
        do { return try body() } catch let error as AllocationError { return .failed(error) }
    }

    static func agreesWithTheModelOverRandomSequences(_ engine: Engine) async throws {
        var random = SplitMix64(seed: 7422)
        for round in 0..<(engine == .sqlite ? 6 : 3) {
            let store = try await engine.makeStore(quarantine: .seconds(120)).store
            var model = try AllocatorModel(quarantine: .seconds(120))
            for (egress, plan) in Self.pool {
                try model.add(egress, plan: plan)
                try await store.add(egress, plan: plan)
            }
            for prefix in Self.prefixPool {
                try model.add(prefix)
                try await store.add(prefix)
            }
            var now = Self.start
            let hosts = ["h1", "h2", "h3", "h4"]
            for step in 0..<150 {
                now = now + .milliseconds(Int64.random(in: 0...40_000, using: &random))
                // Usually a live lease and its holder, sometimes any id and any host.
                let live = Bool.random(using: &random) ? model.allLeases.randomElement(using: &random) : nil
                let host = live?.host ?? hosts.randomElement(using: &random)!
                let id = live?.id ?? Int64.random(in: 1...20, using: &random)
                let livePrefix = Bool.random(using: &random) ? model.allPrefixLeases.randomElement(using: &random) : nil
                let wanted = Self.traits(Bool.random(using: &random) ? "US" : "DE", Bool.random(using: &random) ? .residential : .hosting)
                let count = Int.random(in: 0..<10, using: &random) == 0 ? 0 : Int.random(in: 1...3, using: &random)
                let ttl = Duration.seconds(Int64.random(in: 5...90, using: &random))
                let expected: Outcome, actual: Outcome
                switch Int.random(in: 0..<17, using: &random) {
                case 0..<5:
                    expected = try outcome { .leases(try model.acquire(host: host, traits: wanted, count: count, timeToLive: ttl, now: now)) }
                    actual = try await outcome { .leases(try await store.acquire(host: host, traits: wanted, count: count, timeToLive: ttl, now: now)) }
                case 5..<7:
                    expected = try outcome { .leases([try model.renew(id, host: host, timeToLive: .seconds(60), now: now)]) }
                    actual = try await outcome { .leases([try await store.renew(id, host: host, timeToLive: .seconds(60), now: now)]) }
                case 7:
                    expected = try outcome { .held(try model.renewAll(host: host, timeToLive: .seconds(45), now: now)) }
                    actual = try await outcome { .held(try await store.renewAll(host: host, timeToLive: .seconds(45), now: now)) }
                case 8..<10:
                    expected = try outcome { try model.release(id, host: host, now: now); return .done }
                    actual = try await outcome { try await store.release(id, host: host, now: now); return .done }
                case 10 where step > 120:  // draining early would leave nothing to lease
                    if Bool.random(using: &random) {
                        let address = Self.pool.randomElement(using: &random)!.0.address
                        expected = try outcome { try model.drain(address, now: now); return .done }
                        actual = try await outcome { try await store.drain(address, now: now); return .done }
                    } else {
                        let prefix = Self.prefixPool.randomElement(using: &random)!.prefix
                        expected = try outcome { try model.drain(prefix, now: now); return .done }
                        actual = try await outcome { try await store.drain(prefix, now: now); return .done }
                    }
                case 11..<14:
                    expected = try outcome { .prefixes(try model.acquirePrefixes(host: host, traits: wanted, count: count, timeToLive: ttl, now: now)) }
                    actual = try await outcome { .prefixes(try await store.acquirePrefixes(host: host, traits: wanted, count: count, timeToLive: ttl, now: now)) }
                case 14..<16:
                    let prefixHost = livePrefix?.host ?? host, prefixID = livePrefix?.id ?? Int64.random(in: 1...20, using: &random)
                    expected = try outcome { try model.releasePrefix(prefixID, host: prefixHost, now: now); return .done }
                    actual = try await outcome { try await store.releasePrefix(prefixID, host: prefixHost, now: now); return .done }
                default:
                    model.advance(to: now)
                    try await store.advance(to: now)
                    expected = .done
                    actual = .done
                }
                #expect(actual == expected, "round \(round) step \(step)")
                model.advance(to: now)
                try await store.advance(to: now)
                #expect(try await store.allLeases() == model.allLeases, "round \(round) step \(step)")
                #expect(try await store.allPrefixLeases() == model.allPrefixLeases, "round \(round) step \(step)")
                #expect(try await store.sliceTable().prefixes == model.prefixEntries, "round \(round) step \(step)")
                let probe = Self.pool.randomElement(using: &random)!.0.address
                let port = UInt16.random(in: 20000...23999, using: &random)
                let moment = Moment(milliseconds: Int64.random(in: Self.start.milliseconds...now.milliseconds, using: &random))
                #expect(try await store.who(address: probe, port: port, at: moment) == model.who(address: probe, port: port, at: moment))
                // An address in one of the pool prefixes' first four /64s.
                let inPrefix = IPv6Address(bits: Self.prefixPool.randomElement(using: &random)!.prefix.network.bits
                    | UInt128(Int.random(in: 0...3, using: &random)) << 64 | UInt128(UInt64.random(in: 0...UInt64.max, using: &random)))
                #expect(try await store.who(address: inPrefix, at: moment) == model.who(address: inPrefix, at: moment))
                try await expectClassCountsKept(store, "round \(round) step \(step)")
            }
            try await store.close()
        }
    }

    /// The free slices kept per trait class (which placement starts from) are the free slices
    /// of each class's addresses, counted. PostgreSQL only: on SQLite placement reads the free
    /// slices kept in memory, which every acquire of these tests checks against the model.
    static func expectClassCountsKept(_ store: SQLSliceStore, _ comment: Comment) async throws {
        guard store.connection.dialect == .postgres else { return }
        func lines(_ sql: String) async throws -> [String] {
            try await store.withDatabase { try await store.query(sql) }.map { "\($0.text("traits") ?? "?") \($0.integer("free") ?? -1)" }
        }
        let kept = try await lines("SELECT traits, free FROM class_free_counts WHERE free > 0 ORDER BY traits")
        let counted = try await lines(
            """
            SELECT a.traits AS traits, COUNT(*) AS free FROM slices s JOIN addresses a ON a.address = s.address
            WHERE s.state = 'free' GROUP BY a.traits ORDER BY a.traits
            """)
        #expect(kept == counted, comment)
    }

    static func removeWaitsForLeasesAndQuarantine(_ engine: Engine) async throws {
        let store = try await engine.makeStore().store
        let (egress, plan) = Self.pool[2]
        try await store.add(egress, plan: plan)
        let lease = try #require(try await store.acquire(host: "h1", traits: Self.traits("DE", .hosting), count: 1, timeToLive: .seconds(60), now: Self.start).first)
        await #expect(throws: AllocationError.addressInUse(egress.address, leases: 1, quarantined: 0)) {
            try await store.remove(egress.address, now: Self.start)
        }
        try await store.release(lease.id, host: "h1", now: Self.start + .seconds(1))
        await #expect(throws: AllocationError.addressInUse(egress.address, leases: 0, quarantined: 1)) {
            try await store.remove(egress.address, now: Self.start + .seconds(2))
        }
        try await store.remove(egress.address, now: Self.start + .seconds(241))
        try await expectClassCountsKept(store, "after the address is removed")
        if engine == .postgres {
            #expect(try await store.withDatabase { try await store.query("SELECT free FROM class_free_counts") }.map { $0.integer("free") } == [0])
        }
        // The log keeps the history after the address is gone.
        #expect(try await store.who(address: egress.address, port: lease.ports.runs[0].lower, at: Self.start).map(\.leaseID) == [lease.id])
        await #expect(throws: AllocationError.unknownAddress(egress.address)) { try await store.drain(egress.address, now: Self.start) }
        try await store.close()
    }

    /// Renewals from several hosts within one window are made by one statement per lease time;
    /// each caller still gets exactly its own live leases, as the model would answer it.
    static func renewalsMadeTogether(_ engine: Engine) async throws {
        let batching = try await engine.makeStore(renewalWindow: .milliseconds(200)).store
        var model = try AllocatorModel(quarantine: .seconds(240))
        for (egress, plan) in Self.pool {
            try model.add(egress, plan: plan)
            try await batching.add(egress, plan: plan)
        }
        try model.add(Self.prefixPool[0])
        try await batching.add(Self.prefixPool[0])
        let hosts = ["h1", "h2", "h3", "h4"]
        for (index, host) in hosts.dropLast().enumerated() {
            let ttl = Duration.seconds(index == 0 ? 20 : 60)  // h1's leases will have expired
            let expected = try model.acquire(host: host, traits: Self.traits("US"), count: index + 1, timeToLive: ttl, now: Self.start)
            #expect(try await batching.acquire(host: host, traits: Self.traits("US"), count: index + 1, timeToLive: ttl, now: Self.start) == expected)
            let prefixes = try model.acquirePrefixes(host: host, traits: Self.traits("US"), timeToLive: ttl, now: Self.start)
            #expect(try await batching.acquirePrefixes(host: host, traits: Self.traits("US"), count: 1, timeToLive: ttl, now: Self.start) == prefixes)
        }
        let now = Self.start + .seconds(30)
        let statementsBefore = batching.statementCount
        let answers = try await withThrowingTaskGroup(of: (String, Duration, HeldLeases).self) { group in
            for (index, host) in hosts.enumerated() {
                let ttl = Duration.seconds(index % 2 == 0 ? 90 : 120)  // two lease times: two statements for slices
                group.addTask { (host, ttl, try await batching.renewAll(host: host, timeToLive: ttl, now: now)) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        for (host, ttl, held) in answers {
            #expect(held == (try model.renewAll(host: host, timeToLive: ttl, now: now)), "\(host)")
        }
        #expect(batching.statementCount - statementsBefore == 5,
                "four renewals in one window, two lease times: for each a statement for slices and one for prefixes, and one keeping the expiry bound")
        #expect(answers.first { $0.0 == "h3" }?.2.slices.count == 3)
        #expect(answers.first { $0.0 == "h2" }?.2.prefixes.map(\.expires) == [now + .seconds(120)])
        #expect(answers.first { $0.0 == "h1" }?.2 == HeldLeases(), "an expired lease is not renewed")
        #expect(try await batching.allLeases() == model.allLeases)
        #expect(try await batching.allPrefixLeases() == model.allPrefixLeases)
        try await batching.close()
    }

    /// The table shows every slice and its holder, and its version grows exactly when holders
    /// change: a lease, a release, an expiry, an address added or removed (not a renewal).
    /// Leased slices are found due by a kept bound rather than an index on their expiry: a
    /// lease given an expiry earlier than the bound (acquired or renewed for less time than
    /// the others have left) still ends at its own expiry, and a renewal of every lease
    /// moves the bound on.
    static func expiryBoundFollowsEarlierExpiries(_ engine: Engine) async throws {
        let store = try await engine.makeStore().store
        for (egress, plan) in Self.pool { try await store.add(egress, plan: plan) }
        func bound() async throws -> Moment? {
            try await store.withDatabase { try await store.query("SELECT due FROM slice_expiry").first?.integer("due").map(Moment.init(milliseconds:)) }
        }
        #expect(try await bound() == nil, "no leased slice, no bound")
        let long = try #require(try await store.acquire(host: "h1", traits: Self.traits("US"), count: 1, timeToLive: .seconds(3600), now: Self.start).first)
        #expect(try await bound() == Self.start + .seconds(3600))
        let short = try #require(try await store.acquire(host: "h2", traits: Self.traits("US"), count: 1, timeToLive: .seconds(10), now: Self.start + .seconds(1)).first)
        #expect(try await bound() == Self.start + .seconds(11), "an acquire for less time lowers the bound")
        try await store.advance(to: Self.start + .seconds(10))
        #expect(try await store.allLeases().map(\.id) == [long.id, short.id], "not yet due")
        try await store.advance(to: Self.start + .seconds(11))
        #expect(try await store.allLeases().map(\.id) == [long.id], "ended at its own expiry")
        #expect(try await bound() == Self.start + .seconds(3600), "computed again once reached")
        let renewed = try await store.renewAll(host: "h1", timeToLive: .seconds(20), now: Self.start + .seconds(100))
        #expect(renewed.slices.map(\.expires) == [Self.start + .seconds(120)])
        #expect(try await bound() == Self.start + .seconds(120), "a renewal for less time lowers the bound")
        _ = try await store.renew(long.id, host: "h1", timeToLive: .seconds(10), now: Self.start + .seconds(105))
        #expect(try await bound() == Self.start + .seconds(115), "so does a renewal of one lease")
        _ = try await store.renew(long.id, host: "h1", timeToLive: .seconds(600), now: Self.start + .seconds(110))
        try await store.advance(to: Self.start + .seconds(115))
        #expect(try await store.allLeases().map(\.expires) == [Self.start + .seconds(710)], "renewed for longer: not ended at the old bound")
        #expect(try await bound() == Self.start + .seconds(710), "the bound moved on to the renewed expiry")
        try await store.advance(to: Self.start + .seconds(710))
        #expect(try await store.allLeases().isEmpty)
        #expect(try await bound() == nil)
        #expect(try await store.who(address: long.slice.address, port: long.ports.runs[0].lower, at: Self.start + .seconds(709)).map(\.leaseID) == [long.id])
        try await store.close()
    }

    static func sliceTableVersions(_ engine: Engine) async throws {
        let store = try await engine.makeStore().store
        let initial = try await store.tableVersion()
        try await store.add(Self.pool[0].0, plan: Self.pool[0].1)
        let afterAdd = try await store.tableVersion()
        #expect(afterAdd > initial)
        let lease = try #require(try await store.acquire(host: "h1", traits: Self.traits("US"), count: 1, timeToLive: .seconds(60), now: Self.start).first)
        let table = try await store.sliceTable()
        #expect(table.version > afterAdd)
        #expect(table.slices.count == 4)
        #expect(table.slices.filter { $0.host == "h1" }.map(\.index) == [lease.slice.index])
        #expect(table.slices.first { $0.index == lease.slice.index }?.state == .leased)
        _ = try await store.renew(lease.id, host: "h1", timeToLive: .seconds(60), now: Self.start + .seconds(10))
        #expect(try await store.tableVersion() == table.version, "a renewal changes no holder")
        try await store.advance(to: Self.start + .seconds(71))
        let expired = try await store.sliceTable()
        #expect(expired.version > table.version)
        #expect(expired.slices.first { $0.index == lease.slice.index }?.state == .quarantined)
        #expect(expired.slices.allSatisfy { $0.host == nil })
        try await store.advance(to: Self.start + .seconds(72))
        #expect(try await store.tableVersion() == expired.version, "nothing changed hands")
        try await store.close()
    }

    /// A token is shown once, stored as a hash, and only that token names its host.
    static func hostsAndTokens(_ engine: Engine) async throws {
        let (store, reopen) = try await engine.makeStore()
        let token = try await store.addHost("edge-1.example", labels: ["rack": "a"], now: Self.start)
        #expect(token.hasPrefix("edge-1.example."))
        #expect(try await store.principal(authenticatedBy: token) == .host("edge-1.example"))
        var tampered = Array(token)
        tampered[tampered.count - 1] = tampered.last == "0" ? "1" : "0"
        for wrong in [String(tampered), "edge-1.example", "edge-2.example.\(token.split(separator: ".").last!)", "", "no dots", String(token.dropLast())] {
            #expect(try await store.principal(authenticatedBy: wrong) == nil, "\(wrong)")
        }
        await #expect(throws: AllocationError.duplicateHost("edge-1.example")) {
            _ = try await store.addHost("edge-1.example", labels: [:], now: Self.start)
        }
        for bad in ["", "Edge", "a b", String(repeating: "x", count: 64), "ümlaut"] {
            await #expect(throws: AllocationError.badHostName(bad)) { _ = try await store.addHost(bad, labels: [:], now: Self.start) }
        }
        try await store.close()
        // The token still works after a restart.
        let again = try await reopen(.seconds(240))
        #expect(try await again.principal(authenticatedBy: token) == .host("edge-1.example"))
        try await again.close()
    }

    /// Edges have tokens of their own; rotating a token ends the old one at once; removing a
    /// host ends its leases now (their slices quarantined, the log closed) and its token.
    static func edgesRotationAndRemoval(_ engine: Engine) async throws {
        let store = try await engine.makeStore().store
        for (egress, plan) in Self.pool { try await store.add(egress, plan: plan) }
        let edgeToken = try await store.addEdge("router-1", now: Self.start)
        #expect(edgeToken.hasPrefix("router-1."))
        #expect(try await store.principal(authenticatedBy: edgeToken) == .edge("router-1"))
        await #expect(throws: AllocationError.duplicateEdge("router-1")) { _ = try await store.addEdge("router-1", now: Self.start) }
        // A host may share an edge's name; each token names its own.
        let hostToken = try await store.addHost("router-1", labels: [:], now: Self.start)
        #expect(try await store.principal(authenticatedBy: hostToken) == .host("router-1"))
        #expect(try await store.principal(authenticatedBy: edgeToken) == .edge("router-1"))

        // A token verified once is known without the database while changes are heard (on
        // SQLite always; on PostgreSQL while the store's listener runs, which it does not here).
        let statements = store.statementCount
        #expect(try await store.principal(authenticatedBy: edgeToken) == .edge("router-1"))
        #expect(store.statementCount - statements == (engine == .sqlite ? 0 : 1))

        let rotatedEdge = try await store.rotateToken(of: .edge("router-1"))
        #expect(rotatedEdge != edgeToken)
        #expect(try await store.principal(authenticatedBy: edgeToken) == nil, "the old edge token stops at once")
        #expect(try await store.principal(authenticatedBy: rotatedEdge) == .edge("router-1"))
        await #expect(throws: AllocationError.unknownEdge("router-9")) { _ = try await store.rotateToken(of: .edge("router-9")) }
        await #expect(throws: AllocationError.unknownHost("h9")) { _ = try await store.rotateToken(of: .host("h9")) }

        let leases = try await store.acquire(host: "router-1", traits: Self.traits("US"), count: 2, timeToLive: .seconds(600), now: Self.start)
        let before = try await store.tableVersion()
        try await store.removeHost("router-1", now: Self.start + .seconds(5))
        #expect(try await store.principal(authenticatedBy: hostToken) == nil)
        #expect(try await store.allLeases().isEmpty)
        let table = try await store.sliceTable()
        #expect(table.version > before)
        for lease in leases {
            let entry = try #require(table.slices.first { $0.address == lease.slice.address && $0.index == lease.slice.index })
            #expect(entry.state == .quarantined && entry.host == nil)
            let record = try #require(try await store.who(address: lease.slice.address, port: lease.ports.runs[0].lower, at: Self.start).first)
            #expect(record.end == Self.start + .seconds(5))
        }
        await #expect(throws: AllocationError.unknownHost("router-1")) { try await store.removeHost("router-1", now: Self.start) }
        try await store.removeEdge("router-1")
        #expect(try await store.principal(authenticatedBy: rotatedEdge) == nil)
        await #expect(throws: AllocationError.unknownEdge("router-1")) { try await store.removeEdge("router-1") }
        try await store.close()
    }

    /// A change is published to the version feed when it commits, so long polls wake without
    /// asking the database.
    static func versionFeedFollowsCommits(_ engine: Engine) async throws {
        let store = try await engine.makeStore().store
        #expect(store.versions.version == (try await store.tableVersion()))
        let statements = store.statementCount
        let waiting = Task { await store.versions.wait(newerThan: store.versions.version, timeout: .seconds(10)) }
        try await Task.sleep(for: .milliseconds(300))
        #expect(store.statementCount == statements, "waiting costs no statement")
        try await store.add(Self.pool[0].0, plan: Self.pool[0].1)
        let woken = await waiting.value
        #expect(woken == (try await store.tableVersion()))
        try await store.close()
    }

    /// What the random sequences do not pin down: the exact prefix a host gets, the slice
    /// table's prefix entries and versions, the log after a pool prefix is gone, host removal,
    /// and prefix leases surviving a restart.
    static func prefixLeases(_ engine: Engine) async throws {
        let (store, reopen) = try await engine.makeStore()
        let block = try IPv6Prefix(parsing: "2001:db8:10::/48")
        try await store.add(try PoolPrefix(prefix: block, traits: Self.traits("US")))
        await #expect(throws: AllocationError.duplicatePrefix(block)) { try await store.add(try PoolPrefix(prefix: block, traits: .unknown)) }
        let wide = try IPv6Prefix(parsing: "2001:db8::/32")
        await #expect(throws: AllocationError.overlappingPrefix(wide, existing: block)) { try await store.add(try PoolPrefix(prefix: wide, traits: .unknown)) }
        let before = try await store.tableVersion()
        let lease = try #require(try await store.acquirePrefixes(host: "h1", traits: Self.traits("US"), count: 1, timeToLive: .seconds(60), now: Self.start).first)
        #expect(lease.prefix == (try IPv6Prefix(parsing: "2001:db8:10:9026::/64")))
        let table = try await store.sliceTable()
        #expect(table.version > before)
        #expect(table.prefixes == [SliceTable.PrefixEntry(prefix: lease.prefix, state: .leased, host: "h1")])
        #expect(table.held(by: "h2").prefixes.isEmpty)
        let other = try #require(try await store.acquirePrefixes(host: "h2", traits: Self.traits("US"), count: 1, timeToLive: .seconds(600), now: Self.start).first)
        #expect(other.prefix == (try IPv6Prefix(parsing: "2001:db8:10:bc17::/64")))
        #expect(try await store.prefixLeases(of: "h2") == [other])

        let inside = try IPv6Address(parsing: "2001:db8:10:9026::1234")
        #expect(try await store.who(address: inside, at: Self.start + .seconds(5)).map(\.host) == ["h1"])
        #expect(try await store.who(address: try IPv6Address(parsing: "2001:db8:10:9025:ffff::"), at: Self.start + .seconds(5)).isEmpty)
        #expect(try await store.renewAll(host: "h1", timeToLive: .seconds(120), now: Self.start + .seconds(30)).prefixes.map(\.expires) == [Self.start + .seconds(150)])

        try await store.releasePrefix(lease.id, host: "h1", now: Self.start + .seconds(40))
        #expect(try await store.sliceTable().prefixes.first == SliceTable.PrefixEntry(prefix: lease.prefix, state: .quarantined, host: nil))
        await #expect(throws: AllocationError.leaseExpired(lease.id)) { try await store.releasePrefix(lease.id, host: "h1", now: Self.start + .seconds(41)) }
        #expect(try await store.who(address: inside, at: Self.start + .seconds(40)).isEmpty)
        let quarantined = try await store.tableVersion()
        try await store.advance(to: Self.start + .seconds(280))
        #expect(try await store.tableVersion() > quarantined, "a quarantine's end changes the table")
        #expect(try await store.sliceTable().prefixes.map(\.prefix) == [other.prefix])
        try await store.close()

        let again = try await reopen(.seconds(240))
        #expect(try await again.allPrefixLeases() == [other])
        _ = try await again.addHost("h2", labels: [:], now: Self.start)
        try await again.removeHost("h2", now: Self.start + .seconds(300))
        #expect(try await again.allPrefixLeases().isEmpty)
        try await again.drain(block, now: Self.start + .seconds(300))
        await #expect(throws: AllocationError.prefixInUse(block, leases: 0, quarantined: 1)) { try await again.remove(block, now: Self.start + .seconds(301)) }
        try await again.remove(block, now: Self.start + .seconds(541))
        #expect(try await again.prefixes().isEmpty)
        #expect(try await again.who(address: other.prefix.network, at: Self.start).map(\.leaseID) == [other.id], "the log keeps the history")
        try await again.close()
    }

    static func keepsLeasesAcrossRestartsAndMigratesOnce(_ engine: Engine) async throws {
        let (first, reopen) = try await engine.makeStore()
        for (egress, plan) in Self.pool { try await first.add(egress, plan: plan) }
        let leases = try await first.acquire(host: "h1", traits: Self.traits("US"), count: 3, timeToLive: .seconds(600), now: Self.start)
        try await first.close()
        let second = try await reopen(.seconds(240))
        #expect(try await second.allLeases() == leases)
        await #expect(throws: AllocationError.duplicateAddress(Self.pool[0].0.address)) {
            try await second.add(Self.pool[0].0, plan: Self.pool[0].1)
        }
        try await second.close()
        await #expect(throws: AllocationError.quarantineTooShort(seconds: 60)) { _ = try await reopen(.seconds(60)) }
    }
}
