import Foundation
import PortSliceCore
import Testing
@testable import PortSliceAPI

/// Lease and error answers written by `JSONWriter` are what `JSONEncoder` writes for them, members and
/// escapes alike, up to the order of an object's members (which `JSONEncoder` leaves to
/// hashing): a client sees no difference between the two.
@Suite("JSON written without JSONEncoder")
struct JSONWriterTests {
    static let lease = Lease(
        id: 42, host: "host-7", slice: SliceID(address: IPv4Address(203, 0, 113, 10), index: 3),
        ports: try! PortSet(parsing: "20000-20999,22000-22009"),
        start: Moment(milliseconds: 1_800_000_000_000), expires: Moment(milliseconds: 1_800_000_060_000))

    static let prefixLease = PrefixLease(
        id: 9, host: "host-7", prefix: try! IPv6Prefix(parsing: "2001:db8:10:4::/64"), pool: try! IPv6Prefix(parsing: "2001:db8:10::/48"),
        start: Moment(milliseconds: 1_800_000_000_000), expires: Moment(milliseconds: 1_800_000_090_000))

    /// Every field of the traits, and a city and tags that need escaping.
    static let fullTraits = try! Traits(
        country: CountryCode(parsing: "DE"), region: RegionCode(parsing: "DE-BE", country: nil),
        city: "Ber\"lin\\/Mitte\u{1}\u{8}\u{C}\n\r\t\u{1F} Köln 東京", category: .hosting, reputation: .medium,
        tags: ["slash/tag", "quote\"tag", "plain"])

    static let answers: [LeaseList] = [
        LeaseList(leases: []),
        LeaseList(leases: [], prefixLeases: []),
        LeaseList(leases: [LeaseBody(lease, traits: nil)]),
        LeaseList(leases: [LeaseBody(lease, traits: .unknown), LeaseBody(lease, traits: fullTraits)],
                  prefixLeases: [PrefixLeaseBody(prefixLease, traits: fullTraits), PrefixLeaseBody(prefixLease, traits: nil)]),
        LeaseList(leases: [LeaseBody(lease, traits: try! Traits(country: CountryCode(parsing: "US"), category: .residential))]),
    ]

    @Test(arguments: answers.indices)
    func leaseListsAreWhatJSONEncoderWrites(index: Int) throws {
        let answer = Self.answers[index]
        let written = JSONWriter.encode(answer)
        let ours = try Self.canonical(written), foundations = try Self.canonical(try JSONEncoder().encode(answer))
        #expect(ours == foundations)
        #expect(try JSONDecoder().decode(LeaseList.self, from: Data(written)) == answer)
    }

    @Test func oneLeaseIsWhatJSONEncoderWrites() throws {
        let body = LeaseBody(Self.lease, traits: Self.fullTraits)
        let ours = try Self.canonical(JSONWriter.encode(body)), foundations = try Self.canonical(try JSONEncoder().encode(body))
        #expect(ours == foundations)
        #expect(ours.contains(#""city":"Ber\"lin\\\/Mitte\u0001\b\f\n\r\t\u001f Köln 東京""#), "every escape kept")
        #expect(String(decoding: JSONWriter.encode(Traits.unknown), as: UTF8.self) == #"{"category":"unknown","tags":[]}"#)
    }

    @Test func errorAnswersAreWhatJSONEncoderWrites() throws {
        for body in [ErrorBody(error: "database unavailable"), ErrorBody(error: "'ttlSeconds' has the \"wrong\" type", field: "ttlSeconds")] {
            let written = JSONWriter.encode(body)
            #expect(try Self.canonical(written) == Self.canonical(try JSONEncoder().encode(body)))
            #expect(try JSONDecoder().decode(ErrorBody.self, from: Data(written)) == body)
        }
        #expect(String(decoding: JSONWriter.encode(ErrorBody(error: "gone", field: "id")), as: UTF8.self) == #"{"error":"gone","field":"id"}"#)
        #expect(String(decoding: JSONWriter.encode(ErrorBody(error: "gone")), as: UTF8.self) == #"{"error":"gone"}"#)
    }

    /// The same JSON text with every object's members sorted by name.
    static func canonical(_ json: some Sequence<UInt8>) throws -> String {
        let parsed = try JSONSerialization.jsonObject(with: Data(json))
        return String(decoding: try JSONSerialization.data(withJSONObject: parsed, options: [.sortedKeys]), as: UTF8.self)
    }
}
