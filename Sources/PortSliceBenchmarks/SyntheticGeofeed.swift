import PortSliceCore

/// A deterministic geofeed shaped like a large public egress list: mostly /24s with shorter
/// and longer prefixes, some nested inside others, over a few hundred locations.
struct SyntheticGeofeed {
    let feed: Geofeed
    let locations: [Traits]

    init(prefixCount: Int, seed: UInt64 = 0x5eed) {
        var random = SplitMix64(seed: seed)
        let locations = Self.locations(using: &random)
        var seen: Set<IPv4Prefix> = []
        var entries: [GeofeedEntry] = []
        entries.reserveCapacity(prefixCount)
        while entries.count < prefixCount {
            let prefix: IPv4Prefix
            if let outer = entries.last, entries.count % 10 == 0, case .v4(let outerPrefix) = outer.prefix,
               outerPrefix.length < 30 {
                // A more specific prefix inside the previous one, as feeds carry for sub-allocations.
                let length = min(32, Int(outerPrefix.length) + Int.random(in: 1...4, using: &random))
                let offset = UInt32.random(in: 0...UInt32.max, using: &random) & ~IPv4Prefix.mask(Int(outerPrefix.length))
                prefix = IPv4Prefix(containing: IPv4Address(bits: outerPrefix.network.bits | offset), length: length)
            } else {
                prefix = IPv4Prefix(
                    containing: IPv4Address(bits: UInt32.random(in: 0...UInt32.max, using: &random)),
                    length: Self.randomLength(using: &random))
            }
            guard seen.insert(prefix).inserted else { continue }
            entries.append(GeofeedEntry(
                prefix: .v4(prefix), traits: locations.randomElement(using: &random)!, line: entries.count + 1))
        }
        feed = Geofeed(entries: entries)
        self.locations = locations
    }

    private static func randomLength(using random: inout SplitMix64) -> Int {
        switch Int.random(in: 0..<100, using: &random) {
        case 0..<3: Int.random(in: 12...16, using: &random)
        case 3..<15: Int.random(in: 17...23, using: &random)
        case 15..<75: 24
        default: Int.random(in: 25...32, using: &random)
        }
    }

    /// 400 places over a dozen countries, each with a category and reputation.
    private static func locations(using random: inout SplitMix64) -> [Traits] {
        let countries = ["US", "DE", "FR", "GB", "JP", "BR", "IN", "AU", "CA", "NL", "SE", "ZA"]
        return (0..<400).map { index in
            let country = countries[index % countries.count]
            return try! Traits(
                country: try! CountryCode(parsing: country),
                region: try! RegionCode(parsing: "\(country)-\(String(index % 17 + 1))", country: nil),
                city: "City \(index)",
                category: Category.allCases.randomElement(using: &random)!,
                reputation: ReputationTier.allCases.randomElement(using: &random)!)
        }
    }
}
