import Foundation

/// Who a token speaks for. Each route names the roles it admits; every other caller gets 403.
public enum Role: String, Hashable, Sendable, Codable, CaseIterable, CustomStringConvertible {
    /// The operator: everything.
    case admin
    /// One host: its own leases, and its own part of the slice table for its guard.
    case host
    /// A router: reads the slice table (reporting the version it applied), nothing else.
    case edge
    /// A person watching the console: reads everything an admin reads, changes nothing.
    case viewer

    public var description: String { rawValue }
}

public enum APIMethod: String, Hashable, Sendable, CaseIterable {
    case get = "GET", post = "POST", delete = "DELETE"
}

/// One route of the allocator's HTTP API: the single list the server registers, the client
/// calls and the OpenAPI document is checked against.
public struct APIRoute: Hashable, Sendable, CustomStringConvertible {
    public let method: APIMethod
    /// The path in OpenAPI's form, parameters in braces: `/v1/leases/{id}/renew`.
    public let path: String
    /// Who may call it; empty for routes that need no token.
    public let roles: Set<Role>

    init(_ method: APIMethod, _ path: String, _ roles: Set<Role>) {
        self.method = method
        self.path = path
        self.roles = roles
    }

    public var description: String { "\(method.rawValue) \(path)" }

    /// The path with its parameters filled in, each percent-encoded as a path segment.
    public func path(_ parameters: [String: String]) -> String {
        var result = path
        for (name, value) in parameters {
            let encoded = value.addingPercentEncodingForPathSegment()
            result = result.replacingOccurrences(of: "{\(name)}", with: encoded)
        }
        return result
    }

    /// Names of the path's parameters, in order.
    public var parameterNames: [String] {
        path.split(separator: "/").compactMap { segment in
            segment.hasPrefix("{") && segment.hasSuffix("}") ? String(segment.dropFirst().dropLast()) : nil
        }
    }

    // MARK: - The routes

    /// Is the process alive (no token, no database).
    public static let health = APIRoute(.get, "/healthz", [])
    /// Can it serve: the database answers (no token).
    public static let readiness = APIRoute(.get, "/readyz", [])
    /// Prometheus text (no token; bind the API to a private address or put it behind a proxy).
    public static let metrics = APIRoute(.get, "/metrics", [])
    /// This API as an OpenAPI 3.1 document (no token).
    public static let openAPIDocument = APIRoute(.get, "/openapi.yaml", [])
    /// The pool's addresses and their locations as an RFC 8805 geofeed (no token: it is meant
    /// for geolocation providers).
    public static let geofeed = APIRoute(.get, "/geofeed.csv", [])

    public static let addHost = APIRoute(.post, "/v1/hosts", [.admin])
    public static let rotateHost = APIRoute(.post, "/v1/hosts/{name}/rotate", [.admin])
    public static let removeHost = APIRoute(.delete, "/v1/hosts/{name}", [.admin])
    public static let addEdge = APIRoute(.post, "/v1/edges", [.admin])
    public static let rotateEdge = APIRoute(.post, "/v1/edges/{name}/rotate", [.admin])
    public static let removeEdge = APIRoute(.delete, "/v1/edges/{name}", [.admin])
    /// Every host with its leases, last renewal and the traits it asks for.
    public static let listHosts = APIRoute(.get, "/v1/hosts", [.admin, .viewer])
    /// Every edge with the slice-table version it last reported applying.
    public static let listEdges = APIRoute(.get, "/v1/edges", [.admin, .viewer])
    public static let addViewer = APIRoute(.post, "/v1/viewers", [.admin])
    public static let rotateViewer = APIRoute(.post, "/v1/viewers/{name}/rotate", [.admin])
    public static let removeViewer = APIRoute(.delete, "/v1/viewers/{name}", [.admin])
    public static let acquire = APIRoute(.post, "/v1/leases", [.host])
    public static let listLeases = APIRoute(.get, "/v1/leases", [.admin, .viewer, .host])
    public static let renewAll = APIRoute(.post, "/v1/leases/renew", [.host])
    public static let renew = APIRoute(.post, "/v1/leases/{id}/renew", [.host])
    public static let release = APIRoute(.delete, "/v1/leases/{id}", [.host])
    /// Every address of the pool with its traits and whether it drains.
    public static let listPool = APIRoute(.get, "/v1/pool", [.admin, .viewer])
    public static let addAddress = APIRoute(.post, "/v1/pool", [.admin])
    public static let drain = APIRoute(.post, "/v1/pool/{address}/drain", [.admin])
    public static let removeAddress = APIRoute(.delete, "/v1/pool/{address}", [.admin])
    public static let who = APIRoute(.get, "/v1/who", [.admin, .viewer])
    /// The whole table for admins, viewers and edges; a host sees its own leased slices.
    public static let sliceTable = APIRoute(.get, "/v1/slices", [.admin, .viewer, .edge, .host])
    public static let capacity = APIRoute(.get, "/v1/capacity", [.admin, .viewer])
    /// IPv6 pool prefixes. A prefix holds a '/', so paths name one by its network and length
    /// as two segments: `/v1/prefixes/2001:db8:10::/48/drain`.
    public static let addPrefix = APIRoute(.post, "/v1/prefixes", [.admin])
    public static let listPrefixes = APIRoute(.get, "/v1/prefixes", [.admin, .viewer])
    public static let drainPrefix = APIRoute(.post, "/v1/prefixes/{network}/{length}/drain", [.admin])
    public static let removePrefix = APIRoute(.delete, "/v1/prefixes/{network}/{length}", [.admin])
    /// A host leases prefixes of its own out of the pool prefixes; renewal is
    /// `POST /v1/leases/renew`, with its slices.
    public static let acquirePrefixes = APIRoute(.post, "/v1/prefix-leases", [.host])
    public static let releasePrefix = APIRoute(.delete, "/v1/prefix-leases/{id}", [.host])

    public static let all: [APIRoute] = [
        health, readiness, metrics, openAPIDocument, geofeed,
        addHost, rotateHost, removeHost, addEdge, rotateEdge, removeEdge, listHosts, listEdges,
        addViewer, rotateViewer, removeViewer,
        acquire, listLeases, renewAll, renew, release,
        listPool, addAddress, drain, removeAddress, who, sliceTable, capacity,
        addPrefix, listPrefixes, drainPrefix, removePrefix, acquirePrefixes, releasePrefix,
    ]
}

extension String {
    func addingPercentEncodingForPathSegment() -> String {
        var result = ""
        for byte in utf8 {
            let unreserved = (65...90).contains(byte) || (97...122).contains(byte) || (48...57).contains(byte) || [45, 46, 95, 126].contains(byte)
            result += unreserved ? String(UnicodeScalar(byte)) : "%" + (byte < 16 ? "0" : "") + String(byte, radix: 16, uppercase: true)
        }
        return result
    }
}
