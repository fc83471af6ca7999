import Testing
@testable import PortSliceCore

@Suite("RFC 8805 geofeeds")
struct GeofeedTests {
    @Test func readsTheRFCExampleShapes() throws {
        let text = """
            # RFC 8805 section 2.1.1 style
            192.0.2.0/25,US,US-AL,,
            192.0.2.5,US,US-AL,Alabaster,35007
            2001:db8::/32,PL,PL-MZ,,02-784
            """
        let feed = try? Geofeed.read(text, source: "feed.csv")
        #expect(feed == nil)  // the bare address on line 3 has no length
        let lenient = try Geofeed.read(text, source: "feed.csv", mode: .lenient)
        #expect(lenient.entries.map(\.prefix.description) == ["192.0.2.0/25", "2001:db8::/32"])
        #expect(lenient.entries[1].traits.region?.rawValue == "PL-MZ")
        #expect(lenient.entries[1].postalCode == "02-784")
        #expect(lenient.issues.map(\.line) == [3])
        #expect(lenient.issues[0].description.hasPrefix("feed.csv:3: invalid prefix '192.0.2.5': the prefix length is missing"))
    }

    @Test func readsExtensionColumnsAndIgnoresExtraOnes() throws {
        let text = "203.0.113.0/28, DE , de-be , Berlin ,, mobile , high , a;b , something-else, more\r\n"
        let entry = try #require(try Geofeed.read(text, source: "pool.csv").entries.first)
        #expect(entry.traits.country?.rawValue == "DE")
        #expect(entry.traits.region?.rawValue == "DE-BE")
        #expect(entry.traits.city == "Berlin")
        #expect(entry.traits.category == .mobile)
        #expect(entry.traits.reputation == .high)
        #expect(entry.traits.tags == ["a", "b"])
        #expect(entry.postalCode == nil)
    }

    @Test func handlesBOMCommentsBlankLinesAndQuotes() throws {
        let text = "\u{FEFF}# header\n\n   # indented comment\n198.51.100.0/24,US,US-DC,\"Washington, D.C.\",\n198.51.101.0/24,FR,,\"Saint-\"\"Quote\"\"\",\n"
        let feed = try Geofeed.read(text, source: "f")
        #expect(feed.entries.map(\.traits.city) == ["Washington, D.C.", "Saint-\"Quote\""])
        #expect(feed.entries.map(\.line) == [4, 5])
    }

    @Test func collectsEveryErrorWithItsLine() {
        let text = """
            192.0.2.0/24,US,US-CA,Los Angeles,
            192.0.2.0/24,US,,,
            192.0.2.1/24,US,,,
            198.51.100.0/24,XX,,,
            198.51.101.0/24,US,DE-BE,,
            198.51.102.0/24,US,,,,cellular
            198.51.103.0/24,US,,,,,superb
            ,US,,,
            198.51.104.0/24,US,,"open,
            198.51.105.0/24,,US-CA,,
            198.51.106.0/24,US,,,
            """
        #expect(throws: GeofeedErrors(issues: [
            GeofeedIssue(source: "f", line: 2, message: "duplicate prefix 192.0.2.0/24, first given on line 1; RFC 8805 allows each prefix once"),
            GeofeedIssue(source: "f", line: 3, message: "invalid prefix '192.0.2.1/24': bits are set beyond the prefix length; did you mean '192.0.2.0/24'?"),
            GeofeedIssue(source: "f", line: 4, message: TraitError.unknownCountry("XX").description),
            GeofeedIssue(source: "f", line: 5, message: TraitError.regionOutsideCountry(region: "DE-BE", country: "US").description),
            GeofeedIssue(source: "f", line: 6, message: TraitError.unknownCategory("cellular").description),
            GeofeedIssue(source: "f", line: 7, message: TraitError.unknownReputation("superb").description),
            GeofeedIssue(source: "f", line: 8, message: "the prefix (first column) is empty"),
            GeofeedIssue(source: "f", line: 9, message: "a quoted field is not closed; end it with '\"' on the same line"),
            GeofeedIssue(source: "f", line: 10, message: TraitError.regionWithoutCountry(region: "US-CA").description),
        ])) {
            try Geofeed.read(text, source: "f")
        }
        let lenient = try? Geofeed.read(text, source: "f", mode: .lenient)
        #expect(lenient?.entries.map(\.line) == [1, 11])
    }

    @Test func rejectsInvalidUTF8WithLineNumber() {
        var bytes = Array("192.0.2.0/24,US,,ok,\n198.51.100.0/24,US,,".utf8)
        bytes += [0xC3, 0x28]
        bytes += Array(",\n".utf8)
        let feed = try? Geofeed.read(bytes, source: "f", mode: .lenient)
        #expect(feed?.entries.count == 1)
        #expect(feed?.issues == [GeofeedIssue(source: "f", line: 2, message: "the line is not valid UTF-8; geofeeds must be UTF-8 encoded")])
        let utf8City = try? Geofeed.read("192.0.2.0/24,DE,,Köln,\n", source: "f")
        #expect(utf8City?.entries.first?.traits.city == "Köln")
    }

    @Test func nestedPrefixesAreAllowed() throws {
        let feed = try Geofeed.read("10.0.0.0/8,US,,,\n10.1.0.0/16,DE,,,\n10.1.2.0/24,FR,,,\n", source: "f")
        #expect(feed.entries.count == 3)
    }

    @Test func writerRoundTrips() throws {
        var random = SplitMix64(seed: 8805)
        let cities = ["Berlin", "Washington, D.C.", "Saint-\"Q\"", "Köln", ""]
        var entries: [GeofeedEntry] = []
        var seen: Set<IPPrefix> = []
        while entries.count < 500 {
            let length = Int.random(in: 8...32, using: &random)
            let prefix = IPPrefix.v4(IPv4Prefix(containing: IPv4Address(bits: UInt32.random(in: 0...UInt32.max, using: &random)), length: length))
            guard seen.insert(prefix).inserted else { continue }
            let hasPlace = Bool.random(using: &random)
            let traits = try Traits(
                country: hasPlace ? try CountryCode(parsing: "DE") : nil,
                region: hasPlace && Bool.random(using: &random) ? try RegionCode(parsing: "DE-NW", country: nil) : nil,
                city: cities.randomElement(using: &random),
                category: Category.allCases.randomElement(using: &random)!,
                reputation: Bool.random(using: &random) ? ReputationTier.allCases.randomElement(using: &random) : nil,
                tags: Bool.random(using: &random) ? ["x", "y"] : [])
            entries.append(GeofeedEntry(prefix: prefix, traits: traits, postalCode: Bool.random(using: &random) ? "50667" : nil, line: entries.count + 2))
        }
        let written = Geofeed(entries: entries).csv(header: ["round trip"])
        let read = try Geofeed.read(written, source: "rt")
        #expect(read.entries == entries)
    }
}
