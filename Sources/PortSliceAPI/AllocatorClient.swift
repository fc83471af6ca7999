import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import PortSliceCore
import Synchronization

/// The one client of the allocator's API, used by the agent, the edge, the lab and every
/// command: a method per route, typed bodies in and out; an error answer becomes
/// `APIFailure` with the server's words, a failure to reach the server `AllocatorUnreachable`.
///
/// `https://` URLs are verified against the system's roots or a private CA (`caFile`), and a
/// certificate that does not name the URL's host is refused.
public struct AllocatorClient: Sendable, CustomStringConvertible {
    public let base: String
    public let token: String
    private let http: HTTPClient

    /// - Parameters:
    ///   - base: the allocator's URL, such as `https://alloc.example:7300`.
    ///   - caFile: PEM certificates to trust instead of the system's roots.
    /// - Throws: `AllocatorClientError` for a URL that is not http(s) or a CA file that
    ///   cannot be read.
    public init(base: String, token: String, caFile: String? = nil) throws {
        let trimmed = base.hasSuffix("/") ? String(base.dropLast()) : base
        guard let url = URL(string: trimmed), let scheme = url.scheme, ["http", "https"].contains(scheme), url.host != nil else {
            throw AllocatorClientError("the allocator URL '\(base)' must be http://HOST:PORT or https://HOST:PORT")
        }
        if caFile != nil && scheme == "http" {
            throw AllocatorClientError("a CA file is given but the allocator URL '\(base)' is plain http; use https://")
        }
        self.base = trimmed
        self.token = token
        http = try Self.httpClient(trusting: caFile)
    }

    /// Names the allocator, never the token.
    public var description: String { "allocator at \(base)" }

    /// A warning to show when tokens would cross the network in the clear: plain `http://`
    /// to an address that is not this machine's loopback. nil when there is nothing to say.
    public var plainTextWarning: String? {
        guard let url = URL(string: base), url.scheme == "http", let host = url.host else { return nil }
        let loopback = host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.")
        return loopback ? nil
            : "the allocator URL \(base) is plain HTTP to another machine: the token crosses the network unencrypted; serve with --tls-cert/--tls-key and use https://"
    }

    // MARK: - Routes

    public func addHost(_ host: NewHost) async throws -> IssuedToken {
        try await call(.addHost, body: host)
    }

    public func rotateHost(_ name: String) async throws -> IssuedToken {
        try await call(.rotateHost, ["name": name], body: Empty?.none)
    }

    /// Removes a host; its leases end now and their slices go to quarantine.
    public func removeHost(_ name: String) async throws {
        try await send(.removeHost, ["name": name], body: Empty?.none)
    }

    public func addEdge(_ edge: NewEdge) async throws -> IssuedToken {
        try await call(.addEdge, body: edge)
    }

    public func rotateEdge(_ name: String) async throws -> IssuedToken {
        try await call(.rotateEdge, ["name": name], body: Empty?.none)
    }

    public func removeEdge(_ name: String) async throws {
        try await send(.removeEdge, ["name": name], body: Empty?.none)
    }

    public func hosts() async throws -> [HostBody] {
        try await call(.listHosts, body: Empty?.none, as: HostList.self).hosts
    }

    public func edges() async throws -> EdgeList {
        try await call(.listEdges, body: Empty?.none)
    }

    public func addViewer(_ viewer: NewViewer) async throws -> IssuedToken {
        try await call(.addViewer, body: viewer)
    }

    public func rotateViewer(_ name: String) async throws -> IssuedToken {
        try await call(.rotateViewer, ["name": name], body: Empty?.none)
    }

    public func removeViewer(_ name: String) async throws {
        try await send(.removeViewer, ["name": name], body: Empty?.none)
    }

    public func acquire(_ request: AcquireRequest, timeout: Duration = defaultTimeout) async throws -> [LeaseBody] {
        try await call(.acquire, body: request, timeout: timeout, as: LeaseList.self).leases
    }

    /// The caller's leases of slices (a host), or every one (admin).
    public func leases(timeout: Duration = defaultTimeout) async throws -> [LeaseBody] {
        try await leaseList(timeout: timeout).leases
    }

    /// The caller's leases of slices and prefixes (a host), or every one (admin).
    public func leaseList(timeout: Duration = defaultTimeout) async throws -> LeaseList {
        try await call(.listLeases, body: Empty?.none, timeout: timeout)
    }

    /// Renews every lease of the calling host, slices and prefixes; answers the slice leases
    /// it still holds.
    public func renewAll(ttlSeconds: Int64?, timeout: Duration = defaultTimeout) async throws -> [LeaseBody] {
        try await renewAllLeases(ttlSeconds: ttlSeconds, timeout: timeout).leases
    }

    /// Renews every lease of the calling host; answers the slice and prefix leases it still holds.
    public func renewAllLeases(ttlSeconds: Int64?, timeout: Duration = defaultTimeout) async throws -> LeaseList {
        try await call(.renewAll, body: RenewRequest(ttlSeconds: ttlSeconds), timeout: timeout)
    }

    public func renew(_ id: Int64, ttlSeconds: Int64?, timeout: Duration = defaultTimeout) async throws -> LeaseBody {
        try await call(.renew, ["id": String(id)], body: RenewRequest(ttlSeconds: ttlSeconds), timeout: timeout)
    }

    public func release(_ id: Int64, timeout: Duration = defaultTimeout) async throws {
        try await send(.release, ["id": String(id)], body: Empty?.none, timeout: timeout)
    }

    public func pool() async throws -> [PoolAddressBody] {
        try await call(.listPool, body: Empty?.none, as: PoolList.self).addresses
    }

    /// The pool as the RFC 8805 feed the allocator publishes (no token needed).
    public func geofeed() async throws -> String {
        String(decoding: try await send(.geofeed, body: Empty?.none), as: UTF8.self)
    }

    public func addAddress(_ address: NewAddress) async throws {
        try await send(.addAddress, body: address)
    }

    public func drain(_ address: IPv4Address) async throws {
        try await send(.drain, ["address": address.description], body: Empty?.none)
    }

    public func removeAddress(_ address: IPv4Address) async throws {
        try await send(.removeAddress, ["address": address.description], body: Empty?.none)
    }

    public func who(address: IPv4Address, port: UInt16, at moment: Moment) async throws -> [AssignmentRecord] {
        try await call(.who, query: ["address": address.description, "port": String(port), "at": String(moment.milliseconds)],
                       body: Empty?.none, as: Holders.self).records
    }

    /// Who held the prefix covering an IPv6 address at a moment (every port).
    public func who(address: IPv6Address, at moment: Moment) async throws -> [PrefixAssignmentRecord] {
        try await call(.who, query: ["address": address.description, "at": String(moment.milliseconds)],
                       body: Empty?.none, as: Holders.self).prefixRecords ?? []
    }

    public func addPrefix(_ prefix: NewPrefix) async throws {
        try await send(.addPrefix, body: prefix)
    }

    public func prefixes() async throws -> [PoolPrefixBody] {
        try await call(.listPrefixes, body: Empty?.none, as: PrefixList.self).prefixes
    }

    public func drain(_ prefix: IPv6Prefix) async throws {
        try await send(.drainPrefix, Self.parameters(prefix), body: Empty?.none)
    }

    public func removePrefix(_ prefix: IPv6Prefix) async throws {
        try await send(.removePrefix, Self.parameters(prefix), body: Empty?.none)
    }

    /// Leases prefixes to the calling host.
    public func acquirePrefixes(_ request: AcquireRequest, timeout: Duration = defaultTimeout) async throws -> [PrefixLeaseBody] {
        try await call(.acquirePrefixes, body: request, timeout: timeout, as: LeaseList.self).prefixLeases ?? []
    }

    public func releasePrefix(_ id: Int64, timeout: Duration = defaultTimeout) async throws {
        try await send(.releasePrefix, ["id": String(id)], body: Empty?.none, timeout: timeout)
    }

    /// A prefix as the two path segments routes name it by.
    private static func parameters(_ prefix: IPv6Prefix) -> [String: String] {
        ["network": prefix.network.description, "length": String(prefix.length)]
    }

    /// The slice table; with `since`, waits (up to the server's poll time) for a newer one.
    /// An edge passes `applied`, the version its kernel has, which the console shows.
    public func sliceTable(since version: Int64? = nil, applied: Int64? = nil, timeout: Duration = .seconds(60)) async throws -> SliceTable {
        var query: [String: String] = [:]
        query["since"] = version.map(String.init)
        query["applied"] = applied.map(String.init)
        return try await call(.sliceTable, query: query, body: Empty?.none, timeout: timeout)
    }

    public func capacity() async throws -> CapacityReport {
        try await call(.capacity, body: Empty?.none)
    }

    /// Whether the process answers `/healthz`.
    public func isAlive(timeout: Duration = .seconds(2)) async -> Bool {
        (try? await send(.health, body: Empty?.none, timeout: timeout)) != nil
    }

    /// `/readyz`: ready when its database answers. An unready allocator answers 503, which
    /// is read here rather than thrown.
    public func readiness(timeout: Duration = .seconds(5)) async throws -> Readiness {
        do {
            return try await call(.readiness, body: Empty?.none, timeout: timeout)
        } catch let failure as APIFailure where failure.status == 503 {
            guard let readiness = try? JSONDecoder().decode(Readiness.self, from: failure.body) else { throw failure }
            return readiness
        }
    }

    public func metricsText() async throws -> String {
        String(decoding: try await send(.metrics, body: Empty?.none), as: UTF8.self)
    }

    public func openAPIDocument() async throws -> String {
        String(decoding: try await send(.openAPIDocument, body: Empty?.none), as: UTF8.self)
    }

    // MARK: - Transport

    public static let defaultTimeout = Duration.seconds(30)

    /// A body-less request's body type.
    public struct Empty: Codable, Sendable {}

    private func call<Body: Encodable, Answer: Decodable>(
        _ route: APIRoute, _ parameters: [String: String] = [:], query: [String: String] = [:], body: Body?,
        timeout: Duration = defaultTimeout, as type: Answer.Type = Answer.self
    ) async throws -> Answer {
        let data = try await send(route, parameters, query: query, body: body, timeout: timeout)
        do {
            return try JSONDecoder().decode(Answer.self, from: data)
        } catch {
            throw AllocatorUnreachable("the allocator at \(base) answered \(route) with something this program does not understand: \(error)")
        }
    }

    @discardableResult
    private func send<Body: Encodable>(
        _ route: APIRoute, _ parameters: [String: String] = [:], query: [String: String] = [:], body: Body?,
        timeout: Duration = defaultTimeout
    ) async throws -> Data {
        var url = base + route.path(parameters)
        if !query.isEmpty {
            url += "?" + query.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.addingPercentEncodingForPathSegment())" }.joined(separator: "&")
        }
        var request = HTTPClientRequest(url: url)
        request.method = HTTPMethod(rawValue: route.method.rawValue)
        if !route.roles.isEmpty { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(body)))
        }
        let response: HTTPClientResponse
        do {
            response = try await http.execute(request, timeout: TimeAmount(timeout))
        } catch is CancellationError {
            throw CancellationError()
        } catch where error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError {
            throw AllocatorUnreachable("TLS with the allocator at \(base) failed: \(error); check --ca (or PORTSLICE_CA) and that the certificate names this host")
        } catch {
            throw AllocatorUnreachable("cannot reach the allocator at \(base): \(error); is `portslice serve` running there?")
        }
        let bytes = try await response.body.collect(upTo: Self.maximumAnswerBytes)
        let data = Data(bytes.readableBytesView)
        guard (200..<300).contains(response.status.code) else {
            throw APIFailure(status: Int(response.status.code), body: data)
        }
        return data
    }

    /// The largest answer read: a slice table of 100,000 slices is about 12 MiB.
    static let maximumAnswerBytes = 256 * 1024 * 1024

    /// HTTP clients by the CA they trust (nil: the system's roots). Each fails at once when
    /// nothing listens (AsyncHTTPClient's default retries a refused connection until the
    /// request's deadline): an operator's command should say the allocator is down right
    /// away, and the agent and edge have their own retry rhythm. Kept for the process's life,
    /// like `HTTPClient.shared`.
    private static let clients = Mutex<[String?: HTTPClient]>([:])

    /// The HTTP client for `caFile` (nil: the system's roots), made on first use: for other
    /// requests that should fail as fast, such as reading a proxy's status page.
    public static func httpClient(trusting caFile: String? = nil) throws -> HTTPClient {
        try clients.withLock { clients in
            if let existing = clients[caFile] { return existing }
            var configuration = HTTPClient.Configuration()
            configuration.connectionPool.retryConnectionEstablishment = false
            configuration.timeout.connect = .seconds(5)
            var tls = TLSConfiguration.makeClientConfiguration()
            if let caFile {
                do {
                    tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile))
                } catch {
                    throw AllocatorClientError("cannot read the CA certificates in \(caFile): \(error); give a PEM file")
                }
            }
            configuration.tlsConfiguration = tls
            let made = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
            clients[caFile] = made
            return made
        }
    }
}

/// A client that cannot be made as configured.
public struct AllocatorClientError: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The allocator did not answer, or answered something that is not its API.
public struct AllocatorUnreachable: Error, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// An error answer from the allocator, worded as the server worded it.
public struct APIFailure: Error, Sendable, CustomStringConvertible {
    public let status: Int
    public let body: Data

    public init(status: Int, body: Data) {
        self.status = status
        self.body = body
    }

    public var message: String {
        guard let decoded = try? JSONDecoder().decode(ErrorBody.self, from: body) else {
            return String(decoding: body, as: UTF8.self)
        }
        return decoded.field.map { "\(decoded.error) (field '\($0)')" } ?? decoded.error
    }

    public var description: String { "the allocator refused (HTTP \(status)): \(message)" }
}
