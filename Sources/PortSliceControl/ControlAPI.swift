import Foundation
import Hummingbird
import Logging
import NIOCore
import PortSliceAPI
import PortSliceCore
import PortSliceStore
import Prometheus
import ServiceLifecycle
import Synchronization

/// The allocator's HTTP API (`PortSliceAPI.APIRoute` lists it), JSON in and out.
///
/// Each route admits the roles it names: the admin token (known here only as a SHA-256 hash
/// and compared in constant time), a host's token (its own leases, its own part of the slice
/// table) or an edge's (the slice table). While the database cannot be reached, every route
/// that needs it answers 503 `{"error": "database unavailable"}` within
/// `SQLSliceStore.operationTimeout`, and `/readyz` says why. Bodies above 64 KiB are refused.
public struct ControlAPI: Sendable {
    public let store: any SliceStore
    let adminTokenHash: String
    let now: @Sendable () -> Moment
    private let registry: PrometheusCollectorRegistry
    let logger: Logger
    private let health: DatabaseHealth
    let requestMetrics: RequestMetricHandles
    /// The whole table's JSON and every host's part, made once per table version.
    let wholeTables = PerVersion<ByteBuffer>()
    let hostParts = PerVersion<HostTableParts>(buildsOnPrevious: true)
    /// Lease time when a request names none.
    public var defaultTimeToLive = Duration.seconds(300)
    /// The length of the prefixes leased out of a pool prefix added without `leaseLength`.
    public var defaultPrefixLength = PoolPrefix.defaultLeaseLength
    /// How long `GET /v1/slices?since=V` waits for a newer table before answering anyway.
    public var longPollTimeout = Duration.seconds(25)
    public static let maximumBodyBytes = 64 * 1024
    /// A class is about to run out when fewer than this share of its slices are free.
    public static let lowCapacityShare = 0.1

    /// - Parameters:
    ///   - adminTokenHash: `HostToken.hash(of: adminToken)`.
    ///   - now: the clock; tests pass one they control.
    ///   - registry: where `/metrics` reads from, request counts and latencies included; the
    ///     executable also bootstraps swift-metrics with it, for metrics of the libraries below.
    public init(
        store: any SliceStore, adminTokenHash: String, now: @escaping @Sendable () -> Moment = { .current },
        registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry(), logger: Logger = Logger(label: "portslice.api")
    ) {
        self.store = store
        self.adminTokenHash = adminTokenHash
        self.now = now
        self.registry = registry
        self.logger = logger
        health = DatabaseHealth(registry: registry)
        requestMetrics = RequestMetricHandles(registry: registry)
    }

    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: RequestMetrics(handles: requestMetrics))
        on(router, .health) { _, _, _ in Self.text("ok") }
        on(router, .readiness) { _, _, _ in try await readiness() }
        on(router, .metrics) { _, _, _ in Self.text(await metrics()) }
        on(router, .openAPIDocument) { _, _, _ in Self.text(OpenAPIDocument.yaml, contentType: "application/yaml") }
        on(router, .addHost) { request, context, _ in
            let body = try await decode(NewHost.self, request)
            let token = try await store.addHost(body.name, labels: body.labels ?? [:], now: now())
            return try Self.json(IssuedToken(name: body.name, token: token), status: .created)
        }
        on(router, .rotateHost) { _, context, _ in
            let name = try Self.parameter("name", context)
            return try Self.json(IssuedToken(name: name, token: try await store.rotateToken(of: .host(name))))
        }
        on(router, .removeHost) { _, context, _ in
            try await store.removeHost(try Self.parameter("name", context), now: now())
            return Response(status: .noContent)
        }
        on(router, .addEdge) { request, _, _ in
            let body = try await decode(NewEdge.self, request)
            let token = try await store.addEdge(body.name, now: now())
            return try Self.json(IssuedToken(name: body.name, token: token), status: .created)
        }
        on(router, .rotateEdge) { _, context, _ in
            let name = try Self.parameter("name", context)
            return try Self.json(IssuedToken(name: name, token: try await store.rotateToken(of: .edge(name))))
        }
        on(router, .removeEdge) { _, context, _ in
            try await store.removeEdge(try Self.parameter("name", context))
            return Response(status: .noContent)
        }
        on(router, .listHosts) { _, _, _ in
            let hosts = try await store.hosts(now: now())
            return try Self.json(HostList(hosts: hosts.map { host in
                HostBody(name: host.name, labels: host.labels, leases: host.leases, prefixLeases: host.prefixLeases, lastRenewal: host.lastRenewal?.milliseconds,
                         renewalLate: host.renewalLate, wants: host.wants)
            }))
        }
        on(router, .listEdges) { _, _, _ in
            let edges = try await store.edges()
            let version = try await store.tableVersion()
            return try Self.json(EdgeList(tableVersion: version, edges: edges.map { edge in
                EdgeBody(name: edge.name, appliedVersion: edge.appliedVersion, lastReport: edge.reported?.milliseconds,
                         versionsBehind: edge.appliedVersion.map { max(0, version - $0) })
            }))
        }
        on(router, .addViewer) { request, _, _ in
            let body = try await decode(NewViewer.self, request)
            let token = try await store.addViewer(body.name, now: now())
            return try Self.json(IssuedToken(name: body.name, token: token), status: .created)
        }
        on(router, .rotateViewer) { _, context, _ in
            let name = try Self.parameter("name", context)
            return try Self.json(IssuedToken(name: name, token: try await store.rotateToken(of: .viewer(name))))
        }
        on(router, .removeViewer) { _, context, _ in
            try await store.removeViewer(try Self.parameter("name", context))
            return Response(status: .noContent)
        }
        on(router, .acquire) { request, _, caller in
            Self.json(try await acquisition(for: caller.name, try await decode(AcquireRequest.self, request)), status: .created)
        }
        on(router, .listLeases) { _, _, caller in
            try await store.advance(to: now())
            let held = caller.role == .host
                ? HeldLeases(slices: try await store.leases(of: caller.name), prefixes: try await store.prefixLeases(of: caller.name))
                : HeldLeases(slices: try await store.allLeases(), prefixes: try await store.allPrefixLeases())
            return Self.json(try await leaseList(held))
        }
        on(router, .renewAll) { request, _, caller in
            let timeToLive = try renewalTime(body: try await collect(request))
            return Self.json(body: try await renewal(of: caller.name, timeToLive: timeToLive))
        }
        on(router, .renew) { request, context, caller in
            let id = try Self.leaseID(context)
            let lease = try await store.renew(id, host: caller.name, timeToLive: try renewalTime(body: try await collect(request)), now: now())
            return Self.json(LeaseBody(lease, traits: try await store.traits(of: [lease.slice.address])[lease.slice.address]))
        }
        on(router, .release) { _, context, caller in
            try await store.release(try Self.leaseID(context), host: caller.name, now: now())
            return Response(status: .noContent)
        }
        on(router, .listPool) { _, _, _ in
            try Self.json(PoolList(addresses: try await store.pool().map { PoolAddressBody(address: $0.egress.address, traits: $0.egress.traits, draining: $0.draining) }))
        }
        on(router, .geofeed) { request, _, _ in try await geofeed(request) }
        on(router, .addAddress) { request, _, _ in
            let body = try await decode(NewAddress.self, request)
            if body.sliceSize != nil && body.slices != nil {
                throw APIError(.badRequest, "give sliceSize or slices, not both", field: "slices")
            }
            let layout: SlicePlan.Layout = body.slices.map { .sliceCount($0) } ?? .portsPerSlice(body.sliceSize ?? 2048)
            let plan = try Self.field(body.slices != nil ? "slices" : "sliceSize") {
                try SlicePlan(range: body.range ?? .nonSystemPorts, layout: layout)
            }
            try await store.add(EgressAddress(address: body.address, traits: body.traits), plan: plan)
            return Response(status: .created)
        }
        on(router, .drain) { _, context, _ in
            try await store.drain(try Self.addressParameter(context), now: now())
            return Response(status: .noContent)
        }
        on(router, .removeAddress) { _, context, _ in
            try await store.remove(try Self.addressParameter(context), now: now())
            return Response(status: .noContent)
        }
        on(router, .who) { request, _, _ in
            let query = request.uri.queryParameters
            switch try Self.field("address", { try IPAddress(parsing: String(query["address"] ?? "")) }) {
            case .v4(let address):
                guard let port = query["port"].flatMap({ UInt16($0) }) else {
                    throw APIError(.badRequest, "port must be a number 0-65535", field: "port")
                }
                return try Self.json(Holders(records: try await store.who(address: address, port: port, at: try Self.at(request))))
            case .v6(let address):
                // A prefix is held whole, every port of every address in it: no port to name.
                return try Self.json(Holders(records: [], prefixRecords: try await store.who(address: address, at: try Self.at(request))))
            }
        }
        on(router, .sliceTable) { request, _, caller in
            if caller.role == .edge, let text = request.uri.queryParameters["applied"] {
                guard let applied = Int64(text), applied >= 0 else {
                    throw APIError(.badRequest, "applied must be the table version the edge has in its kernel", field: "applied")
                }
                try await store.recordApplied(edge: caller.name, version: applied, now: now())
            }
            let since = try Self.since(request)
            if caller.role == .host { return try Self.json(try await hostPart(of: caller.name, since: since)) }
            let table = try await sliceTable(since: since)
            return Self.json(body: try await wholeTables.value(for: table.version) { _ in ByteBuffer(bytes: try JSONEncoder().encode(table)) })
        }
        on(router, .capacity) { _, _, _ in try Self.json(try await capacity()) }
        on(router, .addPrefix) { request, _, _ in
            let body = try await decode(NewPrefix.self, request)
            try await store.add(try PoolPrefix(prefix: body.prefix, traits: body.traits, leaseLength: body.leaseLength ?? defaultPrefixLength))
            return Response(status: .created)
        }
        on(router, .listPrefixes) { _, _, _ in
            try Self.json(PrefixList(prefixes: try await store.prefixes().map(PoolPrefixBody.init)))
        }
        on(router, .drainPrefix) { _, context, _ in
            try await store.drain(try Self.prefixParameter(context), now: now())
            return Response(status: .noContent)
        }
        on(router, .removePrefix) { _, context, _ in
            try await store.remove(try Self.prefixParameter(context), now: now())
            return Response(status: .noContent)
        }
        on(router, .acquirePrefixes) { request, _, caller in
            let body = try await decode(AcquireRequest.self, request)
            let leases = try await store.acquirePrefixes(
                host: caller.name, traits: body.traits, count: body.count ?? 1,
                timeToLive: body.ttlSeconds.map { .seconds($0) } ?? defaultTimeToLive, now: now())
            return Self.json(try await leaseList(HeldLeases(prefixes: leases)), status: .created)
        }
        on(router, .releasePrefix) { _, context, caller in
            try await store.releasePrefix(try Self.leaseID(context), host: caller.name, now: now())
            return Response(status: .noContent)
        }
        addConsole(to: router)
        return router
    }

    /// The console's page and its assets: no token (the page asks for one and sends it with
    /// its API requests), and a policy that lets the page load nothing from elsewhere.
    private func addConsole(to router: Router<BasicRequestContext>) {
        let assets: [(path: String, body: String, type: String)] = [
            ("/console", ConsolePage.html, "text/html; charset=utf-8"),
            ("/console/console.css", ConsolePage.css, "text/css; charset=utf-8"),
            ("/console/console.js", ConsolePage.javaScript, "text/javascript; charset=utf-8"),
        ]
        for asset in assets {
            router.get(RouterPath(asset.path)) { _, _ in
                Response(status: .ok, headers: [
                    .contentType: asset.type,
                    .contentSecurityPolicy: "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
                    .init("Referrer-Policy")!: "no-referrer",
                    .cacheControl: "no-cache",
                ], body: ResponseBody(byteBuffer: ByteBuffer(string: asset.body)))
            }
        }
    }

    /// `GET /geofeed.csv`: the pool in RFC 8805 canonical form, with an `ETag` of its content
    /// (a matching `If-None-Match` gets 304) and a day's `Cache-Control`, as providers fetch
    /// feeds about daily.
    private func geofeed(_ request: Request) async throws -> Response {
        let text = Geofeed(pool: try await store.pool().map(\.egress), prefixes: try await store.prefixes()).csv(columns: .standard)
        let tag = "\"" + HostToken.hash(of: text).prefix(32) + "\""
        var headers: HTTPFields = [.eTag: tag, .cacheControl: "public, max-age=86400"]
        if request.headers[.ifNoneMatch] == tag { return Response(status: .notModified, headers: headers) }
        headers[.contentType] = "text/csv; charset=utf-8"
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }

    // MARK: - Dispatch

    /// Who is calling, once the token is checked.
    enum Caller {
        case anonymous, admin, principal(Principal)

        var role: Role? {
            switch self {
            case .anonymous: nil
            case .admin: .admin
            case .principal(.host): .host
            case .principal(.edge): .edge
            case .principal(.viewer): .viewer
            }
        }

        /// The host's or edge's name ("" otherwise: routes for them only are never reached
        /// by others).
        var name: String {
            if case .principal(let principal) = self { principal.name } else { "" }
        }
    }

    /// Registers `route`: the caller is authenticated and checked against the route's roles
    /// before `handle` runs, and refusals and outages become their answers.
    private func on(
        _ router: Router<BasicRequestContext>, _ route: APIRoute, _ handle: @escaping @Sendable (Request, BasicRequestContext, Caller) async throws -> Response
    ) {
        router.on(RouterPath(route.routerPath), method: route.httpMethod) { request, context in
            do {
                let caller = try await authorize(request, for: route)
                return try await handle(request, context, caller)
            } catch {
                throw refusal(for: error) ?? error
            }
        }
    }

    /// The answer to a failed request: its own for a refusal, 503 for an outage (which it
    /// counts); nil for anything else, which is the server's fault.
    func refusal(for error: any Error) -> APIError? {
        switch error {
        case let refusal as APIError:
            return refusal
        case let refusal as AllocationError:
            return APIError(refusal)
        case is DatabaseUnavailable:
            health.recordOutage()
            return .databaseUnavailable
        default:
            return nil
        }
    }

    /// Checks the bearer token against the route's roles. The admin token needs no database;
    /// a host's or edge's is looked up (so it fails as unavailable while the database is away).
    private func authorize(_ request: Request, for route: APIRoute) async throws -> Caller {
        guard !route.roles.isEmpty else { return .anonymous }
        guard let token = Self.bearerToken(request.headers) else {
            health.recordAuthenticationFailure("missing")
            throw APIError.unauthorized
        }
        let caller: Caller
        if HostToken.matches(token, hash: adminTokenHash) {
            caller = .admin
        } else if let principal = try await store.principal(authenticatedBy: token) {
            caller = .principal(principal)
        } else {
            health.recordAuthenticationFailure("unknown")
            throw APIError.unauthorized
        }
        guard let role = caller.role, route.roles.contains(role) else {
            health.recordAuthenticationFailure("forbidden")
            throw APIError.forbidden(route)
        }
        return caller
    }

    /// The token of an `Authorization: Bearer ...` header; nil without one.
    public static func bearerToken(_ headers: HTTPFields) -> String? {
        guard let header = headers[.authorization], header.hasPrefix("Bearer ") else { return nil }
        return String(header.dropFirst("Bearer ".count))
    }

    // MARK: - Answers that need more than one store call

    /// Leases as the API answers them, each with its address's (or pool prefix's) traits: a
    /// host chooses among the addresses and prefixes it holds by them.
    func leaseList(_ held: HeldLeases) async throws -> LeaseList {
        let traits = try await store.traits(of: Set(held.slices.map(\.slice.address)))
        let prefixTraits = held.prefixes.isEmpty ? [:]
            : Dictionary(uniqueKeysWithValues: try await store.prefixes().map { ($0.prefix, $0.traits) })
        return LeaseList(leases: held.slices.map { LeaseBody($0, traits: traits[$0.slice.address]) },
                         prefixLeases: held.prefixes.map { PrefixLeaseBody($0, traits: prefixTraits[$0.pool]) })
    }

    /// The lease time a renewal's body asks for; an empty body asks for the default.
    func renewalTime(body: ByteBuffer) throws -> Duration {
        let request = try Self.decoding { try RenewRequest(body: body.readableBytesView) }
        return request.ttlSeconds.map { .seconds($0) } ?? defaultTimeToLive
    }

    /// `since` of `GET /v1/slices[?since=VERSION]`, when given.
    private static func since(_ request: Request) throws -> Int64? {
        guard let text = request.uri.queryParameters["since"] else { return nil }
        guard let since = Int64(text) else { throw APIError(.badRequest, "since must be a table version number", field: "since") }
        return since
    }

    /// The table; with `since`, once it is newer than that version or `longPollTimeout` has
    /// passed. The wait asks nothing of the database: the store's version feed hears this
    /// replica's commits and, on PostgreSQL, every other replica's. A server shutting down
    /// answers at once.
    private func sliceTable(since: Int64?) async throws -> SliceTable {
        if let since { await waitForTable(newerThan: since, until: .now + longPollTimeout) }
        return try await store.sliceTable()
    }

    /// A host's own part of the table; with `since`, once its part changed after that version
    /// or `longPollTimeout` has passed: a change elsewhere in the fleet does not answer a
    /// host's guard. Every host's part is made once per version (`HostTableParts`).
    private func hostPart(of host: String, since: Int64?) async throws -> SliceTable {
        guard let since else { return try await parts(of: try await store.sliceTable()).part(of: host) }
        let deadline = ContinuousClock.now + longPollTimeout
        var seen = since
        while true {
            await waitForTable(newerThan: seen, until: deadline)
            let parts = try await parts(of: try await store.sliceTable())
            // Waits again only for a newer table than the last judged (one no newer, a kept
            // table read while the feed moved on, is answered rather than read in a loop), and
            // only when these parts can tell whether the host's part changed since `since`.
            guard parts.version > seen, parts.unchanged(host, since: since), ContinuousClock.now < deadline,
                  !Task.isShuttingDownGracefully, !Task.isCancelled
            else { return parts.part(of: host) }
            seen = parts.version
        }
    }

    private func parts(of table: SliceTable) async throws -> HostTableParts {
        try await hostParts.value(for: table.version) { previous in HostTableParts(table, after: previous) }
    }

    private func waitForTable(newerThan version: Int64, until deadline: ContinuousClock.Instant) async {
        let timeout = deadline - .now
        guard timeout > .zero else { return }
        _ = await cancelWhenGracefulShutdown { await store.versions.wait(newerThan: version, timeout: timeout) }
    }

    /// Per trait class, how many slices are free, leased, quarantined and draining, and a
    /// warning for a class that is (nearly) exhausted.
    private func capacity() async throws -> CapacityReport {
        try await store.advance(to: now())
        let counts = Dictionary(grouping: try await store.capacity(), by: \.traits)
        return CapacityReport(classes: counts.keys.sorted { $0.summary < $1.summary }.map { traits in
            func count(_ state: SliceStatus) -> Int { counts[traits]!.filter { $0.state == state }.reduce(0) { $0 + $1.count } }
            let free = count(.free), leased = count(.leased), quarantined = count(.quarantined), draining = count(.draining)
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

    /// `/readyz`: 200 when the database answers, else 503 with the reason.
    private func readiness() async throws -> Response {
        do {
            try await store.ping()
            health.recordUp()
            return try Self.json(Readiness(ready: true, reason: nil))
        } catch {
            health.recordOutage(answered503: false)
            return try Self.json(Readiness(ready: false, reason: "\(error)"), status: .serviceUnavailable)
        }
    }

    /// Prometheus text. Slice counts per trait class and state are read from the store at
    /// each scrape (left out while the database is away); request counts and latencies come
    /// from swift-metrics.
    private func metrics() async -> String {
        do {
            try await store.advance(to: now())
            var leased = 0
            for count in try await store.capacity() {
                registry.makeGauge(
                    descriptor: MetricNameDescriptor(namespace: "portslice", metricName: "slices", unitName: "", helpText: "Slices per trait class and state"),
                    labels: [("traits", count.traits.summary), ("state", count.state.rawValue)]
                ).set(Double(count.count))
                if count.state == .leased { leased += count.count }
            }
            registry.makeGauge(descriptor: MetricNameDescriptor(namespace: "portslice", metricName: "leases", unitName: "", helpText: "Leases held now")).set(Double(leased))
            health.recordUp()
        } catch {
            health.recordOutage(answered503: false)
        }
        var text: [UInt8] = []
        registry.emit(into: &text)
        return String(decoding: text, as: UTF8.self)
    }
}

extension Moment {
    /// The wall clock now.
    public static var current: Moment { Moment(milliseconds: Int64(Date().timeIntervalSince1970 * 1000)) }
}
