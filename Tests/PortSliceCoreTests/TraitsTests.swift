import Testing
@testable import PortSliceCore

@Suite("Traits")
struct TraitsTests {
    @Test func countryCodesAreTheAssignedOnes() throws {
        #expect(CountryCode.officialCodes.count == 249)
        #expect(Set(CountryCode.officialCodes).count == 249)
        #expect(try CountryCode(parsing: "de").rawValue == "DE")
        #expect(try CountryCode(parsing: "XK").rawValue == "XK")
        for text in ["UK", "EU", "ZZ", "USA", "U", "", "1A"] {
            #expect(throws: TraitError.unknownCountry(text)) { try CountryCode(parsing: text) }
        }
    }

    @Test func regionMustAgreeWithCountry() throws {
        let us = try CountryCode(parsing: "US")
        #expect(try RegionCode(parsing: "us-ca", country: us).rawValue == "US-CA")
        #expect(try RegionCode(parsing: "GB-ENG", country: nil).country.rawValue == "GB")
        #expect(throws: TraitError.regionOutsideCountry(region: "CA-ON", country: "US")) {
            try RegionCode(parsing: "CA-ON", country: us)
        }
        for text in ["US", "US-", "US-ABCD", "USCA", "QQ-CA", "US-C_"] {
            #expect(throws: TraitError.badRegion(text)) { try RegionCode(parsing: text, country: nil) }
        }
        #expect(throws: TraitError.regionWithoutCountry(region: "US-CA")) {
            try Traits(region: try RegionCode(parsing: "US-CA", country: nil))
        }
        #expect(throws: TraitError.regionOutsideCountry(region: "US-CA", country: "DE")) {
            try Traits(country: try CountryCode(parsing: "DE"), region: try RegionCode(parsing: "US-CA", country: nil))
        }
    }

    @Test func categoryAndReputationParse() throws {
        #expect(try Category(parsing: "Mobile") == .mobile)
        #expect(throws: TraitError.unknownCategory("cellular")) { try Category(parsing: "cellular") }
        #expect(try ReputationTier(parsing: "HIGH") == .high)
        #expect(throws: TraitError.unknownReputation("great")) { try ReputationTier(parsing: "great") }
        #expect(TraitError.unknownCategory("cellular").description
            == "category 'cellular' is not one of residential, mobile, business, hosting, unknown")
    }

    @Test func tagsAreSortedAndUnique() throws {
        #expect(try Traits(tags: ["b", "a", "b", ""]).tags == ["a", "b"])
    }
}
