import Foundation
import PortSliceCore
import Testing
@testable import PortSliceAPI

/// The contract as values: routes and their paths, the wire form of the bodies, and how a
/// refused field is named.
@Suite("API contract")
struct ContractTests {
    @Test func routesAreUniqueAndPublicOnlyOutsideV1() {
        let operations = APIRoute.all.map { "\($0.method.rawValue) \($0.path)" }
        #expect(Set(operations).count == operations.count)
        #expect(APIRoute.all.filter { $0.roles.isEmpty }.map(\.path).sorted() == ["/geofeed.csv", "/healthz", "/metrics", "/openapi.yaml", "/readyz"])
        #expect(APIRoute.all.filter { $0.path.hasPrefix("/v1/") }.allSatisfy { !$0.roles.isEmpty })
        #expect(APIRoute.sliceTable.roles == [.admin, .viewer, .edge, .host])
        #expect(APIRoute.acquire.roles == [.host])
    }

    /// What agents send is read without `JSONDecoder`, to the same value; anything else is
    /// left to `JSONDecoder`.
    @Test func plainRenewalBodiesAreReadAsJSONDecoderReadsThem() throws {
        let plain = ["{}", #"{"ttlSeconds":60}"#, " \n{ \"ttlSeconds\" :\t7 }\r\n", #"{"ttlSeconds":0}"#, #"{"ttlSeconds":999999999}"#]
        for text in plain {
            let read = try #require(RenewRequest(plainJSON: Array(text.utf8)), "\(text)")
            #expect(read == (try JSONDecoder().decode(RenewRequest.self, from: Data(text.utf8))), "\(text)")
        }
        #expect(RenewRequest(plainJSON: Array(#"{"ttlSeconds": 86400}"#.utf8)) == RenewRequest(ttlSeconds: 86400))
        #expect(RenewRequest(plainJSON: Array("{ }".utf8)) == RenewRequest())
        let other = [
            "", "{", "}", "[]", #"{"ttlSeconds":060}"#, #"{"ttlSeconds":-5}"#, #"{"ttlSeconds":"60"}"#, #"{"ttlSeconds":null}"#,
            #"{"ttlSeconds":6.5}"#, #"{"ttlSeconds":1e3}"#, #"{"other":1}"#, #"{"ttlSeconds":60,}"#, #"{"ttlSeconds":60,"x":1}"#,
            #"{"ttlSeconds":60} x"#, #"{"ttlSeconds":1234567890}"#, #"{"ttl\u0053econds":60}"#, #"{"ttlSeconds":}"#,
        ]
        for text in other {
            #expect(RenewRequest(plainJSON: Array(text.utf8)) == nil, "\(text)")
        }
    }

    @Test func pathsAreFilledAndEncoded() {
        #expect(APIRoute.renew.path(["id": "42"]) == "/v1/leases/42/renew")
        #expect(APIRoute.renew.parameterNames == ["id"])
        #expect(APIRoute.rotateHost.path(["name": "a b/c"]) == "/v1/hosts/a%20b%2Fc/rotate")
        #expect(APIRoute.drain.path(["address": "203.0.113.10"]) == "/v1/pool/203.0.113.10/drain")
        #expect(APIRoute.capacity.parameterNames.isEmpty)
        // A prefix holds a '/', so its network and length are two segments; the colons are encoded.
        #expect(APIRoute.drainPrefix.path(["network": "2001:db8:10::", "length": "48"]) == "/v1/prefixes/2001%3Adb8%3A10%3A%3A/48/drain")
    }

    @Test func traitsTravelBesideTheRequestsOwnFields() throws {
        let traits = try Traits(country: CountryCode(parsing: "DE"), region: RegionCode(parsing: "DE-BE", country: nil), category: .hosting, tags: ["b", "a"])
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let json = String(decoding: try encoder.encode(AcquireRequest(count: 2, ttlSeconds: 60, traits: traits)), as: UTF8.self)
        #expect(json == #"{"category":"hosting","count":2,"country":"DE","region":"DE-BE","tags":["a","b"],"ttlSeconds":60}"#)
        #expect(try JSONDecoder().decode(AcquireRequest.self, from: Data(json.utf8)) == AcquireRequest(count: 2, ttlSeconds: 60, traits: traits))
        #expect(String(decoding: try encoder.encode(AcquireRequest()), as: UTF8.self) == "{}")
        let address = NewAddress(address: IPv4Address(203, 0, 113, 10), traits: traits, range: try PortRange(20000, 23999), slices: 4)
        #expect(try JSONDecoder().decode(NewAddress.self, from: try encoder.encode(address)) == address)
    }

    @Test(arguments: [
        (#"{"country": "XX"}"#, "country"),
        (#"{"country": "US", "region": "DE-BE"}"#, "region"),
        (#"{"region": "DE-BE"}"#, "region"),
        (#"{"category": "cellular"}"#, "category"),
        (#"{"reputation": "stellar"}"#, "reputation"),
    ])
    func aRefusedFieldIsNamed(json: String, field: String) {
        do {
            _ = try JSONDecoder().decode(AcquireRequest.self, from: Data(json.utf8))
            Issue.record("\(json) was accepted")
        } catch DecodingError.dataCorrupted(let context) {
            #expect(context.codingPath.map(\.stringValue) == [field])
            #expect(!context.debugDescription.isEmpty)
        } catch {
            Issue.record("\(json): \(error)")
        }
    }

    @Test func anAddressIsRequired() {
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(NewAddress.self, from: Data(#"{"country": "US"}"#.utf8)) }
    }

    @Test func leasesKeepTheirWireForm() throws {
        let lease = Lease(id: 7, host: "h1", slice: SliceID(address: IPv4Address(203, 0, 113, 10), index: 2),
                          ports: try PortSet(parsing: "22048-24095"), start: Moment(milliseconds: 1_000), expires: Moment(milliseconds: 61_000))
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let json = String(decoding: try encoder.encode(LeaseBody(lease, traits: nil)), as: UTF8.self)
        #expect(json == #"{"address":"203.0.113.10","expires":61000,"host":"h1","id":7,"ports":"22048-24095","slice":2,"start":1000}"#)
        let body = try JSONDecoder().decode(LeaseBody.self, from: Data(json.utf8))
        #expect(body.egressSlice == EgressSlice(address: IPv4Address(203, 0, 113, 10), ports: try PortSet(parsing: "22048-24095")))
        #expect(body.sliceID == lease.slice)
    }

    @Test func refusalsReadAsTheServerWordedThem() {
        let named = APIFailure(status: 400, body: Data(#"{"error":"'count' is missing","field":"count"}"#.utf8))
        #expect(named.message == "'count' is missing (field 'count')")
        #expect(named.description == "the allocator refused (HTTP 400): 'count' is missing (field 'count')")
        #expect(APIFailure(status: 502, body: Data("bad gateway".utf8)).message == "bad gateway")
    }

    @Test func aClientNamesItsAllocatorNeverItsToken() throws {
        let client = try AllocatorClient(base: "https://alloc.example:7300/", token: "h1.secret-part")
        #expect(client.base == "https://alloc.example:7300")
        #expect("\(client)" == "allocator at https://alloc.example:7300")
        #expect(throws: AllocatorClientError.self) { try AllocatorClient(base: "alloc.example:7300", token: "t") }
    }
}
