import Testing
@testable import PortSliceCore

@Suite("Longest-prefix lookup")
struct PrefixTableTests {
    /// Brute force: the longest of all prefixes containing the address, the last value given.
    private func reference<A>(_ entries: [(Prefix<A>, Int)], _ address: A) -> (Prefix<A>, Int)? {
        var best: (Prefix<A>, Int)? = nil
        for (prefix, value) in entries where prefix.contains(address) {
            if best == nil || prefix.length > best!.0.length || prefix == best!.0 { best = (prefix, value) }
        }
        return best
    }

    /// Random prefixes clustered so nesting is common, and probes inside, at the edges of and
    /// outside them.
    private func check<A: IPAddressFamily>(_ family: A.Type, seed: UInt64, makeBits: (inout SplitMix64) -> A.Bits) {
        var random = SplitMix64(seed: seed)
        let width = A.Bits.bitWidth
        for round in 0..<40 {
            let base = makeBits(&random)
            var entries: [(Prefix<A>, Int)] = []
            for value in 0..<Int.random(in: 0...60, using: &random) {
                // Share the top bits with `base` so prefixes nest and touch.
                let length = Int.random(in: 0...width, using: &random)
                let noise = makeBits(&random) & ~Prefix<A>.mask(min(width, 4 + round % 12))
                entries.append((Prefix(containing: A(bits: base ^ noise), length: length), value))
            }
            let table = PrefixTable(entries.map { (prefix: $0.0, value: $0.1) })
            var probes: [A] = (0..<200).map { _ in A(bits: base ^ (makeBits(&random) & ~Prefix<A>.mask(min(width, 4 + round % 12)))) }
            for (prefix, _) in entries {
                probes += [prefix.first, prefix.last]
                if prefix.first.bits > 0 { probes.append(A(bits: prefix.first.bits - 1)) }
                if prefix.last.bits < .max { probes.append(A(bits: prefix.last.bits + 1)) }
            }
            probes += [A(bits: 0), A(bits: .max)]
            for probe in probes {
                let expected = reference(entries, probe)
                let found = table.lookup(probe)
                #expect(found?.prefix == expected?.0 && found?.value == expected?.1, "probe \(probe)")
            }
        }
    }

    @Test func ipv4MatchesBruteForce() {
        check(IPv4Address.self, seed: 4) { UInt32.random(in: 0...UInt32.max, using: &$0) }
    }

    @Test func ipv6MatchesBruteForce() {
        check(IPv6Address.self, seed: 6) { random in
            UInt128(UInt64.random(in: 0...UInt64.max, using: &random)) << 64 | UInt128(UInt64.random(in: 0...UInt64.max, using: &random))
        }
    }

    @Test func emptyTableAndDefaultRoute() throws {
        #expect(PrefixTable<IPv4Address, Int>([]).lookup(IPv4Address(1, 2, 3, 4)) == nil)
        let table = PrefixTable([(prefix: try IPv4Prefix(parsing: "0.0.0.0/0"), value: 7)])
        #expect(table.lookup(IPv4Address(255, 255, 255, 255))?.value == 7)
    }

    @Test func traitIndexLayersFeedsAndMapsIPv4MappedClients() throws {
        let base = try Geofeed.read("192.0.2.0/24,US,,,\n2001:db8::/32,DE,,,\n", source: "base")
        let override = try Geofeed.read("192.0.2.0/24,FR,,,\n192.0.2.128/25,JP,,,\n", source: "override")
        let index = TraitIndex(feeds: [base, override])
        #expect(index.lookup(try IPAddress(parsing: "192.0.2.1"))?.traits.country?.rawValue == "FR")
        #expect(index.lookup(try IPAddress(parsing: "192.0.2.200"))?.traits.country?.rawValue == "JP")
        #expect(index.lookup(try IPAddress(parsing: "::ffff:192.0.2.200"))?.prefix.description == "192.0.2.128/25")
        #expect(index.lookup(try IPAddress(parsing: "2001:db8:1::5"))?.traits.country?.rawValue == "DE")
        #expect(index.lookup(try IPAddress(parsing: "198.51.100.1")) == nil)
        #expect(index.prefixCount == 3)
        #expect(index.recordCount == 4)  // US, DE, FR, JP: records are interned, not pruned
    }
}
