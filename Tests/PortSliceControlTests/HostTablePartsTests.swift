import PortSliceCore
import Testing
@testable import PortSliceControl

/// The version in which each host's part of the slice table last changed, which decides whether
/// a host's long poll answers.
@Suite("Host parts of the slice table")
struct HostTablePartsTests {
    static let address = IPv4Address(192, 0, 2, 1)

    func table(_ version: Int64, _ holders: [Int: String]) throws -> SliceTable {
        SliceTable(version: version, slices: try (0..<4).map { index in
            SliceTable.Entry(address: Self.address, index: index, ports: try PortSet(parsing: "\(20000 + index * 1000)-\(20999 + index * 1000)"),
                             state: holders[index] == nil ? .free : .leased, host: holders[index])
        })
    }

    @Test func eachHostsPartChangesOnlyWithItsOwnSlices() throws {
        let first = HostTableParts(try table(10, [0: "h1"]), after: nil)
        // Nothing is known before the first table: every host's part counts as changed there.
        #expect(first.changed("h1") == 10 && first.changed("h3") == 10)
        let second = HostTableParts(try table(11, [0: "h1", 1: "h2"]), after: first)
        #expect(second.changed("h1") == 10 && second.changed("h2") == 11)
        let third = HostTableParts(try table(12, [0: "h1", 1: "h2", 2: "h3"]), after: second)
        #expect(third.changed("h3") == 12 && third.changed("h2") == 11)
        let fourth = HostTableParts(try table(13, [0: "h1", 1: "h2"]), after: third)
        #expect(fourth.changed("h3") == 13, "losing its last slice is a change")
        // h3 is in neither table now: its part last changed in 13, not at the first table.
        let fifth = HostTableParts(try table(14, [0: "h1", 1: "h2", 3: "h2"]), after: fourth)
        #expect(fifth.changed("h3") == 13 && fifth.changed("h1") == 10 && fifth.changed("h2") == 14)
        #expect(fifth.part(of: "h3") == SliceTable(version: 14, slices: []))
        // A host answered at a version these parts compared waits on; one that saw a version
        // they never compared (another replica's) may have seen a part that came and went.
        #expect(fifth.unchanged("h1", since: 12) && fifth.unchanged("h3", since: 13))
        #expect(!fifth.unchanged("h3", since: 12), "h3's part changed in 13")
        let skipping = HostTableParts(try table(20, [0: "h1"]), after: first)
        #expect(!skipping.unchanged("h1", since: 15), "15 was never compared")
        #expect(skipping.unchanged("h1", since: 10) && skipping.unchanged("h1", since: 20))
        #expect(fifth.part(of: "h2").slices.map(\.index) == [1, 3] && fifth.part(of: "h2").version == 14)
    }
}
