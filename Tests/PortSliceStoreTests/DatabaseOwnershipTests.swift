import Foundation
import PortSliceCore
import PortSliceTestSupport
import Testing
@testable import PortSliceStore

/// A SQLite database is served by one store at a time: a second is refused, saying who holds
/// it and what to do, until the first closes.
@Suite("SQLite database ownership")
struct DatabaseOwnershipTests {
    @Test func oneStoreAtATimeServesAFile() async throws {
        let path = ScratchSpace.path("portslice-owned", suffix: ".sqlite")
        let first = try await SQLSliceStore.openSQLite(path: path)
        let refused = StoreError(
            "the SQLite database \(path) is in use by process \(getpid()): a SQLite database serves one allocator. Stop that one, "
                + "give this one a data directory of its own, or run replicas on PostgreSQL (--database postgres://...)")
        await #expect(throws: refused) { _ = try await SQLSliceStore.openSQLite(path: path) }
        // Refusing changed nothing: the first store still serves.
        let egress = EgressAddress(address: IPv4Address(203, 0, 113, 10), traits: .unknown)
        try await first.add(egress, plan: try SlicePlan(layout: .portsPerSlice(2048)))
        #expect(FileManager.default.fileExists(atPath: path + "-owner"))
        try await first.close()
        #expect(!FileManager.default.fileExists(atPath: path + "-owner"), "the owner file outlived its store")
        // Given up on close: the file opens again, with what the first wrote.
        let second = try await SQLSliceStore.openSQLite(path: path)
        #expect(try await second.pool().map(\.egress) == [egress])
        try await second.close()
    }

    @Test func aStoreInMemoryClaimsNoFile() async throws {
        let first = try await SQLSliceStore.openSQLite(path: nil), second = try await SQLSliceStore.openSQLite(path: nil)
        try await first.close()
        try await second.close()
    }
}
