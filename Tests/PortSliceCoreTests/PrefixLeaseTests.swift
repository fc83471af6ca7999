import Foundation
import Testing
@testable import PortSliceCore

@Suite("IPv6 prefix leases in the allocator model")
struct PrefixLeaseTests {
    static let start = Moment(milliseconds: 1_800_000_000_000)
    static let minute = Duration.seconds(60)
    static let block = try! IPv6Prefix(parsing: "2001:db8:10::/48")

    private func traits(_ country: String, _ category: Category = .residential) throws -> Traits {
        try Traits(country: try CountryCode(parsing: country), category: category)
    }

    /// A US residential /48 and a DE hosting /56, both leased in /64s.
    private func model() throws -> AllocatorModel {
        var model = try AllocatorModel(quarantine: .seconds(240))
        try model.add(try PoolPrefix(prefix: Self.block, traits: try traits("US")))
        try model.add(try PoolPrefix(prefix: try IPv6Prefix(parsing: "2001:db8:20::/56"), traits: try traits("DE", .hosting)))
        return model
    }

    /// The start is FNV-1a of the name, mixed, against the pool prefix's key, modulo 65,536
    /// /64s (computed apart from this code): 0x9026 for h1 and 0xbc17 for h2.
    @Test func aHostStartsAtTheKeyedHashOfItsName() throws {
        var model = try model()
        let h1 = try model.acquirePrefixes(host: "h1", traits: try traits("US"), timeToLive: Self.minute, now: Self.start)
        #expect(h1.map(\.prefix) == [try IPv6Prefix(parsing: "2001:db8:10:9026::/64")])
        #expect(h1.first?.pool == Self.block)
        let h2 = try model.acquirePrefixes(host: "h2", traits: try traits("US"), timeToLive: Self.minute, now: Self.start)
        #expect(h2.map(\.prefix) == [try IPv6Prefix(parsing: "2001:db8:10:bc17::/64")])
        // A second prefix for h1 is the next free one after its start.
        let again = try model.acquirePrefixes(host: "h1", traits: try traits("US"), timeToLive: Self.minute, now: Self.start)
        #expect(again.map(\.prefix) == [try IPv6Prefix(parsing: "2001:db8:10:9027::/64")])
        let de = try model.acquirePrefixes(host: "h1", traits: try traits("DE", .hosting), timeToLive: Self.minute, now: Self.start)
        #expect(de.first?.pool == (try IPv6Prefix(parsing: "2001:db8:20::/56")), "trait closeness places it")
    }

    /// Every host that starts at the same sub-prefix moves on to the next free one; none share.
    @Test func hostsNeverGetOverlappingPrefixes() throws {
        var model = try AllocatorModel(quarantine: .seconds(240))
        try model.add(try PoolPrefix(prefix: try IPv6Prefix(parsing: "2001:db8:10::/60"), traits: .unknown))
        let leases = try (0..<16).map { index in
            try model.acquirePrefixes(host: "h\(index)", traits: .unknown, timeToLive: Self.minute, now: Self.start)[0]
        }
        #expect(Set(leases.map(\.prefix)).count == 16)
        for (index, lease) in leases.enumerated() {
            for other in leases[(index + 1)...] { #expect(!AllocatorModel.overlap(lease.prefix, other.prefix)) }
        }
        #expect(throws: AllocationError.noPrefixCapacity(wanted: 1, granted: 0, traits: Traits.unknown.summary)) {
            _ = try model.acquirePrefixes(host: "h16", traits: .unknown, timeToLive: Self.minute, now: Self.start)
        }
    }

    /// A released prefix waits out its quarantine; then its host gets it back first.
    @Test func quarantineBlocksReleaseUntilItEnds() throws {
        var model = try AllocatorModel(quarantine: .seconds(240))
        try model.add(try PoolPrefix(prefix: try IPv6Prefix(parsing: "2001:db8:10::/63"), traits: .unknown))
        let first = try model.acquirePrefixes(host: "h1", traits: .unknown, timeToLive: Self.minute, now: Self.start)[0]
        try model.releasePrefix(first.id, host: "h1", now: Self.start + .seconds(10))
        #expect(model.state(of: first.prefix) == .quarantined(until: Self.start + .seconds(250)))
        let other = try model.acquirePrefixes(host: "h1", traits: .unknown, timeToLive: Self.minute, now: Self.start + .seconds(20))[0]
        #expect(other.prefix != first.prefix)
        try model.releasePrefix(other.id, host: "h1", now: Self.start + .seconds(30))
        #expect(throws: AllocationError.noPrefixCapacity(wanted: 1, granted: 0, traits: Traits.unknown.summary)) {
            _ = try model.acquirePrefixes(host: "h2", traits: .unknown, timeToLive: Self.minute, now: Self.start + .seconds(249))
        }
        let back = try model.acquirePrefixes(host: "h1", traits: .unknown, timeToLive: Self.minute, now: Self.start + .seconds(270))[0]
        #expect(back.prefix == first.prefix, "the host's own start again, once its quarantine is over")
        #expect(throws: AllocationError.leaseExpired(first.id)) { try model.releasePrefix(first.id, host: "h1", now: Self.start + .seconds(270)) }
        #expect(throws: AllocationError.notYourLease(back.id, host: "h2")) { try model.releasePrefix(back.id, host: "h2", now: Self.start + .seconds(270)) }
    }

    @Test func renewalExtendsAndExpiryQuarantines() throws {
        var model = try model()
        let lease = try model.acquirePrefixes(host: "h1", traits: try traits("US"), timeToLive: Self.minute, now: Self.start)[0]
        let renewed = try model.renewAll(host: "h1", timeToLive: .seconds(120), now: Self.start + .seconds(50))
        #expect(renewed.prefixes.map(\.expires) == [Self.start + .seconds(170)])
        model.advance(to: Self.start + .seconds(169))
        #expect(model.prefixLeases(of: "h1").map(\.id) == [lease.id])
        model.advance(to: Self.start + .seconds(171))
        #expect(model.prefixLeases(of: "h1").isEmpty)
        #expect(model.state(of: lease.prefix) == .quarantined(until: Self.start + .seconds(170 + 240)))
        #expect(model.prefixEntries == [SliceTable.PrefixEntry(prefix: lease.prefix, state: .quarantined, host: nil)])
    }

    /// The log names the holder of an address inside the prefix while it held it, and nobody
    /// for an address outside it or a moment outside the lease.
    @Test func whoNamesTheHolder() throws {
        var model = try model()
        let lease = try model.acquirePrefixes(host: "h1", traits: try traits("US"), timeToLive: Self.minute, now: Self.start)[0]
        try model.releasePrefix(lease.id, host: "h1", now: Self.start + .seconds(30))
        let inside = try IPv6Address(parsing: "2001:db8:10:9026::1234"), outside = try IPv6Address(parsing: "2001:db8:10:9027::1234")
        #expect(model.who(address: inside, at: Self.start + .seconds(10)).map(\.host) == ["h1"])
        #expect(model.who(address: inside, at: Self.start + .seconds(10)).first?.prefix == lease.prefix)
        #expect(model.who(address: outside, at: Self.start + .seconds(10)).isEmpty)
        #expect(model.who(address: inside, at: Self.start + .seconds(30)).isEmpty, "ended at the release")
    }

    @Test func poolPrefixesAreCheckedAndRemovedWhenIdle() throws {
        var model = try model()
        #expect(throws: AllocationError.duplicatePrefix(Self.block)) { try model.add(try PoolPrefix(prefix: Self.block, traits: .unknown)) }
        let inner = try IPv6Prefix(parsing: "2001:db8:10:100::/56")
        #expect(throws: AllocationError.overlappingPrefix(inner, existing: Self.block)) { try model.add(try PoolPrefix(prefix: inner, traits: .unknown)) }
        #expect(throws: AllocationError.badLeaseLength(48, prefix: Self.block)) { _ = try PoolPrefix(prefix: Self.block, traits: .unknown, leaseLength: 48) }
        #expect(throws: AllocationError.badLeaseLength(65, prefix: Self.block)) { _ = try PoolPrefix(prefix: Self.block, traits: .unknown, leaseLength: 65) }
        let lease = try model.acquirePrefixes(host: "h1", traits: try traits("US"), timeToLive: Self.minute, now: Self.start)[0]
        try model.drain(Self.block, now: Self.start)
        #expect(throws: AllocationError.noPrefixCapacity(wanted: 1, granted: 0, traits: try traits("US").summary)) {
            var only = try AllocatorModel(quarantine: .seconds(240))
            try only.add(try PoolPrefix(prefix: Self.block, traits: try traits("US")))
            try only.drain(Self.block, now: Self.start)
            _ = try only.acquirePrefixes(host: "h2", traits: try traits("US"), timeToLive: Self.minute, now: Self.start)
        }
        #expect(throws: AllocationError.prefixInUse(Self.block, leases: 1, quarantined: 0)) { try model.remove(Self.block, now: Self.start) }
        try model.releasePrefix(lease.id, host: "h1", now: Self.start + .seconds(1))
        #expect(throws: AllocationError.prefixInUse(Self.block, leases: 0, quarantined: 1)) { try model.remove(Self.block, now: Self.start + .seconds(2)) }
        try model.remove(Self.block, now: Self.start + .seconds(241))
        #expect(model.who(address: lease.prefix.network, at: Self.start).map(\.leaseID) == [lease.id], "the log keeps the history")
        #expect(throws: AllocationError.unknownPrefix(Self.block)) { try model.drain(Self.block, now: Self.start) }
    }

    /// A host's part of the table has its own leased prefixes; a table without prefixes (from
    /// an older allocator) still decodes.
    @Test func sliceTableCarriesPrefixes() throws {
        let prefix = try IPv6Prefix(parsing: "2001:db8:10:9026::/64")
        let table = SliceTable(version: 3, slices: [], prefixes: [
            SliceTable.PrefixEntry(prefix: prefix, state: .leased, host: "h1"),
            SliceTable.PrefixEntry(prefix: try IPv6Prefix(parsing: "2001:db8:10:1::/64"), state: .leased, host: "h2"),
            SliceTable.PrefixEntry(prefix: try IPv6Prefix(parsing: "2001:db8:10:2::/64"), state: .quarantined, host: nil),
        ])
        #expect(table.held(by: "h1").prefixes == [SliceTable.PrefixEntry(prefix: prefix, state: .leased, host: "h1")])
        let older = try JSONDecoder().decode(SliceTable.self, from: Data(#"{"version": 2, "slices": []}"#.utf8))
        #expect(older == SliceTable(version: 2, slices: []))
        #expect(try JSONDecoder().decode(SliceTable.self, from: try JSONEncoder().encode(table)) == table)
    }

    /// Every host's part in one pass equals what `held(by:)` gives that host: leased slices and
    /// prefixes only, in table order, with the table's version.
    @Test func partsByHostInOnePass() throws {
        let address = IPv4Address(192, 0, 2, 7)
        func slice(_ index: Int, _ state: SliceStatus, _ host: String?) throws -> SliceTable.Entry {
            SliceTable.Entry(address: address, index: index, ports: try PortSet(parsing: "\(1024 + index * 1024)-\(2047 + index * 1024)"), state: state, host: host)
        }
        let table = SliceTable(version: 9, slices: [
            try slice(0, .leased, "h1"), try slice(1, .free, nil), try slice(2, .leased, "h2"),
            try slice(3, .quarantined, nil), try slice(4, .leased, "h1"),
        ], prefixes: [
            SliceTable.PrefixEntry(prefix: try IPv6Prefix(parsing: "2001:db8:10:1::/64"), state: .leased, host: "h3"),
            SliceTable.PrefixEntry(prefix: try IPv6Prefix(parsing: "2001:db8:10:2::/64"), state: .quarantined, host: nil),
        ])
        let parts = table.partsByHost()
        #expect(Set(parts.keys) == ["h1", "h2", "h3"])
        for host in ["h1", "h2", "h3"] { #expect(parts[host] == table.held(by: host)) }
        #expect(parts["h1"] == SliceTable(version: 9, slices: [try slice(0, .leased, "h1"), try slice(4, .leased, "h1")]))
        let leasedPrefix = try IPv6Prefix(parsing: "2001:db8:10:1::/64")
        #expect(parts["h3"]?.slices == [] && parts["h3"]?.prefixes.map(\.prefix) == [leasedPrefix])
    }

    /// A pool file's IPv6 lines become pool prefixes; the published feed lists them after the
    /// addresses.
    @Test func poolFileAndPublishedFeed() throws {
        let feed = try Geofeed.read("203.0.113.10/32,US,US-CA,Los Angeles,,residential\n2001:db8:10::/48,US,US-CA,Los Angeles,,residential,high\n", source: "pool.csv")
        let split = try feed.splitPool(leaseLength: 64)
        #expect(split.addresses.entries.map(\.prefix.description) == ["203.0.113.10/32"])
        #expect(split.prefixes.map(\.prefix) == [Self.block])
        #expect(split.prefixes.first?.traits.reputation == .high)
        #expect(throws: EgressPoolError.badLeaseLength(line: 2, .badLeaseLength(48, prefix: Self.block))) { _ = try feed.splitPool(leaseLength: 48) }
        let published = Geofeed(pool: try EgressPool(feed: split.addresses).addresses, prefixes: split.prefixes).csv(columns: .standard)
        #expect(published == "203.0.113.10/32,US,US-CA,Los Angeles,\n2001:db8:10::/48,US,US-CA,Los Angeles,\n")
    }
}
