import Foundation
import PortSliceCore
import PortSliceTestSupport
import Testing
@testable import PortSliceStore

/// Many acquires at once. On SQLite those that queue for the connection are made together, in
/// one transaction (see `SQLSliceStore.acquire`); each must come out exactly as if it had been
/// made alone, in the order the store took them.
@Suite("Acquires made together")
struct GroupCommitTests {
    static let start = Moment(milliseconds: 1_800_000_000_000)
    static let us = try! Traits(country: try! CountryCode(parsing: "US"), category: .residential)
    static let de = try! Traits(country: try! CountryCode(parsing: "DE"), category: .hosting)

    /// Two US residential addresses and one DE hosting address of 50 slices each.
    static let pool: [(EgressAddress, SlicePlan)] = {
        let plan = try! SlicePlan(range: try! PortRange(20000, 23999), layout: .sliceCount(50))
        return [
            (EgressAddress(address: IPv4Address(203, 0, 113, 10), traits: us), plan),
            (EgressAddress(address: IPv4Address(203, 0, 113, 11), traits: us), plan),
            (EgressAddress(address: IPv4Address(203, 0, 113, 12), traits: de), plan),
        ]
    }()
    static let slices = 150

    struct Request: Sendable {
        let host: String
        let traits: Traits
        let count: Int
    }

    /// `hosts` requests of 1 to 3 slices of either class (the last three of one slice, so
    /// whatever is left at the end is taken), by a seeded generator.
    static func requests(_ hosts: Int, seed: UInt64) -> [Request] {
        var random = SplitMix64(seed: seed)
        return (0..<hosts).map { index in
            Request(host: "h\(index)", traits: Bool.random(using: &random) ? us : de,
                    count: index >= hosts - 3 ? 1 : Int.random(in: 1...3, using: &random))
        }
    }

    /// A new SQLite file, and its path for a second connection.
    static func sqliteStore() async throws -> (store: SQLSliceStore, path: String) {
        let path = ScratchSpace.path("portslice-batch", suffix: ".sqlite")
        return (try await SQLSliceStore.openSQLite(path: path), path)
    }

    /// The pool in the store and the model, with `leased` slices taken by one host first (in
    /// acquires of at most 5), so the rush finds the pool nearly full.
    static func fill(_ store: SQLSliceStore, _ model: inout AllocatorModel, leaving free: Int) async throws {
        for (egress, plan) in pool {
            try model.add(egress, plan: plan)
            try await store.add(egress, plan: plan)
        }
        var leased = slices - free
        while leased > 0 {
            let count = min(leased, 5)
            let expected = try model.acquire(host: "early", traits: us, count: count, timeToLive: .seconds(600), now: start)
            #expect(try await store.acquire(host: "early", traits: us, count: count, timeToLive: .seconds(600), now: start) == expected)
            leased -= count
        }
    }

    /// Starts `requests` one after another while this test holds the store's connection, each
    /// queued before the next starts, so that the store takes them in this order; then lets
    /// go.
    static func acquireInOrder(_ store: SQLSliceStore, _ requests: [Request], now: Moment = start) async throws -> [Result<[Lease], any Error>] {
        try await withThrowingTaskGroup(of: (Int, Result<[Lease], any Error>).self) { group in
            try await store.gate.run {
                for (index, request) in requests.enumerated() {
                    group.addTask {
                        do {
                            return (index, .success(try await store.acquire(
                                host: request.host, traits: request.traits, count: request.count, timeToLive: .seconds(60), now: now)))
                        } catch {
                            return (index, .failure(error))
                        }
                    }
                    while store.queuedAcquires.withLock({ $0.count }) <= index { try await Task.sleep(for: .milliseconds(1)) }
                }
            }
            var results = [Result<[Lease], any Error>?](repeating: nil, count: requests.count)
            for try await (index, result) in group { results[index] = result }
            return results.map { $0! }
        }
    }

    /// The log's open records, as (lease id, host, slice), in lease order.
    static func openRecords(_ store: SQLSliceStore) async throws -> [String] {
        try await store.withDatabase {
            try await store.query("SELECT lease_id, host, address, slice_index FROM assignments WHERE ended IS NULL ORDER BY lease_id")
        }.map { row in "\(row.integer("lease_id") ?? 0) \(row.text("host") ?? "") \(SQLSliceStore.address(row)) \(row.integer("slice_index") ?? 0)" }
    }

    static func records(of leases: [Lease]) -> [String] {
        leases.map { "\($0.id) \($0.host) \($0.slice.address) \($0.slice.index)" }
    }

    /// Each result equals what `model` answers to the same request, applied in the same order.
    static func expectAsTheModel(_ model: inout AllocatorModel, _ requests: [Request], _ results: [Result<[Lease], any Error>]) {
        for (request, result) in zip(requests, results) {
            let expected = Result { () throws(AllocationError) -> [Lease] in
                try model.acquire(host: request.host, traits: request.traits, count: request.count, timeToLive: .seconds(60), now: Self.start)
            }
            switch (result, expected) {
            case (.success(let leases), .success(let wanted)): #expect(leases == wanted, "\(request.host)")
            case (.failure(let error), .failure(let wanted)): #expect(error as? AllocationError == wanted, "\(request.host)")
            default: Issue.record("\(request.host): \(result), the model: \(expected)")
            }
        }
    }

    /// What holds whatever the order: a granted request got all it asked for, a refused one
    /// got `noCapacity` and holds nothing, no slice is leased twice, the pool is exactly full,
    /// the log has one open record per lease, and the table version moved once per grant.
    static func checkInvariants(_ store: SQLSliceStore, _ requests: [Request], _ results: [Result<[Lease], any Error>],
                                free: Int, versionBefore: Int64) async throws {
        var granted = 0, grants: Int64 = 0
        for (request, result) in zip(requests, results) {
            switch result {
            case .success(let leases):
                #expect(leases.count == request.count && leases.allSatisfy { $0.host == request.host }, "\(request.host)")
                #expect(try await store.leases(of: request.host) == leases, "\(request.host)")
                granted += leases.count
                grants += 1
            case .failure(let error):
                guard case AllocationError.noCapacity(wanted: request.count, granted: _, traits: _)? = error as? AllocationError else {
                    Issue.record("\(request.host): \(error)")
                    continue
                }
                #expect(try await store.leases(of: request.host).isEmpty, "\(request.host) was refused and holds nothing")
            }
        }
        let leases = try await store.allLeases()
        #expect(Set(leases.map(\.slice)).count == leases.count, "no slice is leased twice")
        #expect(granted == free, "every free slice was granted, none more")
        #expect(try await store.capacity().filter { $0.state == .free }.map(\.count).reduce(0, +) == 0)
        #expect(try await Self.openRecords(store) == records(of: leases), "one open log record per lease")
        #expect(try await store.tableVersion() == versionBefore + grants)
    }

    @Test(arguments: [40, 100])
    func manyAcquiresAtOnceAgreeWithTheModel(hosts: Int) async throws {
        let (store, _) = try await Self.sqliteStore()
        var model = try AllocatorModel(quarantine: .seconds(240))
        let free = hosts * 5 / 4
        try await Self.fill(store, &model, leaving: free)
        let requests = Self.requests(hosts, seed: 6888)
        let versionBefore = try await store.tableVersion()
        let woken = Task { await store.versions.wait(newerThan: versionBefore, timeout: .seconds(30)) }

        let results = try await Self.acquireInOrder(store, requests)

        // Some are refused, and some after them are granted (a batch goes on past a refusal).
        let refused = results.indices.filter { (try? results[$0].get()) == nil }
        #expect(!refused.isEmpty && results.indices.contains { index in index > refused[0] && (try? results[index].get()) != nil })
        Self.expectAsTheModel(&model, requests, results)
        #expect(try await store.allLeases() == model.allLeases)
        try await Self.checkInvariants(store, requests, results, free: free, versionBefore: versionBefore)
        #expect(store.versions.version == (try await store.tableVersion()), "the last commit's version is published")
        #expect(await woken.value > versionBefore, "a long poll woke")
        try await store.close()
    }

    /// The same rush on each engine without holding anything back: the order is the store's
    /// own, so only what holds in any order is checked.
    @Test(arguments: [Engine.sqlite, .postgres])
    func manyAcquiresAtOnceInAnyOrder(engine: Engine) async throws {
        if engine == .postgres && Engine.postgresURL == nil { return }
        let store = try await engine.makeStore().store
        var model = try AllocatorModel(quarantine: .seconds(240))
        try await Self.fill(store, &model, leaving: 50)
        let requests = Self.requests(40, seed: 7422)
        let versionBefore = try await store.tableVersion()
        let results = try await withThrowingTaskGroup(of: (Int, Result<[Lease], any Error>).self) { group in
            for (index, request) in requests.enumerated() {
                group.addTask {
                    do {
                        return (index, .success(try await store.acquire(
                            host: request.host, traits: request.traits, count: request.count, timeToLive: .seconds(60), now: Self.start)))
                    } catch {
                        return (index, .failure(error))
                    }
                }
            }
            var results = [Result<[Lease], any Error>?](repeating: nil, count: requests.count)
            for try await (index, result) in group { results[index] = result }
            return results.map { $0! }
        }
        try await Self.checkInvariants(store, requests, results, free: 50, versionBefore: versionBefore)
        try await store.close()
    }

    /// An acquire the database refuses partway (after its log record was written) fails alone;
    /// the others of its batch are granted as if each had come alone. So too when the failure
    /// rolls the whole transaction back: nothing of the batch stays, and the others are made
    /// again.
    @Test func aRefusedStatementUndoesItsAcquireAlone() async throws {
        let (store, path) = try await Self.sqliteStore()
        var model = try AllocatorModel(quarantine: .seconds(240))
        try await Self.fill(store, &model, leaving: 100)
        // Refuses leasing a slice to one host: the store's kept statements are prepared again.
        let other = try await SQLConnections.sqlite(path: path)
        _ = try await other.query(
            "CREATE TRIGGER refuse BEFORE UPDATE OF state ON slices WHEN NEW.host = 'refused' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END", [])
        let requests = [Request(host: "a", traits: Self.us, count: 2), Request(host: "refused", traits: Self.us, count: 3),
                        Request(host: "b", traits: Self.de, count: 1), Request(host: "c", traits: Self.us, count: 3)]
        var versionBefore = try await store.tableVersion()
        let results = try await Self.acquireInOrder(store, requests)
        for (request, result) in zip(requests, results) {
            if request.host == "refused" {
                #expect(throws: StoreError.self) { try result.get() }
                #expect(try await store.leases(of: "refused").isEmpty)
            } else {
                let expected = try model.acquire(host: request.host, traits: request.traits, count: request.count, timeToLive: .seconds(60), now: Self.start)
                #expect(try result.get() == expected, "\(request.host)")
            }
        }
        #expect(try await store.allLeases() == model.allLeases)
        #expect(try await Self.openRecords(store) == Self.records(of: model.allLeases), "no log record of the refused acquire")
        #expect(try await store.tableVersion() == versionBefore + 3)
        #expect(store.versions.version == versionBefore + 3)

        _ = try await other.query("DROP TRIGGER refuse", [])
        _ = try await other.query(
            "CREATE TRIGGER refuse BEFORE UPDATE OF state ON slices WHEN NEW.host = 'refused' BEGIN SELECT RAISE(ROLLBACK, 'rolled back by the test'); END", [])
        try await other.close()
        versionBefore = try await store.tableVersion()
        let rush = [Request(host: "d", traits: Self.us, count: 1), requests[1], Request(host: "e", traits: Self.de, count: 1)]
        let rolledBack = try await Self.acquireInOrder(store, rush)
        #expect { try rolledBack[1].get() } throws: { "\($0)".contains("rolled back by the test") }
        for (request, result) in zip(rush, rolledBack) where request.host != "refused" {
            let expected = try model.acquire(host: request.host, traits: request.traits, count: request.count, timeToLive: .seconds(60), now: Self.start)
            #expect(try result.get() == expected, "\(request.host)")
        }
        #expect(try await store.leases(of: "refused").isEmpty)
        #expect(try await store.allLeases() == model.allLeases, "only the two granted alone stay")
        #expect(try await Self.openRecords(store) == Self.records(of: model.allLeases))
        #expect(try await store.tableVersion() == versionBefore + 2)
        #expect(store.versions.version == versionBefore + 2)
        try await store.close()
    }

    /// An acquire cancelled while it waits for the connection is never made; one cancelled
    /// after a holder of the connection took it answers what it was given.
    @Test func aCancelledAcquireIsMadeOrAnsweredNeverBoth() async throws {
        let (store, _) = try await Self.sqliteStore()
        var model = try AllocatorModel(quarantine: .seconds(240))
        try await Self.fill(store, &model, leaving: 100)
        try await store.gate.run {
            let gone = Task { try await store.acquire(host: "gone", traits: Self.us, count: 2, timeToLive: .seconds(60), now: Self.start) }
            while store.queuedAcquires.withLock({ $0.isEmpty }) { try await Task.sleep(for: .milliseconds(1)) }
            gone.cancel()
            await #expect(throws: CancellationError.self) { try await gone.value }
            #expect(store.queuedAcquires.withLock { $0.isEmpty })
        }
        let expected = try model.acquire(host: "next", traits: Self.us, count: 2, timeToLive: .seconds(60), now: Self.start)
        #expect(try await store.acquire(host: "next", traits: Self.us, count: 2, timeToLive: .seconds(60), now: Self.start) == expected)
        #expect(try await store.leases(of: "gone").isEmpty)

        // Cancelled while a batch that took it is being made (or just after): it is answered.
        let requests = Self.requests(40, seed: 1)
        let waiting = try await withThrowingTaskGroup(of: (Int, Result<[Lease], any Error>).self) { group in
            var tasks: [Task<[Lease], any Error>] = []
            try await store.gate.run {
                for (index, request) in requests.enumerated() {
                    let task = Task { try await store.acquire(host: request.host, traits: request.traits, count: request.count, timeToLive: .seconds(60), now: Self.start) }
                    tasks.append(task)
                    group.addTask {
                        do { return (index, .success(try await task.value)) } catch { return (index, .failure(error)) }
                    }
                    while store.queuedAcquires.withLock({ $0.count }) <= index { try await Task.sleep(for: .milliseconds(1)) }
                }
            }
            while !store.queuedAcquires.withLock({ $0.isEmpty }) { try await Task.sleep(for: .microseconds(100)) }
            for task in tasks.dropFirst() { task.cancel() }
            var results = [Result<[Lease], any Error>?](repeating: nil, count: requests.count)
            for try await (index, result) in group { results[index] = result }
            return results.map { $0! }
        }
        Self.expectAsTheModel(&model, requests, waiting)
        #expect(try await store.allLeases() == model.allLeases)
        try await store.close()
    }
}

@Suite("SQLite connection")
struct SQLiteConnectionTests {
    /// A call after `close` fails at once: the connection's thread lasts as long as the
    /// connection, so no call waits for a thread that has ended.
    @Test(.timeLimit(.minutes(1))) func usedAfterCloseFails() async throws {
        let store = try await SQLSliceStore.openSQLite(path: nil)
        try await store.close()
        try await Task.sleep(for: .milliseconds(100))
        await #expect(throws: StoreError.self) { _ = try await store.tableVersion() }
    }

    /// A kept statement reads the columns its table has now, after another connection
    /// (another process's migration) rebuilt the table with its columns in another order.
    @Test func keptStatementsFollowTheSchema() async throws {
        let path = ScratchSpace.path("portslice-kept", suffix: ".sqlite")
        let first = try await SQLConnections.sqlite(path: path), second = try await SQLConnections.sqlite(path: path)
        _ = try await first.query("CREATE TABLE t (a INTEGER, b TEXT)", [])
        _ = try await first.query("INSERT INTO t VALUES (1, 'x')", [])
        #expect(try await first.query("SELECT * FROM t", []).first?.integer("a") == 1)
        for statement in ["CREATE TABLE t2 (b TEXT, a INTEGER)", "INSERT INTO t2 SELECT b, a FROM t", "DROP TABLE t", "ALTER TABLE t2 RENAME TO t"] {
            _ = try await second.query(statement, [])
        }
        let row = try await first.query("SELECT * FROM t", []).first
        #expect(row?.integer("a") == 1 && row?.text("b") == "x")
        try await first.close()
        try await second.close()
    }
}
