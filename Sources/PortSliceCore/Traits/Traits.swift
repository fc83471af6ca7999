/// What kind of network an address appears to belong to; services treat clients by it.
public enum Category: String, Hashable, Sendable, Codable, CaseIterable, CustomStringConvertible {
    case residential, mobile, business, hosting, unknown

    /// Parses the name in any letter case.
    public init(parsing text: some StringProtocol) throws(TraitError) {
        guard let category = Category(name: text.utf8) else { throw .unknownCategory(String(text)) }
        self = category
    }

    public var description: String { rawValue }
}

/// How well an address is regarded by reputation services, best first.
public enum ReputationTier: String, Hashable, Sendable, Codable, CaseIterable, Comparable, CustomStringConvertible {
    case high, medium, low

    /// Parses the name in any letter case.
    public init(parsing text: some StringProtocol) throws(TraitError) {
        guard let tier = ReputationTier(name: text.utf8) else { throw .unknownReputation(String(text)) }
        self = tier
    }

    /// 0 for high, 1 for medium, 2 for low: closeness between tiers is the difference.
    public var rank: Int {
        switch self {
        case .high: 0
        case .medium: 1
        case .low: 2
        }
    }

    public static func < (lhs: ReputationTier, rhs: ReputationTier) -> Bool { lhs.rank < rhs.rank }

    public var description: String { rawValue }
}

/// The traits of an address: where it appears to be, what kind of network, how it is regarded.
public struct Traits: Hashable, Sendable, Codable {
    public var country: CountryCode?
    public var region: RegionCode?
    public var city: String?
    public var category: Category
    public var reputation: ReputationTier?
    /// Free-form labels, sorted and without duplicates.
    public var tags: [String]

    /// - Throws: `TraitError.regionWithoutCountry` or `.regionOutsideCountry` when the region
    ///   does not agree with the country.
    public init(
        country: CountryCode? = nil, region: RegionCode? = nil, city: String? = nil,
        category: Category = .unknown, reputation: ReputationTier? = nil, tags: [String] = []
    ) throws(TraitError) {
        if let region {
            guard let country else { throw .regionWithoutCountry(region: region.rawValue) }
            guard region.country == country else {
                throw .regionOutsideCountry(region: region.rawValue, country: country.rawValue)
            }
        }
        self.country = country
        self.region = region
        self.city = city.flatMap { $0.isEmpty ? nil : $0 }
        self.category = category
        self.reputation = reputation
        self.tags = tags.isEmpty ? [] : Array(Set(tags.filter { !$0.isEmpty })).sorted()
    }

    /// No trait known.
    public static let unknown = try! Traits()

    /// `US/US-CA/Los Angeles, residential, high`: the known parts in order of closeness.
    public var summary: String {
        var place = [country?.rawValue, region?.rawValue, city].compactMap { $0 }.joined(separator: "/")
        if place.isEmpty { place = "unknown location" }
        var parts = [place, category.rawValue]
        if let reputation { parts.append("reputation \(reputation)") }
        if !tags.isEmpty { parts.append("tags " + tags.joined(separator: ";")) }
        return parts.joined(separator: ", ")
    }
}

public enum TraitError: Error, Hashable, Sendable, CustomStringConvertible {
    case unknownCountry(String)
    case badRegion(String)
    case regionOutsideCountry(region: String, country: String)
    case regionWithoutCountry(region: String)
    case unknownCategory(String)
    case unknownReputation(String)

    public var description: String {
        switch self {
        case .unknownCountry(let text):
            "country '\(text)' is not an ISO 3166-1 alpha-2 code (two letters, such as US or DE)"
        case .badRegion(let text):
            "region '\(text)' is not an ISO 3166-2 code (country code, hyphen, 1-3 letters or digits, such as US-CA)"
        case .regionOutsideCountry(let region, let country):
            "region '\(region)' does not belong to country '\(country)'; its code must start with '\(country)-'"
        case .regionWithoutCountry(let region):
            "region '\(region)' is given without a country; add the country '\(region.prefix(2))'"
        case .unknownCategory(let text):
            "category '\(text)' is not one of \(Category.allCases.map(\.rawValue).joined(separator: ", "))"
        case .unknownReputation(let text):
            "reputation '\(text)' is not one of \(ReputationTier.allCases.map(\.rawValue).joined(separator: ", "))"
        }
    }
}

extension CaseIterable where Self: RawRepresentable<String> {
    /// The case whose lower-case name `bytes` spell in any letter case, without building a String.
    init?(name bytes: some Collection<UInt8>) {
        let match = Self.allCases.first { candidate in
            candidate.rawValue.utf8.count == bytes.count
                && zip(candidate.rawValue.utf8, bytes).allSatisfy { $0 == ((65...90).contains($1) ? $1 | 0x20 : $1) }
        }
        guard let match else { return nil }
        self = match
    }
}
