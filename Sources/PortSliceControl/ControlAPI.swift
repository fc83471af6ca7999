import Foundation
import Hummingbird
import ServiceLifecycle
import PortSliceCore
import PortSliceStore
import Prometheus

/// The allocator's HTTP API, versioned under `/v1`, JSON in and out.
///
/// Hosts authenticate with their own token (`Authorization: Bearer NAME.SECRET`) and may only
/// renew or release their own leases; the operator uses the admin token, which is known here
/// only as a SHA-256 hash and compared in constant time. Bodies above 64 KiB are refused.
public struct ControlAPI: Sendable {
    public let store: any SliceStore
    private let adminTokenHash: String
    private let now: @Sendable () -> Moment
    private let registry: PrometheusCollectorRegistry
    /// Lease time when a request names none.
    public var defaultTimeToLive = Duration.seconds(300)
    /// How long `GET /v1/slices?since=V` waits for a newer table before answering anyway.
    public var longPollTimeout = Duration.seconds(25)
    public static let maximumBodyBytes = 64 * 1024

    /// - Parameters:
    ///   - adminTokenHash: `HostToken.hash(of: adminToken)`.
    ///   - now: the clock; tests pass one they control.
    ///   - registry: where `/metrics` reads from; the executable also bootstraps swift-metrics
    ///     with it, so request counts and latencies land there too.
    public init(
        store: any SliceStore, adminTokenHash: String, now: @escaping @Sendable () -> Moment = { .current },
        registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()
    ) {
        self.store = store
        self.adminTokenHash = adminTokenHash
        self.now = now
        self.registry = registry
    }

    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: MetricsMiddleware())
        router.get("healthz") { _, _ in "ok" }
        router.get("metrics") { _, _ in try await self.metrics() }
        let v1 = router.group("v1")
        v1.post("hosts") { request, context in try await self.addHost(request, context) }
        v1.post("leases") { request, context in try await self.acquire(request, context) }
        v1.get("leases") { request, _ in try await self.listLeases(request) }
        v1.post("leases/renew") { request, context in try await self.renewAll(request, context) }
        v1.post("leases/:id/renew") { request, context in try await self.renew(request, context) }
        v1.delete("leases/:id") { request, context in try await self.release(request, context) }
        v1.post("pool") { request, context in try await self.addAddress(request, context) }
        v1.post("pool/:address/drain") { request, context in try await self.drain(request, context) }
        v1.delete("pool/:address") { request, context in try await self.removeAddress(request, context) }
        v1.get("who") { request, _ in try await self.who(request) }
        v1.get("slices") { request, _ in try await self.sliceTable(request) }
        v1.get("capacity") { request, _ in try await self.capacity(request) }
        return router
    }

    // MARK: - Routes

    struct NewHost: Decodable {
        let name: String
        let labels: [String: String]?
    }

    public struct HostCreated: ResponseEncodable, Decodable, Sendable {
        public let name: String
        /// Shown once: only its hash is stored.
        public let token: String
    }

    private func addHost(_ request: Request, _ context: BasicRequestContext) async throws -> EditedResponse<HostCreated> {
        try await requireAdmin(request)
        let body = try await decode(NewHost.self, request, context)
        let token = try await allocation { try await store.addHost(body.name, labels: body.labels ?? [:], now: now()) }
        return EditedResponse(status: .created, response: HostCreated(name: body.name, token: token))
    }

    /// The trait fields a request body may carry beside its own (acquire, pool add).
    struct TraitFields: Decodable {
        let country: String?
        let region: String?
        let city: String?
        let category: String?
        let reputation: String?
        let tags: [String]?

        /// The traits, each field checked and named when it is refused.
        func traits() throws -> Traits {
            let countryCode = try ControlAPI.field("country") { try country.map { try CountryCode(parsing: $0) } }
            let regionCode = try ControlAPI.field("region") { try region.map { try RegionCode(parsing: $0, country: countryCode) } }
            let categoryValue = try ControlAPI.field("category") { try category.map { try Category(parsing: $0) } ?? .unknown }
            let tier = try ControlAPI.field("reputation") { try reputation.map { try ReputationTier(parsing: $0) } }
            return try ControlAPI.field("region") {
                try Traits(country: countryCode, region: regionCode, city: city, category: categoryValue, reputation: tier, tags: tags ?? [])
            }
        }
    }

    struct AcquireRequest: Decodable {
        let count: Int?
        let ttlSeconds: Int64?
    }

    private func acquire(_ request: Request, _ context: BasicRequestContext) async throws -> EditedResponse<LeaseList> {
        let host = try await requireHost(request)
        let json = try await bodyBytes(request)
        let body = try Self.decode(AcquireRequest.self, json)
        let traits = try Self.decode(TraitFields.self, json).traits()
        let leases = try await allocation {
            try await store.acquire(
                host: host, traits: traits, count: body.count ?? 1,
                timeToLive: body.ttlSeconds.map { .seconds($0) } ?? defaultTimeToLive, now: now())
        }
        return EditedResponse(status: .created, response: try await leaseList(leases))
    }

    private func listLeases(_ request: Request) async throws -> LeaseList {
        let caller = try await authenticate(request)
        try await store.advance(to: now())
        let leases = switch caller {
        case .admin: try await store.allLeases()
        case .host(let host): try await store.leases(of: host)
        }
        return try await leaseList(leases)
    }

    /// Leases as the API answers them, each with its address's traits: a host chooses among
    /// the addresses it holds by them.
    private func leaseList(_ leases: [Lease]) async throws -> LeaseList {
        let traits = try await store.traits(of: Set(leases.map(\.slice.address)))
        return LeaseList(leases: leases.map { LeaseBody($0, traits: traits[$0.slice.address]) })
    }

    struct RenewRequest: Decodable {
        let ttlSeconds: Int64?
    }

    /// The lease time a renewal asks for; an empty body asks for the default.
    private func renewalTime(_ request: Request, _ context: BasicRequestContext) async throws -> Duration {
        let body = request.head.headerFields[.contentLength] == "0" ? RenewRequest(ttlSeconds: nil)
            : try await decode(RenewRequest.self, request, context)
        return body.ttlSeconds.map { .seconds($0) } ?? defaultTimeToLive
    }

    private func renew(_ request: Request, _ context: BasicRequestContext) async throws -> LeaseBody {
        let host = try await requireHost(request)
        let id = try Self.leaseID(context)
        let timeToLive = try await renewalTime(request, context)
        let lease = try await allocation { try await store.renew(id, host: host, timeToLive: timeToLive, now: now()) }
        return LeaseBody(lease, traits: try await store.traits(of: [lease.slice.address])[lease.slice.address])
    }

    /// Renews every lease of the calling host in one transaction: what an agent sends each period.
    private func renewAll(_ request: Request, _ context: BasicRequestContext) async throws -> LeaseList {
        let host = try await requireHost(request)
        let timeToLive = try await renewalTime(request, context)
        let leases = try await allocation { try await store.renewAll(host: host, timeToLive: timeToLive, now: now()) }
        return try await leaseList(leases)
    }

    private func release(_ request: Request, _ context: BasicRequestContext) async throws -> HTTPResponse.Status {
        let host = try await requireHost(request)
        let id = try Self.leaseID(context)
        try await allocation { try await store.release(id, host: host, now: now()) }
        return .noContent
    }

    struct NewAddress: Decodable {
        let address: String
        /// Ports to slice, `LOW-HIGH`; 1024-65535 by default.
        let range: String?
        let sliceSize: Int?
        let slices: Int?
    }

    private func addAddress(_ request: Request, _ context: BasicRequestContext) async throws -> HTTPResponse.Status {
        try await requireAdmin(request)
        let json = try await bodyBytes(request)
        let body = try Self.decode(NewAddress.self, json)
        let address = try Self.field("address") { try IPv4Address(parsing: body.address) }
        let traits = try Self.decode(TraitFields.self, json).traits()
        let range = try Self.field("range") { try PortRange(parsing: body.range ?? PortRange.nonSystemPorts.description) }
        if body.sliceSize != nil && body.slices != nil {
            throw APIError(.badRequest, "give sliceSize or slices, not both", field: "slices")
        }
        let layout: SlicePlan.Layout = body.slices.map { .sliceCount($0) } ?? .portsPerSlice(body.sliceSize ?? 2048)
        let plan = try Self.field(body.slices != nil ? "slices" : "sliceSize") { try SlicePlan(range: range, layout: layout) }
        try await allocation { try await store.add(EgressAddress(address: address, traits: traits), plan: plan) }
        return .created
    }

    private func drain(_ request: Request, _ context: BasicRequestContext) async throws -> HTTPResponse.Status {
        try await requireAdmin(request)
        let address = try Self.addressParameter(context)
        try await allocation { try await store.drain(address, now: now()) }
        return .noContent
    }

    private func removeAddress(_ request: Request, _ context: BasicRequestContext) async throws -> HTTPResponse.Status {
        try await requireAdmin(request)
        let address = try Self.addressParameter(context)
        try await allocation { try await store.remove(address, now: now()) }
        return .noContent
    }

    public struct Holders: ResponseEncodable, Decodable, Sendable {
        public let records: [AssignmentRecord]
    }

    /// `GET /v1/who?address=IP&port=P&at=MILLISECONDS`: who held that port then.
    private func who(_ request: Request) async throws -> Holders {
        try await requireAdmin(request)
        let query = request.uri.queryParameters
        let address = try Self.field("address") { try IPv4Address(parsing: String(query["address"] ?? "")) }
        guard let port = query["port"].flatMap({ UInt16($0) }) else {
            throw APIError(.badRequest, "port must be a number 0-65535", field: "port")
        }
        guard let at = query["at"].flatMap({ Int64($0) }) else {
            throw APIError(.badRequest, "at must be a time in milliseconds since 1970", field: "at")
        }
        return Holders(records: try await store.who(address: address, port: port, at: Moment(milliseconds: at)))
    }

    /// `GET /v1/slices[?since=VERSION]`: the slice table edges steer by. With `since`, the
    /// answer waits (up to `longPollTimeout`) until the table is newer than that version; the
    /// version is read from the database, so a change made through another replica counts too.
    private func sliceTable(_ request: Request) async throws -> SliceTable {
        try await requireAdmin(request)
        if let text = request.uri.queryParameters["since"] {
            guard let since = Int64(text) else { throw APIError(.badRequest, "since must be a table version number", field: "since") }
            let deadline = ContinuousClock.now + longPollTimeout
            // A server shutting down answers at once rather than holding its shutdown for a poll.
            while try await store.tableVersion() <= since && ContinuousClock.now < deadline && !Task.isShuttingDownGracefully {
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        return try await store.sliceTable()
    }

    /// Slices of one trait class, with a warning when few are left.
    public struct ClassCapacity: Codable, Sendable {
        public let traits: String
        public let free: Int
        public let leased: Int
        public let quarantined: Int
        public let draining: Int
        public let warning: String?
    }

    public struct CapacityReport: ResponseEncodable, Decodable, Sendable {
        public let classes: [ClassCapacity]
    }

    /// A class is about to run out when fewer than this share of its slices are free.
    public static let lowCapacityShare = 0.1

    /// `GET /v1/capacity`: per trait class, how many slices are free, leased, quarantined and
    /// draining, and a warning for a class that is (nearly) exhausted.
    private func capacity(_ request: Request) async throws -> CapacityReport {
        try await requireAdmin(request)
        try await store.advance(to: now())
        let counts = Dictionary(grouping: try await store.capacity(), by: \.traits.summary)
        return CapacityReport(classes: counts.keys.sorted().map { traits in
            func count(_ state: String) -> Int { counts[traits]!.filter { $0.state == state }.reduce(0) { $0 + $1.count } }
            let free = count("free"), leased = count("leased"), quarantined = count("quarantined"), draining = count("draining")
            let usable = free + leased + quarantined
            let warning: String? = if free == 0 {
                "no free slice: requests for this class get 503 until slices are released or addresses are added"
            } else if Double(free) < Double(usable) * Self.lowCapacityShare {
                "only \(free) of \(usable) slices free: add addresses to this class"
            } else {
                nil
            }
            return ClassCapacity(traits: traits, free: free, leased: leased, quarantined: quarantined, draining: draining, warning: warning)
        })
    }

    /// `GET /metrics`: Prometheus text. Slice counts per trait class and state are read from
    /// the store at each scrape; request counts and latencies come from swift-metrics.
    private func metrics() async throws -> String {
        try await store.advance(to: now())
        var leased = 0
        for count in try await store.capacity() {
            registry.makeGauge(
                descriptor: MetricNameDescriptor(namespace: "portslice", metricName: "slices", unitName: "", helpText: "Slices per trait class and state"),
                labels: [("traits", count.traits.summary), ("state", count.state)]
            ).set(Double(count.count))
            if count.state == "leased" { leased += count.count }
        }
        registry.makeGauge(descriptor: MetricNameDescriptor(namespace: "portslice", metricName: "leases", unitName: "", helpText: "Leases held now")).set(Double(leased))
        var text: [UInt8] = []
        registry.emit(into: &text)
        return String(decoding: text, as: UTF8.self)
    }

    // MARK: - Authentication

    enum Caller { case admin, host(String) }

    private func authenticate(_ request: Request) async throws -> Caller {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else { throw APIError.unauthorized }
        let token = String(header.dropFirst("Bearer ".count))
        if HostToken.matches(token, hash: adminTokenHash) { return .admin }
        if let host = try await store.host(authenticatedBy: token) { return .host(host) }
        throw APIError.unauthorized
    }

    private func requireAdmin(_ request: Request) async throws {
        guard case .admin = try await authenticate(request) else { throw APIError.adminOnly }
    }

    private func requireHost(_ request: Request) async throws -> String {
        guard case .host(let host) = try await authenticate(request) else { throw APIError.hostOnly }
        return host
    }

    // MARK: - Input

    /// The JSON body as `T`, at most `maximumBodyBytes`; a bad field is named in the answer.
    private func decode<T: Decodable>(_ type: T.Type, _ request: Request, _ context: BasicRequestContext) async throws -> T {
        try Self.decode(T.self, try await bodyBytes(request))
    }

    private func bodyBytes(_ request: Request) async throws -> Data {
        do {
            return Data(try await request.body.collect(upTo: Self.maximumBodyBytes).readableBytesView)
        } catch {
            throw APIError(.contentTooLarge, "the body is larger than \(Self.maximumBodyBytes) bytes")
        }
    }

    private static func decode<T: Decodable>(_ type: T.Type, _ json: Data) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: json)
        } catch let error as DecodingError {
            throw apiError(error)
        } catch {
            throw APIError(.badRequest, "the body is not valid JSON: \(error)")
        }
    }

    private static func apiError(_ error: DecodingError) -> APIError {
        func name(_ path: [any CodingKey]) -> String? { path.isEmpty ? nil : path.map(\.stringValue).joined(separator: ".") }
        switch error {
        case .keyNotFound(let key, let context):
            return APIError(.badRequest, "'\(key.stringValue)' is missing", field: name(context.codingPath + [key]))
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            return APIError(.badRequest, "'\(name(context.codingPath) ?? "body")' has the wrong type", field: name(context.codingPath))
        case .dataCorrupted(let context):
            return APIError(.badRequest, "the body is not valid JSON: \(context.debugDescription)", field: name(context.codingPath))
        @unknown default:
            return APIError(.badRequest, "the body could not be read")
        }
    }

    /// Runs `body`, naming `field` when its input is refused.
    fileprivate static func field<T>(_ field: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch { throw APIError(.badRequest, "\(error)", field: field) }
    }

    private static func leaseID(_ context: BasicRequestContext) throws -> Int64 {
        guard let id = context.parameters.get("id").flatMap({ Int64($0) }) else {
            throw APIError(.badRequest, "the lease id in the path must be a number", field: "id")
        }
        return id
    }

    private static func addressParameter(_ context: BasicRequestContext) throws -> IPv4Address {
        try field("address") { try IPv4Address(parsing: context.parameters.get("address") ?? "") }
    }

    /// Maps refused allocation requests to their HTTP answers.
    private func allocation<T>(_ body: () async throws -> T) async throws -> T {
        do { return try await body() } catch let error as AllocationError { throw APIError(error) }
    }
}

/// A lease as the API shows it (times in milliseconds since 1970).
public struct LeaseBody: ResponseEncodable, Decodable, Sendable {
    public let id: Int64
    public let host: String
    public let address: String
    public let slice: Int
    public let ports: String
    public let start: Int64
    public let expires: Int64
    /// The traits of the slice's address (absent in answers from older allocators).
    public let traits: Traits?

    init(_ lease: Lease, traits: Traits?) {
        id = lease.id
        host = lease.host
        address = lease.slice.address.description
        slice = lease.slice.index
        ports = lease.ports.description
        start = lease.start.milliseconds
        expires = lease.expires.milliseconds
        self.traits = traits
    }
}

public struct LeaseList: ResponseEncodable, Decodable, Sendable {
    public let leases: [LeaseBody]
}

extension SliceTable: ResponseEncodable {}

extension Moment {
    /// The wall clock now.
    public static var current: Moment { Moment(milliseconds: Int64(Date().timeIntervalSince1970 * 1000)) }
}
