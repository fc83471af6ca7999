import Testing
@testable import PortSliceCore

@Suite("Egress choice")
struct EgressTests {
    private func traits(_ country: String?, _ region: String? = nil, _ city: String? = nil,
                        _ category: Category = .unknown, _ reputation: ReputationTier? = nil) throws -> Traits {
        try Traits(
            country: try country.map { try CountryCode(parsing: $0) },
            region: try region.map { try RegionCode(parsing: $0, country: nil) },
            city: city, category: category, reputation: reputation)
    }

    @Test func closestTraitsWinInOrderOfImportance() throws {
        let pool = try EgressPool([
            EgressAddress(address: IPv4Address(203, 0, 113, 1), traits: try traits("US", "US-CA", "Los Angeles", .hosting, .low)),
            EgressAddress(address: IPv4Address(203, 0, 113, 2), traits: try traits("US", "US-CA", "San Diego", .residential, .high)),
            EgressAddress(address: IPv4Address(203, 0, 113, 3), traits: try traits("US", "US-NY", "New York", .residential, .high)),
            EgressAddress(address: IPv4Address(203, 0, 113, 4), traits: try traits("DE", "DE-BE", "Berlin", .residential, .high)),
            EgressAddress(address: IPv4Address(203, 0, 113, 5), traits: try traits("US", "US-CA", "Los Angeles", .residential, .medium)),
        ])
        let client = IPAddress.v4(IPv4Address(198, 51, 100, 7))
        func chosen(_ wanted: Traits) -> String? { pool.choose(for: client, traits: wanted)?.address.description }
        // City first, then category, then reputation.
        #expect(chosen(try traits("US", "US-CA", "los angeles", .residential, .high)) == "203.0.113.5")
        #expect(chosen(try traits("US", "US-CA", "Los Angeles", .hosting, .high)) == "203.0.113.1")
        // No city match: region beats country.
        #expect(chosen(try traits("US", "US-CA", "Fresno", .residential, .high)) == "203.0.113.2")
        #expect(chosen(try traits("US", "US-NY", nil, .residential)) == "203.0.113.3")
        #expect(chosen(try traits("DE")) == "203.0.113.4")
        // A city of the same name in another country is not the same city.
        #expect(chosen(try traits("DE", nil, "San Diego", .residential, .high)) == "203.0.113.4")
        let ranked = pool.ranked(for: client, traits: try traits("US", "US-CA", "Los Angeles", .residential, .high))
        #expect(ranked.first?.egress.address.description == "203.0.113.5")
        #expect(ranked.last?.egress.address.description == "203.0.113.4")
        #expect(ranked.map(\.closeness) == ranked.map(\.closeness).sorted(by: >))
    }

    @Test func chooseAgreesWithRankedOrder() throws {
        var random = SplitMix64(seed: 42)
        let places: [Traits] = try [
            traits("US", "US-CA", "Los Angeles", .residential, .high), traits("US", "US-TX", nil, .mobile, .low),
            traits("GB", nil, nil, .hosting, nil), traits(nil),
        ]
        let pool = try EgressPool((0..<40).map { EgressAddress(address: IPv4Address(bits: 0xCB00_7100 + UInt32($0)), traits: places[$0 % 4]) })
        for _ in 0..<500 {
            let client = IPAddress.v4(IPv4Address(bits: UInt32.random(in: 0...UInt32.max, using: &random)))
            let wanted = places.randomElement(using: &random)!
            #expect(pool.choose(for: client, traits: wanted) == pool.ranked(for: client, traits: wanted).first?.egress)
        }
    }

    @Test func rendezvousMovesOnlyTheRemovedAddressesClients() throws {
        let addresses = (0..<100).map { EgressAddress(address: IPv4Address(bits: 0xCB00_7100 + UInt32($0)), traits: .unknown) }
        let full = try EgressPool(addresses)
        let removed = addresses[37].address
        let reduced = try EgressPool(addresses.filter { $0.address != removed })
        var random = SplitMix64(seed: 7)
        let clientCount = 20_000
        var moved = 0
        var perAddress: [IPv4Address: Int] = [:]
        for index in 0..<clientCount {
            let client: IPAddress = index % 2 == 0
                ? .v4(IPv4Address(bits: UInt32.random(in: 0...UInt32.max, using: &random)))
                : .v6(IPv6Address(bits: UInt128(UInt64.random(in: 0...UInt64.max, using: &random)) << 64))
            let before = try #require(full.choose(for: client, traits: .unknown)).address
            let after = try #require(reduced.choose(for: client, traits: .unknown)).address
            perAddress[before, default: 0] += 1
            #expect(full.choose(for: client, traits: .unknown)?.address == before, "a client keeps its address")
            if before != after {
                moved += 1
                #expect(before == removed, "only clients of the removed address move")
            }
        }
        // 1 of 100 addresses: about 1% of clients move. With 20,000 clients the standard deviation
        // is 0.07 percentage points, so 0.6%-1.4% is more than five deviations wide.
        let share = Double(moved) / Double(clientCount)
        #expect(share > 0.006 && share < 0.014, "moved \(share * 100)%")
        // And the load is spread: no address holds more than twice its fair share.
        #expect(perAddress.count == 100)
        #expect(perAddress.values.max()! < 2 * clientCount / 100)
    }

    @Test func poolFromGeofeed() throws {
        let feed = try Geofeed.read("203.0.113.0/30,US,,,,residential\n198.51.100.9/32,DE,,,\n", source: "pool")
        let pool = try EgressPool(feed: feed)
        #expect(pool.addresses.map(\.address.description) == ["203.0.113.0", "203.0.113.1", "203.0.113.2", "203.0.113.3", "198.51.100.9"])
        #expect(throws: EgressPoolError.notIPv4(prefix: "2001:db8::/64", line: 1)) {
            try EgressPool(feed: try Geofeed.read("2001:db8::/64,US,,,\n", source: "p"))
        }
        #expect(throws: EgressPoolError.prefixTooLarge(prefix: "10.0.0.0/8", line: 1)) {
            try EgressPool(feed: try Geofeed.read("10.0.0.0/8,US,,,\n", source: "p"))
        }
        #expect(throws: EgressPoolError.duplicateAddress(IPv4Address(203, 0, 113, 1))) {
            try EgressPool(feed: try Geofeed.read("203.0.113.0/30,US,,,\n203.0.113.1/32,US,,,\n", source: "p"))
        }
    }
}
