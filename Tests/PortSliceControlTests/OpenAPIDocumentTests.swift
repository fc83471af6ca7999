import Foundation
import Hummingbird
import HummingbirdTesting
import PortSliceAPI
import PortSliceCore
import PortSliceStore
import Synchronization
import Testing
import Yams
@testable import PortSliceControl

/// The OpenAPI document held to the code: the same operations and roles as `APIRoute.all`,
/// every body the API encodes valid under its schema, and the running API answering only
/// what the document says it may.
@Suite("OpenAPI document")
struct OpenAPIDocumentTests {
    // MARK: - The document itself

    @Test func parsesAsOpenAPI31() throws {
        let document = try Self.document()
        let version = try #require(document["openapi"] as? String)
        #expect(version.hasPrefix("3.1."), "openapi is \(version)")
        #expect((document["info"] as? [String: Any])?["title"] is String)
        #expect((document["info"] as? [String: Any])?["version"] is String)
    }

    @Test func operationsAreExactlyTheRoutes() throws {
        let document = try Self.document()
        let paths = try #require(document["paths"] as? [String: Any])
        var documented: Set<String> = []
        for (path, item) in paths {
            for method in (item as? [String: Any] ?? [:]).keys where Self.httpMethods.contains(method) {
                documented.insert("\(method.uppercased()) \(path)")
            }
        }
        let routes = Set(APIRoute.all.map(\.description))
        #expect(documented.subtracting(routes).isEmpty, "documented, but no such route: \(documented.subtracting(routes).sorted())")
        #expect(routes.subtracting(documented).isEmpty, "routes missing from the document: \(routes.subtracting(documented).sorted())")
    }

    @Test(arguments: APIRoute.all)
    func operationSecurityMatchesTheRoles(route: APIRoute) throws {
        let document = try Self.document()
        let operation = try #require(Self.operation(route, in: document), "\(route) is not documented")
        let security = (operation["security"] ?? document["security"]) as? [Any] ?? []
        if route.roles.isEmpty {
            #expect(security.isEmpty, "\(route) needs no token, so its security must be []")
            #expect((operation["description"] as? String)?.contains("Public") == true)
        } else {
            let schemes = (document["components"] as? [String: Any])?["securitySchemes"] as? [String: Any] ?? [:]
            let names = security.compactMap { ($0 as? [String: Any])?.keys }.flatMap { $0 }
            #expect(!names.isEmpty, "\(route) needs a token, but its security is empty")
            for name in names {
                let scheme = schemes[name] as? [String: Any]
                #expect(scheme?["type"] as? String == "http" && scheme?["scheme"] as? String == "bearer", "\(name) is not a bearer scheme")
            }
            for status in ["401", "403", "503"] {
                #expect((operation["responses"] as? [String: Any])?[status] != nil, "\(route) does not document \(status)")
            }
        }
        let listed = (operation["x-roles"] as? [Any] ?? []).map { "\($0)" }
        #expect(Set(listed) == Set(route.roles.map(\.rawValue)) && listed.count == route.roles.count, "\(route): x-roles \(listed)")
        let description = operation["description"] as? String ?? ""
        for role in route.roles {
            #expect(description.contains(role.rawValue), "\(route)'s description does not name the \(role) role")
        }
    }

    @Test(arguments: APIRoute.all)
    func operationParametersBodiesAndSuccessStatus(route: APIRoute) throws {
        let document = try Self.document()
        let validator = SchemaValidator(document: document)
        let operation = try #require(Self.operation(route, in: document))
        let parameters = (operation["parameters"] as? [Any] ?? []).compactMap { validator.resolved($0) as? [String: Any] }
        let inPath = parameters.filter { $0["in"] as? String == "path" }
        #expect(inPath.compactMap { $0["name"] as? String }.sorted() == route.parameterNames.sorted(), "\(route): path parameters")
        #expect(inPath.allSatisfy { $0["required"] as? Bool == true }, "\(route): path parameters must be required")
        let query = Dictionary(uniqueKeysWithValues: parameters.filter { $0["in"] as? String == "query" }.map {
            ($0["name"] as? String ?? "?", $0["required"] as? Bool ?? false)
        })
        #expect(query == Self.queryParameters[route, default: [:]], "\(route): query parameters \(query)")

        let body = operation["requestBody"].flatMap { validator.resolved($0) as? [String: Any] }
        #expect((body != nil) == (Self.bodyRequired[route] != nil), "\(route): request body")
        if let body, let required = Self.bodyRequired[route] {
            #expect((body["required"] as? Bool ?? false) == required, "\(route): request body required")
            #expect(((body["content"] as? [String: Any])?["application/json"] as? [String: Any])?["schema"] != nil)
            let responses = operation["responses"] as? [String: Any] ?? [:]
            #expect(responses["400"] != nil && responses["413"] != nil, "\(route) reads a body, so it answers 400 and 413")
        }

        let statuses = (operation["responses"] as? [String: Any] ?? [:]).keys
        #expect(statuses.filter { $0.hasPrefix("2") }.sorted() == [String(Self.successStatus(route))], "\(route): success statuses \(statuses.sorted())")
        for status in statuses {
            #expect(Self.documentedStatuses.contains(status), "\(route) documents \(status), which the API never answers")
        }
    }

    @Test func everyReferenceResolves() throws {
        let document = try Self.document()
        let validator = SchemaValidator(document: document)
        var references: [String] = []
        Self.collectReferences(document, into: &references)
        #expect(references.count > 50, "the walk found \(references.count) references")
        for reference in Set(references) {
            #expect(validator.resolve(reference) != nil, "\(reference) does not resolve")
        }
        // Every schema an operation names, directly or through a shared response or body.
        let paths = try #require(document["paths"] as? [String: Any])
        var fromOperations: [String] = []
        Self.collectReferences(paths, into: &fromOperations)
        var seen: Set<String> = []
        while let reference = fromOperations.popLast() {
            guard seen.insert(reference).inserted else { continue }
            let target = try #require(validator.resolve(reference), "\(reference) does not resolve")
            Self.collectReferences(target, into: &fromOperations)
        }
        for name in ["LeaseList", "LeaseBody", "IssuedToken", "SliceTable", "Holders", "CapacityReport", "Readiness", "ErrorBody",
                     "NewHost", "NewEdge", "NewViewer", "AcquireRequest", "RenewRequest", "NewAddress", "AssignmentRecord", "Traits", "Moment",
                     "HostList", "HostBody", "EdgeList", "EdgeBody", "PoolList", "PoolAddressBody", "Geofeed"] {
            #expect(seen.contains("#/components/schemas/\(name)"), "no operation reaches \(name)")
        }
    }

    /// The validator below checks only the keywords it knows; a schema using any other would
    /// pass unchecked, so the document may not.
    @Test func schemasUseOnlyCheckedKeywords() throws {
        let document = try Self.document()
        let schemas = try #require((document["components"] as? [String: Any])?["schemas"] as? [String: Any])
        func check(_ schema: Any, _ path: String) {
            guard let schema = schema as? [String: Any] else { return }
            let unknown = Set(schema.keys).subtracting(SchemaValidator.keywords)
            #expect(unknown.isEmpty, "\(path) uses \(unknown.sorted())")
            if schema["type"] as? String == "object" || (schema["type"] as? [Any])?.contains(where: { $0 as? String == "object" }) == true,
               schema["properties"] != nil {
                #expect(schema["additionalProperties"] as? Bool == false, "\(path) must say additionalProperties: false")
            }
            for (name, property) in schema["properties"] as? [String: Any] ?? [:] { check(property, "\(path).\(name)") }
            if let items = schema["items"] { check(items, "\(path)[]") }
            if let additional = schema["additionalProperties"] { check(additional, "\(path).*") }
            for (index, branch) in (schema["anyOf"] as? [Any] ?? []).enumerated() { check(branch, "\(path).anyOf[\(index)]") }
            for name in (schema["required"] as? [Any] ?? []).map({ "\($0)" }) {
                #expect((schema["properties"] as? [String: Any])?[name] != nil, "\(path) requires \(name), which it does not describe")
            }
        }
        for (name, schema) in schemas { check(schema, name) }
    }

    @Test func enumsMatchTheSwiftEnums() throws {
        let document = try Self.document()
        let schemas = try #require((document["components"] as? [String: Any])?["schemas"] as? [String: Any])
        func cases(_ name: String) -> [String] { ((schemas[name] as? [String: Any])?["enum"] as? [Any] ?? []).map { "\($0)" } }
        #expect(cases("SliceStatus") == SliceStatus.allCases.map(\.rawValue))
        #expect(cases("Category") == Category.allCases.map(\.rawValue))
        #expect(cases("ReputationTier") == ReputationTier.allCases.map(\.rawValue))
    }

    // MARK: - Bodies against their schemas

    @Test(arguments: BodySample.all)
    func bodyMatchesItsSchema(sample: BodySample) throws {
        let validator = SchemaValidator(document: try Self.document())
        let data = try sample.encode()
        let errors = validator.errors(try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]), schemaNamed: sample.schema)
        #expect(errors.isEmpty, "\(sample.testDescription): \(errors) in \(String(decoding: data, as: UTF8.self))")
    }

    /// Requests may send null for an optional field, as the document says: the server reads it
    /// as absent.
    @Test func nullCountsAsAbsentInRequests() throws {
        let validator = SchemaValidator(document: try Self.document())
        let acquire = #"{"count": null, "ttlSeconds": null, "country": null, "region": null, "city": null, "category": null, "reputation": null, "tags": null}"#
        #expect(try JSONDecoder().decode(AcquireRequest.self, from: Data(acquire.utf8)) == AcquireRequest())
        #expect(validator.errors(try Self.parse(acquire), schemaNamed: "AcquireRequest").isEmpty)
        let address = #"{"address": "203.0.113.10", "range": null, "sliceSize": null, "slices": null, "country": null, "tags": null}"#
        #expect(try JSONDecoder().decode(NewAddress.self, from: Data(address.utf8)) == NewAddress(address: IPv4Address(203, 0, 113, 10)))
        #expect(validator.errors(try Self.parse(address), schemaNamed: "NewAddress").isEmpty)
        #expect(try JSONDecoder().decode(RenewRequest.self, from: Data(#"{"ttlSeconds": null}"#.utf8)) == RenewRequest())
        #expect(validator.errors(try Self.parse(#"{"ttlSeconds": null}"#), schemaNamed: "RenewRequest").isEmpty)
        #expect(try JSONDecoder().decode(NewHost.self, from: Data(#"{"name": "h1", "labels": null}"#.utf8)) == NewHost(name: "h1"))
        #expect(validator.errors(try Self.parse(#"{"name": "h1", "labels": null}"#), schemaNamed: "NewHost").isEmpty)
        // Requests in other letter cases are read too.
        let lenient = #"{"country": "us", "region": "us-ca", "category": "Residential", "reputation": "HIGH"}"#
        #expect(try JSONDecoder().decode(AcquireRequest.self, from: Data(lenient.utf8)).traits == (try BodyFixture.traits(city: nil, tags: [])))
        #expect(validator.errors(try Self.parse(lenient), schemaNamed: "AcquireRequest").isEmpty)
    }

    /// The validator refuses what it should, so a passing body means something.
    @Test(arguments: [
        ("LeaseBody", "id", nil as String?, "a lease without its id"),
        ("LeaseBody", "id", #""7""#, "an id as a string"),
        ("LeaseBody", "color", #""red""#, "a field the schema does not have"),
        ("LeaseBody", "address", #""203.0.113.300""#, "an address that is not one"),
        ("LeaseBody", "ports", #""20000-""#, "ports that are not a port set"),
        ("LeaseBody", "start", #"{"milliseconds": 1}"#, "a time as an object where a number is wanted"),
        ("LeaseBody", "slice", "true", "a boolean where an integer is wanted"),
        ("LeaseBody", "slice", "1.5", "a fraction where an integer is wanted"),
        ("LeaseBody", "traits", #"{"category": "residential", "tags": "lab"}"#, "tags as a string"),
        ("LeaseBody", "traits", #"{"category": "residential"}"#, "traits without tags"),
        ("LeaseBody", "traits", #"{"category": "cellular", "tags": []}"#, "an unknown category"),
        ("LeaseBody", "traits", #"{"category": "residential", "tags": [], "country": "us"}"#, "a country in lower case in an answer"),
        ("LeaseBody", "host", "null", "null in an answer"),
        ("Readiness", "ready", "1", "a number where a boolean is wanted"),
        ("ErrorBody", "field", "null", "null where absence is meant"),
        ("AcquireRequest", "count", #""two""#, "a count as a string"),
        ("AcquireRequest", "count", "0", "a count below the minimum"),
        ("AcquireRequest", "category", #""cellular""#, "an unknown category in a request"),
        ("AcquireRequest", "tags", #"["a", 1]"#, "a tag that is not a string"),
        ("NewAddress", "range", "7", "a range as a number"),
        ("NewHost", "name", #""Bad Name""#, "a host name with a space"),
        ("NewHost", "labels", #"{"rack": 1}"#, "a label that is not a string"),
        ("NewViewer", "name", #""Ann Smith""#, "a viewer name with a space"),
        ("HostBody", "lastRenewal", #"{"milliseconds": 1}"#, "a renewal time as an object"),
        ("HostBody", "renewalLate", "1", "a number where a boolean is wanted"),
        ("HostBody", "wants", #"[{"category": "residential"}]"#, "wanted traits without tags"),
        ("HostBody", "labels", nil, "a host without its labels"),
        ("EdgeBody", "versionsBehind", "-1", "a negative lag"),
        ("EdgeBody", "appliedVersion", #""3""#, "a version as a string"),
        ("EdgeList", "tableVersion", nil, "edges without the table's version"),
        ("PoolAddressBody", "draining", #""no""#, "a string where a boolean is wanted"),
        ("PoolAddressBody", "summary", nil, "an address without its summary"),
    ])
    func validatorRefusesWrongValues(schema: String, field: String, value: String?, why: String) throws {
        let validator = SchemaValidator(document: try Self.document())
        let good = try #require(BodySample.all.first { $0.schema == schema }?.json() as? [String: Any])
        var wrong = good
        wrong[field] = try value.map { try Self.parse($0) }
        if value == nil { #expect(good[field] != nil, "the sample has no \(field) to take away") }
        #expect(validator.errors(good, schemaNamed: schema).isEmpty)
        #expect(!validator.errors(wrong, schemaNamed: schema).isEmpty, "\(why) passed")
    }

    @Test func validatorRefusesWrongTables() throws {
        let validator = SchemaValidator(document: try Self.document())
        let table = try #require(try BodySample.all.first { $0.schema == "SliceTable" }?.json() as? [String: Any])
        var slices = try #require(table["slices"] as? [[String: Any]])
        #expect(slices.count >= 4)
        slices[0]["state"] = "borrowed"
        var wrong = table
        wrong["slices"] = slices
        #expect(!validator.errors(wrong, schemaNamed: "SliceTable").isEmpty, "a slice state 'borrowed' passed")
        let holders = try #require(try BodySample.all.first { $0.schema == "Holders" && $0.label.contains("ended") }?.json() as? [String: Any])
        var records = try #require(holders["records"] as? [[String: Any]])
        records[0]["start"] = (records[0]["start"] as? [String: Any])?["milliseconds"]
        #expect(!validator.errors(["records": records], schemaNamed: "Holders").isEmpty, "a bare number for a Moment passed")
        #expect(!validator.errors([:] as [String: Any], schemaNamed: "NoSuchSchema").isEmpty, "a dangling $ref passed")
        // The published feed has RFC 8805's five columns, never portslice's trait columns.
        let pool = [EgressAddress(address: BodyFixture.address, traits: try BodyFixture.traits())]
        #expect(validator.errors(Geofeed(pool: pool).csv(columns: .standard), schemaNamed: "Geofeed").isEmpty)
        #expect(!validator.errors(Geofeed(pool: pool).csv(columns: .withTraits), schemaNamed: "Geofeed").isEmpty, "a feed with trait columns passed")
        #expect(!validator.errors("203.0.113.10/32,US,US-CA,Los Angeles", schemaNamed: "Geofeed").isEmpty, "a line of four columns passed")
        #expect(!validator.errors([] as [Any], schemaNamed: "Holders").isEmpty, "an array for an object passed")
    }

    // MARK: - The running API

    @Test func servedAtOpenAPIYAML() async throws {
        try await withAPI { client, _ in
            try await client.execute(uri: "/openapi.yaml", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.contentType]?.hasPrefix("application/yaml") == true, "\(response.headers)")
                #expect(String(buffer: response.body) == OpenAPIDocument.yaml)
            }
        }
    }

    /// Every route called in process, with successes and refusals: each answer's status is one
    /// the document lists for the operation, its content type one it names, and its body valid
    /// under the schema; every request that succeeds was valid under its request schema.
    @Test func answersOfTheRunningAPIMatchTheDocument() async throws {
        try await withAPI { client, clock in
            var probe = try APIProbe(client: client)
            let admin = Self.adminToken
            #expect(try await probe.call(.health, token: nil).status == 200)
            #expect(try await probe.call(.readiness, token: nil).status == 200)
            #expect(try await probe.call(.metrics, token: nil).status == 200)
            #expect(try await probe.call(.openAPIDocument, token: nil).status == 200)
            #expect(try await probe.call(.geofeed, token: nil).status == 200, "an empty pool is an empty feed")

            let first = #"{"address": "203.0.113.10", "country": "US", "region": "US-CA", "city": "Los Angeles", "category": "residential", "reputation": "high", "tags": ["lab"], "range": "20000-23999", "slices": 4}"#
            #expect(try await probe.call(.addAddress, token: admin, json: first).status == 201)
            #expect(try await probe.call(.addAddress, token: admin, json: first).status == 409)
            #expect(try await probe.call(.addAddress, token: admin, json: #"{"address": "198.51.100.7", "range": "30000-32047", "sliceSize": 1024}"#).status == 201)
            #expect(try await probe.call(.addAddress, token: admin, json: #"{"address": "198.51.100.8", "sliceSize": 1024, "slices": 2}"#, valid: false).status == 400)

            let (hostStatus, hostBody) = try await probe.call(.addHost, token: admin, json: #"{"name": "h1", "labels": {"rack": "a1"}}"#)
            #expect(hostStatus == 201)
            let host = try #require((hostBody as? [String: Any])?["token"] as? String)
            #expect(try await probe.call(.addHost, token: admin, json: #"{"name": "Bad Name"}"#, valid: false).status == 400)
            #expect(try await probe.call(.addHost, token: admin, json: #"{"name": "h1"}"#).status == 409)
            let (edgeStatus, edgeBody) = try await probe.call(.addEdge, token: admin, json: #"{"name": "e1"}"#)
            #expect(edgeStatus == 201)
            let edge = try #require((edgeBody as? [String: Any])?["token"] as? String)
            let (viewerStatus, viewerBody) = try await probe.call(.addViewer, token: admin, json: #"{"name": "ann"}"#)
            #expect(viewerStatus == 201)
            let viewer = try #require((viewerBody as? [String: Any])?["token"] as? String)
            #expect(try await probe.call(.addViewer, token: admin, json: #"{"name": "ann"}"#).status == 409)
            #expect(try await probe.call(.addViewer, token: admin, json: #"{"name": "Ann Smith"}"#, valid: false).status == 400)
            #expect(try await probe.call(.addViewer, token: viewer, json: #"{"name": "bob"}"#).status == 403)
            #expect(try await probe.call(.addHost, token: viewer, json: #"{"name": "h2"}"#).status == 403)
            #expect(try await probe.call(.addAddress, token: viewer, json: #"{"address": "198.51.100.9"}"#).status == 403)

            let (acquired, leases) = try await probe.call(
                .acquire, token: host, json: #"{"count": 4, "ttlSeconds": 60, "country": "US", "region": "US-CA", "category": "residential"}"#)
            #expect(acquired == 201)
            let lease = try #require(((leases as? [String: Any])?["leases"] as? [[String: Any]])?.first)
            let id = try #require(lease["id"] as? Int)
            let port = try #require((lease["ports"] as? String)?.split(separator: "-").first)
            #expect(try await probe.call(.acquire, token: host, json: #"{"count": 64}"#).status == 503)
            #expect(try await probe.call(.acquire, token: host, json: #"{"count": 0}"#, valid: false).status == 400)
            #expect(try await probe.call(.acquire, token: admin, json: "{}").status == 403)
            let (capacity, report) = try await probe.call(.capacity, token: admin)
            #expect(capacity == 200)
            let warnings = ((report as? [String: Any])?["classes"] as? [[String: Any]])?.map { $0["warning"] != nil }
            #expect(warnings?.sorted { !$0 && $1 } == [false, true], "one class full, one not: \(report ?? "")")

            #expect(try await probe.call(.listLeases, token: admin).status == 200)
            #expect(try await probe.call(.listLeases, token: host).status == 200)
            #expect(try await probe.call(.listLeases, token: nil).status == 401)
            #expect(try await probe.call(.listLeases, token: edge).status == 403)
            let (viewed, viewedLeases) = try await probe.call(.listLeases, token: viewer)
            #expect(viewed == 200)
            #expect(((viewedLeases as? [String: Any])?["leases"] as? [Any])?.count == 4, "a viewer sees every lease: \(viewedLeases ?? "")")
            #expect(try await probe.call(.capacity, token: viewer).status == 200)
            #expect(try await probe.call(.capacity, token: host).status == 403)

            let (hostsStatus, hosts) = try await probe.call(.listHosts, token: viewer)
            #expect(hostsStatus == 200)
            let listedHost = try #require(((hosts as? [String: Any])?["hosts"] as? [[String: Any]])?.first)
            #expect(listedHost["name"] as? String == "h1" && listedHost["leases"] as? Int == 4, "\(listedHost)")
            #expect(listedHost["lastRenewal"] != nil && (listedHost["wants"] as? [Any])?.count == 1, "\(listedHost)")
            #expect(try await probe.call(.listHosts, token: admin).status == 200)
            #expect(try await probe.call(.listHosts, token: host).status == 403)
            #expect(try await probe.call(.listHosts, token: nil).status == 401)
            let (poolStatus, pool) = try await probe.call(.listPool, token: viewer)
            #expect(poolStatus == 200)
            #expect(((pool as? [String: Any])?["addresses"] as? [Any])?.count == 2, "\(pool ?? "")")
            #expect(try await probe.call(.listPool, token: admin).status == 200)
            #expect(try await probe.call(.listPool, token: edge).status == 403)

            let (feedStatus, _) = try await probe.call(.geofeed, token: nil)
            #expect(feedStatus == 200)
            let tag = try #require(probe.lastHeaders[.eTag])
            #expect(probe.lastText?.split(separator: "\n").count == 2, "one line per address: \(probe.lastText ?? "")")
            #expect(try await probe.call(.geofeed, token: nil, headers: [.ifNoneMatch: tag]).status == 304)
            #expect(probe.lastHeaders[.eTag] == tag)
            #expect(try await probe.call(.geofeed, token: admin, headers: [.ifNoneMatch: #""0123""#]).status == 200)
            #expect(try await probe.call(.renewAll, token: host, json: #"{"ttlSeconds": 90}"#).status == 200)
            #expect(try await probe.call(.renewAll, token: host, json: #"{"ttlSeconds": 1}"#, valid: false).status == 400)
            let large = #"{"ttlSeconds": 90, "padding": ""# + String(repeating: "x", count: 70_000) + #""}"#
            #expect(try await probe.call(.renewAll, token: host, json: large, valid: false).status == 413)
            #expect(try await probe.call(.renew, ["id": "\(id)"], token: host, json: #"{"ttlSeconds": 120}"#).status == 200)
            #expect(try await probe.call(.renew, ["id": "99999"], token: host, json: "{}").status == 404)
            #expect(try await probe.call(.renew, ["id": "abc"], token: host, json: "{}").status == 400)

            #expect(try await probe.call(.sliceTable, token: admin).status == 200)
            #expect(try await probe.call(.sliceTable, token: edge).status == 200)
            #expect(try await probe.call(.sliceTable, query: "since=0", token: host).status == 200)
            #expect(try await probe.call(.sliceTable, query: "since=x", token: edge).status == 400)
            #expect(try await probe.call(.sliceTable, token: viewer).status == 200)
            let (unreported, edgesBefore) = try await probe.call(.listEdges, token: viewer)
            #expect(unreported == 200)
            let before = try #require(((edgesBefore as? [String: Any])?["edges"] as? [[String: Any]])?.first)
            #expect(before["name"] as? String == "e1" && before["appliedVersion"] == nil && before["versionsBehind"] == nil, "\(before)")
            let (tableStatus, table) = try await probe.call(.sliceTable, query: "applied=0", token: edge)
            #expect(tableStatus == 200)
            let version = try #require((table as? [String: Any])?["version"] as? Int)
            #expect(try await probe.call(.sliceTable, query: "applied=-1", token: edge).status == 400)
            #expect(try await probe.call(.sliceTable, query: "applied=x", token: edge).status == 400)
            #expect(try await probe.call(.sliceTable, query: "applied=x", token: viewer).status == 200, "a viewer's applied is ignored")
            #expect(try await probe.call(.sliceTable, query: "applied=x", token: host).status == 200, "a host's applied is ignored")
            let (reported, edgesAfter) = try await probe.call(.listEdges, token: admin)
            #expect(reported == 200)
            let after = try #require(((edgesAfter as? [String: Any])?["edges"] as? [[String: Any]])?.first)
            #expect(after["appliedVersion"] as? Int == 0 && after["versionsBehind"] as? Int == version && after["lastReport"] != nil, "\(after)")
            #expect(try await probe.call(.listEdges, token: edge).status == 403)

            clock.advance(.seconds(5))
            #expect(try await probe.call(.release, ["id": "\(id)"], token: host).status == 204)
            #expect(try await probe.call(.release, ["id": "\(id)"], token: host).status == 410)
            #expect(try await probe.call(.release, ["id": "99999"], token: host).status == 404)
            #expect(try await probe.call(.renew, ["id": "\(id)"], token: host, json: "{}").status == 410)
            let at = Self.start.milliseconds + 1_000
            let (found, holders) = try await probe.call(.who, query: "address=203.0.113.10&port=\(port)&at=\(at)", token: admin)
            #expect(found == 200)
            let record = try #require(((holders as? [String: Any])?["records"] as? [[String: Any]])?.first)
            #expect(record["end"] != nil, "the released lease's record has ended: \(record)")
            #expect(try await probe.call(.who, query: "address=203.0.113.10&port=x&at=\(at)", token: admin).status == 400)
            #expect(try await probe.call(.who, query: "address=203.0.113.10&port=\(port)&at=\(at)", token: viewer).status == 200)

            // IPv6 prefixes: added, leased by closeness and the host's keyed hash, logged, drained.
            let block = #"{"prefix": "2001:db8:10::/48", "country": "US", "region": "US-CA", "city": "Los Angeles", "category": "residential", "leaseLength": 64}"#
            #expect(try await probe.call(.addPrefix, token: admin, json: block).status == 201)
            #expect(try await probe.call(.addPrefix, token: admin, json: block).status == 409)
            #expect(try await probe.call(.addPrefix, token: admin, json: #"{"prefix": "2001:db8:10:100::/56"}"#).status == 409, "overlaps")
            #expect(try await probe.call(.addPrefix, token: admin, json: #"{"prefix": "2001:db8:20::/48", "leaseLength": 48}"#, valid: false).status == 400)
            #expect(try await probe.call(.addPrefix, token: admin, json: #"{"prefix": "2001:db8:20::1/48"}"#).status == 400)
            #expect(try await probe.call(.addPrefix, token: viewer, json: #"{"prefix": "2001:db8:20::/48"}"#).status == 403)
            let (prefixesStatus, prefixes) = try await probe.call(.listPrefixes, token: viewer)
            #expect(prefixesStatus == 200)
            #expect(((prefixes as? [String: Any])?["prefixes"] as? [[String: Any]])?.first?["leaseLength"] as? Int == 64)
            let (leasedPrefix, prefixLeases) = try await probe.call(.acquirePrefixes, token: host, json: #"{"ttlSeconds": 60, "country": "US"}"#)
            #expect(leasedPrefix == 201)
            let prefixLease = try #require(((prefixLeases as? [String: Any])?["prefixLeases"] as? [[String: Any]])?.first)
            #expect(prefixLease["prefix"] as? String == "2001:db8:10:9026::/64")
            let prefixID = try #require(prefixLease["id"] as? Int)
            #expect(try await probe.call(.acquirePrefixes, token: host, json: #"{"count": 0}"#, valid: false).status == 400)
            #expect(try await probe.call(.acquirePrefixes, token: admin, json: "{}").status == 403)
            let leasedAt = Self.start.milliseconds + 6_000
            let (whoStatus, prefixHolders) = try await probe.call(.who, query: "address=2001:db8:10:9026::1234&at=\(leasedAt)", token: viewer)
            #expect(whoStatus == 200)
            #expect(((prefixHolders as? [String: Any])?["prefixRecords"] as? [[String: Any]])?.map { $0["host"] as? String } == ["h1"])
            let (_, nobody) = try await probe.call(.who, query: "address=2001:db8:10:9027::1&at=\(leasedAt)", token: admin)
            #expect(((nobody as? [String: Any])?["prefixRecords"] as? [Any])?.isEmpty == true)
            #expect(try await probe.call(.who, query: "address=203.0.113.10&at=\(leasedAt)", token: admin).status == 400, "IPv4 needs a port")
            let (_, hostTable) = try await probe.call(.sliceTable, token: host)
            #expect(((hostTable as? [String: Any])?["prefixes"] as? [Any])?.count == 1)
            #expect(try await probe.call(.geofeed, token: nil).status == 200)
            #expect(probe.lastText?.split(separator: "\n").last == "2001:db8:10::/48,US,US-CA,Los Angeles,", "the prefix after the addresses: \(probe.lastText ?? "")")
            #expect(try await probe.call(.renewAll, token: host, json: #"{"ttlSeconds": 90}"#).status == 200)
            #expect(try await probe.call(.releasePrefix, ["id": "\(prefixID)"], token: host).status == 204)
            #expect(try await probe.call(.releasePrefix, ["id": "\(prefixID)"], token: host).status == 410)
            #expect(try await probe.call(.releasePrefix, ["id": "99999"], token: host).status == 404)
            #expect(try await probe.call(.drainPrefix, ["network": "2001:db8:10::", "length": "48"], token: admin).status == 204)
            #expect(try await probe.call(.drainPrefix, ["network": "2001:db8:99::", "length": "48"], token: admin).status == 404)
            #expect(try await probe.call(.drainPrefix, ["network": "2001:db8:10::", "length": "200"], token: admin).status == 400)
            #expect(try await probe.call(.removePrefix, ["network": "2001:db8:10::", "length": "48"], token: admin).status == 409, "quarantined")
            #expect(try await probe.call(.addPrefix, token: admin, json: #"{"prefix": "2001:db8:30::/48"}"#).status == 201)
            #expect(try await probe.call(.removePrefix, ["network": "2001:db8:30::", "length": "48"], token: admin).status == 204)
            #expect(try await probe.call(.removePrefix, ["network": "2001:db8:30::", "length": "48"], token: admin).status == 404)

            #expect(try await probe.call(.drain, ["address": "203.0.113.10"], token: admin).status == 204)
            #expect(try await probe.call(.drain, ["address": "203.0.113.99"], token: admin).status == 404)
            #expect(try await probe.call(.drain, ["address": "203.0.113"], token: admin).status == 400)
            #expect(try await probe.call(.removeAddress, ["address": "203.0.113.10"], token: admin).status == 409)
            #expect(try await probe.call(.removeAddress, ["address": "198.51.100.7"], token: admin).status == 204)
            #expect(try await probe.call(.removeAddress, ["address": "198.51.100.7"], token: admin).status == 404)

            #expect(try await probe.call(.rotateHost, ["name": "h1"], token: admin).status == 200)
            #expect(try await probe.call(.rotateHost, ["name": "nobody"], token: admin).status == 404)
            #expect(try await probe.call(.rotateEdge, ["name": "e1"], token: admin).status == 200)
            #expect(try await probe.call(.rotateEdge, ["name": "nobody"], token: admin).status == 404)
            #expect(try await probe.call(.removeEdge, ["name": "e1"], token: admin).status == 204)
            #expect(try await probe.call(.removeEdge, ["name": "e1"], token: admin).status == 404)
            #expect(try await probe.call(.removeHost, ["name": "h1"], token: admin).status == 204)
            #expect(try await probe.call(.removeHost, ["name": "h1"], token: admin).status == 404)
            #expect(try await probe.call(.removeViewer, ["name": "ann"], token: viewer).status == 403)
            #expect(try await probe.call(.rotateViewer, ["name": "ann"], token: admin).status == 200)
            #expect(try await probe.call(.listPool, token: viewer).status == 401, "the rotated-away token no longer works")
            #expect(try await probe.call(.rotateViewer, ["name": "nobody"], token: admin).status == 404)
            #expect(try await probe.call(.removeViewer, ["name": "ann"], token: admin).status == 204)
            #expect(try await probe.call(.removeViewer, ["name": "ann"], token: admin).status == 404)

            let missed = Set(APIRoute.all).subtracting(probe.succeeded)
            #expect(missed.isEmpty, "routes never answered with success: \(missed.map(\.description).sorted())")
        }
    }

    // MARK: - Helpers

    static let adminToken = "admin-secret-for-openapi-tests"
    static let start = Moment(milliseconds: 1_800_000_000_000)
    static let httpMethods: Set<String> = ["get", "put", "post", "delete", "options", "head", "patch", "trace"]
    /// Every status `ControlAPI` and `APIError` answer with.
    static let documentedStatuses: Set<String> = ["200", "201", "204", "304", "400", "401", "403", "404", "409", "410", "413", "503"]
    static let queryParameters: [APIRoute: [String: Bool]] = [
        .who: ["address": true, "port": false, "at": true],
        .sliceTable: ["since": false, "applied": false],
    ]
    /// Routes that read a body, and whether it is required (a renewal may send none).
    static let bodyRequired: [APIRoute: Bool] = [
        .addHost: true, .addEdge: true, .addViewer: true, .acquire: true, .addAddress: true, .renewAll: false, .renew: false,
        .addPrefix: true, .acquirePrefixes: true,
    ]

    /// 201 for creations, 204 for answers without a body (deletions and draining), else 200.
    static func successStatus(_ route: APIRoute) -> Int {
        if route.method == .delete || route == .drain || route == .drainPrefix { return 204 }
        return [APIRoute.addHost, .addEdge, .addViewer, .acquire, .addAddress, .addPrefix, .acquirePrefixes].contains(route) ? 201 : 200
    }

    /// The document as dictionaries with string keys, arrays and scalars.
    static func document() throws -> [String: Any] {
        try #require(try parsedDocument.get() as? [String: Any], "the document is not a mapping")
    }

    /// Parsed once for every test and argument (a hundred of them): parsing was most of the
    /// suite's time, all of it on the two threads of the cooperative pool that every other test
    /// waits for. Never written after it is made, so it is safe to read from any test.
    nonisolated(unsafe) private static let parsedDocument = Result { plain(try Yams.load(yaml: OpenAPIDocument.yaml)) }

    static func plain(_ value: Any?) -> Any {
        switch value {
        case let mapping as [AnyHashable: Any]:
            Dictionary(uniqueKeysWithValues: mapping.map { ("\($0.key.base)", plain($0.value)) })
        case let sequence as [Any]: sequence.map(plain)
        case let scalar?: scalar
        case nil: NSNull()
        }
    }

    static func operation(_ route: APIRoute, in document: [String: Any]) -> [String: Any]? {
        ((document["paths"] as? [String: Any])?[route.path] as? [String: Any])?[route.method.rawValue.lowercased()] as? [String: Any]
    }

    static func collectReferences(_ node: Any, into references: inout [String]) {
        if let mapping = node as? [String: Any] {
            if let reference = mapping["$ref"] as? String { references.append(reference) }
            for value in mapping.values { collectReferences(value, into: &references) }
        } else if let sequence = node as? [Any] {
            for value in sequence { collectReferences(value, into: &references) }
        }
    }

    static func parse(_ json: String) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(json.utf8), options: [.fragmentsAllowed])
    }

    final class TestClock: Sendable {
        let moment = Mutex(OpenAPIDocumentTests.start)
        func advance(_ duration: Duration) { moment.withLock { $0 = $0 + duration } }
        var now: Moment { moment.withLock { $0 } }
    }

    private func withAPI(_ body: @Sendable (any TestClientProtocol, TestClock) async throws -> Void) async throws {
        let store = try await SQLSliceStore.openSQLite(path: nil)
        let clock = TestClock()
        var api = ControlAPI(store: store, adminTokenHash: HostToken.hash(of: Self.adminToken), now: { clock.now })
        api.longPollTimeout = .seconds(2)
        let app = Application(router: api.router())
        do {
            try await app.test(.router) { client in try await body(client, clock) }
        } catch {
            try await store.close()
            throw error
        }
        try await store.close()
    }
}

/// Calls the API in process and holds each exchange to the document.
struct APIProbe {
    let client: any TestClientProtocol
    let document: [String: Any]
    let validator: SchemaValidator
    /// Routes that answered with their success status at least once.
    private(set) var succeeded: Set<APIRoute> = []
    /// The header fields of the last answer.
    private(set) var lastHeaders: HTTPFields = [:]
    /// The last answer's body when it was text rather than JSON.
    private(set) var lastText: String?

    init(client: any TestClientProtocol) throws {
        self.client = client
        document = try OpenAPIDocumentTests.document()
        validator = SchemaValidator(document: document)
    }

    /// Sends one request and checks the answer against the operation's documented responses.
    /// - Parameters:
    ///   - valid: whether `json` is meant to be valid under the request schema (it is checked).
    /// - Returns: the status and the parsed JSON body (nil when not JSON).
    mutating func call(
        _ route: APIRoute, _ parameters: [String: String] = [:], query: String = "", token: String?, json: String? = nil, valid: Bool = true,
        headers extra: HTTPFields = [:], sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> (status: Int, body: Any?) {
        let operation = try #require(OpenAPIDocumentTests.operation(route, in: document), "\(route) is not documented", sourceLocation: sourceLocation)
        if let json, valid, json.utf8.count < 1000 {
            let body = try #require(operation["requestBody"].flatMap { validator.resolved($0) as? [String: Any] },
                                    "\(route) sends a body the document does not describe", sourceLocation: sourceLocation)
            let schema = ((body["content"] as? [String: Any])?["application/json"] as? [String: Any])?["schema"] ?? [:]
            let errors = validator.errors(try OpenAPIDocumentTests.parse(json), against: schema, at: "request")
            #expect(errors.isEmpty, "\(route) request \(json): \(errors)", sourceLocation: sourceLocation)
        }
        var headers = extra
        if json != nil { headers[.contentType] = "application/json" }
        if let token { headers[.authorization] = "Bearer \(token)" }
        let uri = route.path(parameters) + (query.isEmpty ? "" : "?\(query)")
        let (status, answerHeaders, data) = try await client.execute(
            uri: uri, method: HTTPRequest.Method(rawValue: route.method.rawValue)!, headers: headers, body: json.map { ByteBuffer(string: $0) }
        ) { response in
            (Int(response.status.code), response.headers, Data(response.body.readableBytesView))
        }
        let contentType = answerHeaders[.contentType]
        lastHeaders = answerHeaders
        lastText = nil
        let what = "\(route.method.rawValue) \(uri) -> \(status)"
        if status == OpenAPIDocumentTests.successStatus(route) { succeeded.insert(route) }
        let responses = operation["responses"] as? [String: Any] ?? [:]
        let response = try #require(responses[String(status)].flatMap { validator.resolved($0) as? [String: Any] },
                                    "\(what) is not documented: \(String(decoding: data, as: UTF8.self))", sourceLocation: sourceLocation)
        // Every header the document names for the answer comes, valid under its schema.
        for (name, header) in response["headers"] as? [String: Any] ?? [:] {
            let value = try #require(answerHeaders.first { $0.name.canonicalName == name.lowercased() }?.value, "\(what): no \(name) header",
                                     sourceLocation: sourceLocation)
            let schema = (validator.resolved(header) as? [String: Any])?["schema"] ?? [:]
            let errors = validator.errors(value, against: schema, at: name)
            #expect(errors.isEmpty, "\(what): \(errors)", sourceLocation: sourceLocation)
        }
        guard let content = response["content"] as? [String: Any] else {
            #expect(data.isEmpty, "\(what): the document names no body, but one came", sourceLocation: sourceLocation)
            return (status, nil)
        }
        let mediaType = String((contentType ?? "").split(separator: ";").first ?? "").trimmingCharacters(in: .whitespaces)
        let media = try #require(content[mediaType] as? [String: Any], "\(what): content type \(contentType ?? "none") is not one of \(content.keys.sorted())",
                                 sourceLocation: sourceLocation)
        let schema = media["schema"] ?? [:]
        let value: Any = mediaType == "application/json" ? try OpenAPIDocumentTests.parse(String(decoding: data, as: UTF8.self)) : String(decoding: data, as: UTF8.self)
        if mediaType != "application/json" { lastText = String(decoding: data, as: UTF8.self) }
        let errors = validator.errors(value, against: schema, at: "answer")
        #expect(errors.isEmpty, "\(what): \(errors) in \(String(decoding: data.prefix(2000), as: UTF8.self))", sourceLocation: sourceLocation)
        return (status, mediaType == "application/json" ? value : nil)
    }
}

// MARK: - A small JSON Schema validator

/// Checks JSON (as `JSONSerialization` reads it) against the document's schemas: `$ref` to
/// `#/components/schemas/...`, `type` (one or a list), `properties`, `required`,
/// `additionalProperties` (false or a schema), `items`, `enum`, `const`, `anyOf`, `pattern`,
/// `minimum` and `maximum`. `format` and `description` are notes.
struct SchemaValidator {
    static let keywords: Set<String> = [
        "$ref", "type", "properties", "required", "additionalProperties", "items", "enum", "const", "anyOf", "pattern", "minimum", "maximum",
        "format", "description",
    ]

    let document: [String: Any]

    /// The node a local reference (`#/a/b`) points at.
    func resolve(_ reference: String) -> Any? {
        guard reference.hasPrefix("#/") else { return nil }
        var node: Any = document
        for part in reference.dropFirst(2).split(separator: "/", omittingEmptySubsequences: false) {
            let key = part.replacingOccurrences(of: "~1", with: "/").replacingOccurrences(of: "~0", with: "~")
            guard let next = (node as? [String: Any])?[key] else { return nil }
            node = next
        }
        return node
    }

    /// The node itself, or what its `$ref` points at (for parameters, bodies and responses).
    func resolved(_ node: Any) -> Any? {
        guard let reference = (node as? [String: Any])?["$ref"] as? String else { return node }
        return resolve(reference).flatMap(resolved)
    }

    func errors(_ value: Any, schemaNamed name: String) -> [String] {
        errors(value, against: ["$ref": "#/components/schemas/\(name)"], at: "$")
    }

    func errors(_ value: Any, against schema: Any, at path: String) -> [String] {
        if let allowed = schema as? Bool { return allowed ? [] : ["\(path): nothing is allowed here"] }
        guard let schema = schema as? [String: Any] else { return ["\(path): the schema is not an object"] }
        var errors: [String] = []
        if let reference = schema["$ref"] {
            guard let reference = reference as? String, reference.hasPrefix("#/components/schemas/"), let target = resolve(reference) else {
                return ["\(path): $ref \(reference) does not name a schema"]
            }
            errors += self.errors(value, against: target, at: path)
        }
        let actual = Self.type(of: value)
        if let type = schema["type"] {
            let allowed = (type as? [Any])?.map { "\($0)" } ?? ["\(type)"]
            guard allowed.contains(actual) || (actual == "integer" && allowed.contains("number")) else {
                return errors + ["\(path): \(actual) where \(allowed.joined(separator: " or ")) is wanted"]
            }
        }
        if let options = schema["enum"] as? [Any], !options.contains(where: { Self.equal($0, value) }) {
            errors.append("\(path): \(value) is not one of \(options)")
        }
        if let constant = schema["const"], !Self.equal(constant, value) {
            errors.append("\(path): \(value) is not \(constant)")
        }
        if let branches = schema["anyOf"] as? [Any], !branches.contains(where: { self.errors(value, against: $0, at: path).isEmpty }) {
            errors.append("\(path): \(value) matches none of anyOf")
        }
        if let text = value as? String, let pattern = schema["pattern"] as? String {
            if let expression = try? NSRegularExpression(pattern: pattern) {
                if expression.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) == nil {
                    errors.append("\(path): '\(text)' does not match \(pattern)")
                }
            } else {
                errors.append("\(path): pattern \(pattern) does not compile")
            }
        }
        if actual == "integer" || actual == "number", let number = (value as? NSNumber)?.doubleValue {
            if let minimum = Self.number(schema["minimum"]), number < minimum { errors.append("\(path): \(number) is below \(minimum)") }
            if let maximum = Self.number(schema["maximum"]), number > maximum { errors.append("\(path): \(number) is above \(maximum)") }
        }
        if let object = value as? [String: Any] {
            let properties = schema["properties"] as? [String: Any] ?? [:]
            for name in (schema["required"] as? [Any] ?? []).map({ "\($0)" }) where object[name] == nil {
                errors.append("\(path): '\(name)' is missing")
            }
            for (key, item) in object.sorted(by: { $0.key < $1.key }) {
                if let property = properties[key] {
                    errors += self.errors(item, against: property, at: "\(path).\(key)")
                } else if let additional = schema["additionalProperties"] {
                    errors += self.errors(item, against: additional, at: "\(path).\(key)")
                }
            }
        }
        if let array = value as? [Any], let items = schema["items"] {
            for (index, item) in array.enumerated() { errors += self.errors(item, against: items, at: "\(path)[\(index)]") }
        }
        return errors
    }

    /// The JSON Schema type of a value from `JSONSerialization`, where booleans and numbers are
    /// both `NSNumber` and only the boolean's type code (`c`) tells them apart.
    static func type(of value: Any) -> String {
        switch value {
        case is NSNull: return "null"
        case is String: return "string"
        case is [String: Any]: return "object"
        case is [Any]: return "array"
        case let number as NSNumber:
            let code = String(cString: number.objCType)
            if code == "c" { return "boolean" }
            if code == "d" || code == "f" { return number.doubleValue.rounded() == number.doubleValue ? "integer" : "number" }
            return "integer"
        default: return "unknown \(Swift.type(of: value))"
        }
    }

    static func number(_ value: Any?) -> Double? {
        switch value {
        case let value as Int: Double(value)
        case let value as Double: value
        case let value as NSNumber: value.doubleValue
        default: nil
        }
    }

    static func equal(_ lhs: Any, _ rhs: Any) -> Bool {
        switch (lhs, rhs) {
        case (let lhs as String, let rhs as String): lhs == rhs
        case (is NSNull, is NSNull): true
        default: type(of: lhs) == type(of: rhs) && "\(lhs)" == "\(rhs)"
        }
    }
}

// MARK: - Values of every body type

enum BodyFixture {
    static let address = IPv4Address(203, 0, 113, 10)
    static let start = Moment(milliseconds: 1_800_000_000_000)

    static func traits(city: String? = "Los Angeles", tags: [String] = ["lab", "east"]) throws -> Traits {
        try Traits(country: CountryCode(parsing: "US"), region: RegionCode(parsing: "US-CA", country: nil), city: city,
                   category: .residential, reputation: .high, tags: tags)
    }

    static func ports(_ lower: UInt16 = 20000, _ upper: UInt16 = 20999) throws -> PortSet { PortSet(try PortRange(lower, upper)) }

    /// An RFC 7597 port set: one run per value of its offset bits.
    static func portSet7597() throws -> PortSet { PortSet([try PortRange(1232, 1235), try PortRange(2256, 2259), try PortRange(3280, 3283)]) }

    static func lease(id: Int64 = 7, index: Int = 0, ports: PortSet? = nil) throws -> Lease {
        Lease(id: id, host: "h1", slice: SliceID(address: address, index: index), ports: try ports ?? Self.ports(),
              start: start, expires: start + .seconds(300))
    }

    static func record(leaseID: Int64, end: Moment?) throws -> AssignmentRecord {
        AssignmentRecord(leaseID: leaseID, host: "h1", slice: SliceID(address: address, index: 0), ports: try ports(),
                         protocols: "tcp,udp", start: start, end: end)
    }

    static func table() throws -> SliceTable {
        SliceTable(version: 42, slices: [
            .init(address: address, index: 0, ports: try ports(20000, 20999), state: .free, host: nil),
            .init(address: address, index: 1, ports: try ports(21000, 21999), state: .leased, host: "h1"),
            .init(address: address, index: 2, ports: try ports(22000, 22999), state: .quarantined, host: nil),
            .init(address: IPv4Address(198, 51, 100, 7), index: 0, ports: try portSet7597(), state: .draining, host: nil),
        ], prefixes: [
            .init(prefix: try IPv6Prefix(parsing: "2001:db8:10:9026::/64"), state: .leased, host: "h1"),
            .init(prefix: try IPv6Prefix(parsing: "2001:db8:10:bc17::/64"), state: .quarantined, host: nil),
        ])
    }

    static let block = try! IPv6Prefix(parsing: "2001:db8:10::/48")

    static func prefixLease(id: Int64 = 9) throws -> PrefixLease {
        PrefixLease(id: id, host: "h1", prefix: try IPv6Prefix(parsing: "2001:db8:10:9026::/64"), pool: block, start: start, expires: start + .seconds(300))
    }
}

/// One value of a body type and the schema it must match.
struct BodySample: Sendable, CustomTestStringConvertible {
    let schema: String
    let label: String
    let encode: @Sendable () throws -> Data

    init(_ schema: String, _ label: String, _ value: @escaping @Sendable () throws -> any Encodable) {
        self.schema = schema
        self.label = label
        encode = { try JSONEncoder().encode(try value()) }
    }

    var testDescription: String { "\(schema) (\(label))" }

    func json() throws -> Any { try JSONSerialization.jsonObject(with: try encode(), options: [.fragmentsAllowed]) }

    /// The first sample of each schema is the fullest: the refusal tests start from it.
    static let all: [BodySample] = [
        BodySample("ErrorBody", "with a field") { ErrorBody(error: "count 0 must be from 1 to 64", field: "count") },
        BodySample("ErrorBody", "database unavailable") { ErrorBody(error: ErrorBody.databaseUnavailable) },
        BodySample("NewHost", "with labels") { NewHost(name: "h1", labels: ["rack": "a1", "zone": "east"]) },
        BodySample("NewHost", "name only") { NewHost(name: "h1") },
        BodySample("NewEdge", "name") { NewEdge(name: "edge-1.lab") },
        BodySample("NewViewer", "name") { NewViewer(name: "ann.ops") },
        BodySample("IssuedToken", "token") { IssuedToken(name: "h1", token: "h1.00112233445566778899aabbccddeeff") },
        BodySample("AcquireRequest", "every field") { AcquireRequest(count: 2, ttlSeconds: 60, traits: try BodyFixture.traits()) },
        BodySample("AcquireRequest", "empty") { AcquireRequest() },
        BodySample("AcquireRequest", "category only") { AcquireRequest(traits: try Traits(category: .mobile)) },
        BodySample("RenewRequest", "lease time") { RenewRequest(ttlSeconds: 120) },
        BodySample("RenewRequest", "empty") { RenewRequest() },
        BodySample("LeaseBody", "with traits") { LeaseBody(try BodyFixture.lease(), traits: try BodyFixture.traits()) },
        BodySample("LeaseBody", "without traits") { LeaseBody(try BodyFixture.lease(), traits: nil) },
        BodySample("LeaseBody", "unknown traits, RFC 7597 ports") { LeaseBody(try BodyFixture.lease(index: 3, ports: try BodyFixture.portSet7597()), traits: .unknown) },
        BodySample("LeaseList", "two leases") {
            LeaseList(leases: [LeaseBody(try BodyFixture.lease(), traits: try BodyFixture.traits()), LeaseBody(try BodyFixture.lease(id: 8, index: 1), traits: nil)])
        },
        BodySample("LeaseList", "empty") { LeaseList(leases: []) },
        BodySample("LeaseList", "slices and prefixes") {
            LeaseList(leases: [LeaseBody(try BodyFixture.lease(), traits: nil)], prefixLeases: [PrefixLeaseBody(try BodyFixture.prefixLease(), traits: try BodyFixture.traits())])
        },
        BodySample("LeaseList", "prefixes only") { LeaseList(leases: [], prefixLeases: [PrefixLeaseBody(try BodyFixture.prefixLease(), traits: nil)]) },
        BodySample("PrefixLeaseBody", "with traits") { PrefixLeaseBody(try BodyFixture.prefixLease(), traits: try BodyFixture.traits()) },
        BodySample("NewPrefix", "every field") { NewPrefix(prefix: BodyFixture.block, traits: try BodyFixture.traits(), leaseLength: 64) },
        BodySample("NewPrefix", "prefix only") { NewPrefix(prefix: BodyFixture.block) },
        BodySample("PoolPrefixBody", "draining") { PoolPrefixBody(try PoolPrefix(prefix: BodyFixture.block, traits: try BodyFixture.traits(), draining: true)) },
        BodySample("PrefixList", "one prefix") { PrefixList(prefixes: [PoolPrefixBody(try PoolPrefix(prefix: BodyFixture.block, traits: .unknown, leaseLength: 56))]) },
        BodySample("PrefixList", "empty") { PrefixList(prefixes: []) },
        BodySample("NewAddress", "every field") {
            NewAddress(address: BodyFixture.address, traits: try BodyFixture.traits(), range: try PortRange(20000, 23999), slices: 4)
        },
        BodySample("NewAddress", "slice size") { NewAddress(address: BodyFixture.address, sliceSize: 1024) },
        BodySample("HostBody", "holding leases, late") {
            HostBody(name: "h1", labels: ["rack": "a1"], leases: 2, prefixLeases: 1, lastRenewal: BodyFixture.start.milliseconds, renewalLate: true,
                     wants: [try BodyFixture.traits(), .unknown])
        },
        BodySample("HostBody", "idle") { HostBody(name: "h2", labels: [:], leases: 0, prefixLeases: 0, lastRenewal: nil, renewalLate: false, wants: []) },
        BodySample("HostList", "two hosts") {
            HostList(hosts: [
                HostBody(name: "h1", labels: ["rack": "a1", "zone": "east"], leases: 1, prefixLeases: 0, lastRenewal: BodyFixture.start.milliseconds,
                         renewalLate: false, wants: [try Traits(category: .mobile)]),
                HostBody(name: "h2", labels: [:], leases: 0, prefixLeases: 0, lastRenewal: nil, renewalLate: false, wants: []),
            ])
        },
        BodySample("HostList", "none") { HostList(hosts: []) },
        BodySample("EdgeBody", "reported") {
            EdgeBody(name: "e1", appliedVersion: 40, lastReport: BodyFixture.start.milliseconds, versionsBehind: 2)
        },
        BodySample("EdgeBody", "not yet reported") { EdgeBody(name: "e2", appliedVersion: nil, lastReport: nil, versionsBehind: nil) },
        BodySample("EdgeList", "one reported, one not") {
            EdgeList(tableVersion: 42, edges: [
                EdgeBody(name: "e1", appliedVersion: 42, lastReport: BodyFixture.start.milliseconds, versionsBehind: 0),
                EdgeBody(name: "e2", appliedVersion: nil, lastReport: nil, versionsBehind: nil),
            ])
        },
        BodySample("EdgeList", "no edges") { EdgeList(tableVersion: 0, edges: []) },
        BodySample("PoolAddressBody", "draining") { PoolAddressBody(address: BodyFixture.address, traits: try BodyFixture.traits(), draining: true) },
        BodySample("PoolList", "two addresses") {
            PoolList(addresses: [
                PoolAddressBody(address: BodyFixture.address, traits: try BodyFixture.traits(), draining: false),
                PoolAddressBody(address: IPv4Address(198, 51, 100, 7), traits: .unknown, draining: true),
            ])
        },
        BodySample("PoolList", "empty") { PoolList(addresses: []) },
        BodySample("Geofeed", "two addresses, a quoted city") {
            Geofeed(pool: [
                EgressAddress(address: BodyFixture.address, traits: try BodyFixture.traits(city: "Washington, D.C. \"DC\"")),
                EgressAddress(address: IPv4Address(198, 51, 100, 7), traits: .unknown),
            ]).csv(columns: .standard)
        },
        BodySample("Geofeed", "empty pool") { Geofeed(pool: []).csv(columns: .standard) },
        BodySample("Geofeed", "an address and an IPv6 prefix") {
            Geofeed(pool: [EgressAddress(address: BodyFixture.address, traits: try BodyFixture.traits())],
                    prefixes: [try PoolPrefix(prefix: BodyFixture.block, traits: try BodyFixture.traits())]).csv(columns: .standard)
        },
        BodySample("Holders", "one held, one ended") {
            Holders(records: [try BodyFixture.record(leaseID: 3, end: BodyFixture.start + .seconds(60)), try BodyFixture.record(leaseID: 9, end: nil)])
        },
        BodySample("Holders", "nobody") { Holders(records: []) },
        BodySample("Holders", "a prefix's holder") {
            Holders(records: [], prefixRecords: [PrefixAssignmentRecord(leaseID: 9, host: "h1", prefix: try BodyFixture.prefixLease().prefix, start: BodyFixture.start, end: nil)])
        },
        BodySample("PrefixAssignmentRecord", "ended") {
            PrefixAssignmentRecord(leaseID: 9, host: "h1", prefix: try BodyFixture.prefixLease().prefix, start: BodyFixture.start, end: BodyFixture.start + .seconds(60))
        },
        BodySample("SliceTablePrefixEntry", "leased") { try BodyFixture.table().prefixes[0] },
        BodySample("ClassCapacity", "with a warning") {
            ClassCapacity(traits: try BodyFixture.traits(), free: 0, leased: 4, quarantined: 1, draining: 2, warning: "no free slice")
        },
        BodySample("CapacityReport", "a full class and a roomy one") {
            CapacityReport(classes: [
                ClassCapacity(traits: try BodyFixture.traits(), free: 0, leased: 4, quarantined: 0, draining: 0,
                              warning: "no free slice: requests for this class get 503 until slices are released or addresses are added"),
                ClassCapacity(traits: .unknown, free: 30, leased: 2, quarantined: 0, draining: 0, warning: nil),
            ])
        },
        BodySample("CapacityReport", "no classes") { CapacityReport(classes: []) },
        BodySample("Readiness", "not ready") { Readiness(ready: false, reason: "no answer within 5 seconds") },
        BodySample("Readiness", "ready") { Readiness(ready: true, reason: nil) },
        BodySample("SliceTable", "every state") { try BodyFixture.table() },
        BodySample("SliceTable", "a host's part") { try BodyFixture.table().held(by: "h1") },
        BodySample("SliceTableEntry", "leased") { try BodyFixture.table().slices[1] },
        BodySample("AssignmentRecord", "ended") { try BodyFixture.record(leaseID: 3, end: BodyFixture.start + .seconds(60)) },
        BodySample("AssignmentRecord", "held") { try BodyFixture.record(leaseID: 3, end: nil) },
        BodySample("SliceID", "slice") { SliceID(address: BodyFixture.address, index: 5) },
        BodySample("Moment", "moment") { BodyFixture.start },
        BodySample("Traits", "every trait") { try BodyFixture.traits() },
        BodySample("Traits", "unknown") { Traits.unknown },
        BodySample("CountryCode", "XK") { try CountryCode(parsing: "xk") },
        BodySample("RegionCode", "US-CA") { try RegionCode(parsing: "us-ca", country: nil) },
        BodySample("IPv4Address", "address") { BodyFixture.address },
        BodySample("IPv6Address", "address") { try IPv6Address(parsing: "2001:DB8:10:9026::1234") },
        BodySample("IPv6Prefix", "prefix") { BodyFixture.block },
        BodySample("PortRange", "range") { try PortRange(1024, 65535) },
        BodySample("PortSet", "RFC 7597") { try BodyFixture.portSet7597() },
    ] + SliceStatus.allCases.map { state in BodySample("SliceStatus", state.rawValue) { state } }
        + Category.allCases.map { category in BodySample("Category", category.rawValue) { category } }
        + ReputationTier.allCases.map { tier in BodySample("ReputationTier", tier.rawValue) { tier } }
}
