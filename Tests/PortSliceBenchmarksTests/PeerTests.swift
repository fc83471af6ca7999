import PortSliceCore
import Testing
@testable import PortSliceBenchmarks

/// The benchmark compares us with peers; the comparison means something only if the peers
/// answer the same questions the same way and the generated data is what it claims.
@Suite("Benchmark peers and data")
struct PeerTests {
    @Test func binaryTrieAgreesWithThePrefixTable() throws {
        let feed = SyntheticGeofeed(prefixCount: 5_000).feed
        let index = TraitIndex(feeds: [feed])
        let trie = BinaryTrie(feed.entries.enumerated().compactMap { position, entry in
            if case .v4(let prefix) = entry.prefix { (prefix, Int32(position)) } else { nil }
        })
        var random = SplitMix64(seed: 99)
        for _ in 0..<20_000 {
            let address = IPv4Address(bits: UInt32.random(in: 0...UInt32.max, using: &random))
            let fromTrie = trie.lookup(address)
            let fromTable = index.lookup(address)
            #expect((fromTrie >= 0) == (fromTable != nil))
            if fromTrie >= 0, let match = fromTable {
                #expect(feed.entries[Int(fromTrie)].prefix == match.prefix)
            }
        }
    }

    @Test func syntheticFeedIsDeterministicValidAndNested() throws {
        let first = SyntheticGeofeed(prefixCount: 3_000), second = SyntheticGeofeed(prefixCount: 3_000)
        #expect(first.feed == second.feed)
        #expect(Set(first.feed.entries.map(\.prefix)).count == 3_000)
        // It round-trips through the strict reader, and some prefixes nest inside others.
        let read = try Geofeed.read(first.feed.csv(), source: "synthetic")
        #expect(read.entries.count == 3_000)
        let prefixes = first.feed.entries.compactMap { if case .v4(let prefix) = $0.prefix { prefix } else { nil } }
        let covering = Set(prefixes)
        let nested = prefixes.filter { prefix in
            (0..<Int(prefix.length)).contains { covering.contains(IPv4Prefix(containing: prefix.network, length: $0)) }
        }
        #expect(nested.count > 100)
    }
}
