import PortSliceCore
import Testing
@testable import PortSliceStore

/// On SQLite acquires place from the free slices kept in memory (`FreeSliceMirror`): it must
/// follow every change the database sees, and undo what a rolled-back transaction did.
@Suite("Free slices kept in memory (SQLite)")
struct FreeSliceMirrorTests {
    static let address = IPv4Address(203, 0, 113, 10)
    static let start = Moment(milliseconds: 1_800_000_000_000)

    /// One address of four 1,000-port slices, in a new SQLite file.
    static func store() async throws -> SQLSliceStore {
        let (store, _) = try await GroupCommitTests.sqliteStore()
        try await store.add(EgressAddress(address: address, traits: GroupCommitTests.us),
                            plan: try SlicePlan(range: try PortRange(20000, 23999), layout: .sliceCount(4)))
        return store
    }

    static func acquire(_ store: SQLSliceStore, _ host: String) async throws -> [String] {
        try await store.acquire(host: host, traits: GroupCommitTests.us, count: 1, timeToLive: .seconds(60), now: start)
            .map { "\($0.slice.address) \($0.slice.index) \($0.ports)" }
    }

    /// A statement run alone on the writer's connection, as an operator at the SQLite shell would.
    static func byHand(_ store: SQLSliceStore, _ sql: String) async throws {
        try await store.withDatabase { try await store.run(sql) }
    }

    @Test("slices taken or given back by a statement of its own are placed from as the database has them")
    func followsChangesMadeByHand() async throws {
        let store = try await Self.store()
        #expect(try await Self.acquire(store, "h1") == ["203.0.113.10 0 20000-20999"])
        try await Self.byHand(store, "UPDATE slices SET state = 'draining' WHERE address = \(Self.address.bits) AND slice_index = 1")
        #expect(try await Self.acquire(store, "h2") == ["203.0.113.10 2 22000-22999"], "slice 1 is no longer free")
        try await Self.byHand(store, "UPDATE slices SET state = 'free' WHERE address = \(Self.address.bits) AND slice_index = 1")
        #expect(try await Self.acquire(store, "h3") == ["203.0.113.10 1 21000-21999"], "slice 1 is free again")
        #expect(try await Self.acquire(store, "h4") == ["203.0.113.10 3 23000-23999"])
        await #expect(throws: AllocationError.noCapacity(wanted: 1, granted: 0, traits: GroupCommitTests.us.summary)) {
            try await Self.acquire(store, "h5")
        }
        try await store.close()
    }

    @Test("an acquire whose transaction fails after its slice was chosen leaves that slice free for the next")
    func rollbackForgetsTheGrant() async throws {
        let store = try await Self.store()
        // Fails the version statement, which comes after the slice is leased, for host `bad` only.
        try await Self.byHand(store, """
            CREATE TRIGGER refuse_bad BEFORE UPDATE ON table_version
            WHEN EXISTS (SELECT 1 FROM slices WHERE host = 'bad') BEGIN SELECT RAISE(ABORT, 'refused for the test'); END
            """)
        await #expect(throws: StoreError.self) { try await Self.acquire(store, "bad") }
        try await Self.byHand(store, "DROP TRIGGER refuse_bad")
        #expect(try await Self.acquire(store, "good") == ["203.0.113.10 0 20000-20999"])
        try await store.close()
    }

    @Test("once the free slices are in memory, an acquire reads none of them from the database")
    func acquireStatements() async throws {
        let store = try await Self.store()
        let first = store.statementCount
        _ = try await Self.acquire(store, "h1")
        let second = store.statementCount
        _ = try await Self.acquire(store, "h2")
        // BEGIN, what is due, the host's holdings, the log record, the slice, the version, COMMIT;
        // the first acquire also reads the pool's free slices (two statements) and sets the
        // earliest expiry (one).
        #expect(second - first == 10)
        #expect(store.statementCount - second == 7)
        try await store.close()
    }
}
