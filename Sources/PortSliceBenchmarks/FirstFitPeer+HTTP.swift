import Foundation
import Hummingbird
import Logging
import NIOCore
import PortSliceAPI
import PortSliceControl
import PortSliceCore
import PortSliceStore

/// The first-fit peer behind HTTP, for `portslice bench alloc`'s HTTP rows: the allocator's
/// routes for registering hosts and addresses, acquiring, renewing all and releasing, with the
/// same paths, bodies and tokens, so the same client drives both. It answers leases without
/// traits (it has none). `portslice bench alloc-peer` runs it as a process of its own.
public enum FirstFitPeerServer {
    /// Where the peer's table lives (made beforehand with `FirstFitPeer.createSchema`).
    public enum Database: Sendable {
        case sqlite(path: String)
        case postgres(url: String)
    }

    /// Connections a peer process keeps to PostgreSQL, so that concurrent acquires (SKIP
    /// LOCKED) and renewal batches do not wait for each other.
    public static let defaultPostgresConnections = 4

    /// Serves until the process is stopped.
    /// - Parameters:
    ///   - adminToken: the token that may add hosts and addresses.
    ///   - connections: connections to PostgreSQL (SQLite always has one).
    ///   - onListening: called with the bound port.
    public static func run(
        database: Database, host: String, port: Int, adminToken: String, connections: Int,
        logger: Logger, onListening: @escaping @Sendable (Int) -> Void
    ) async throws {
        let peer = try await FirstFitPeer.open(database, connections: connections)
        let serverName = "portslice-bench-peer"
        let app = Application(
            router: router(peer, adminTokenHash: HostToken.hash(of: adminToken)),
            server: DirectRoute.http1(directRoutes(peer, serverName: serverName)),
            configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: serverName),
            onServerRunning: { onListening($0.localAddress?.port ?? 0) },
            logger: logger)
        try await app.runService()
        try await peer.close()
    }

    static func router(_ peer: FirstFitPeer, adminTokenHash: String) -> Router<BasicRequestContext> {
        let router = Router()
        func on(_ route: APIRoute, _ handle: @escaping @Sendable (Request, BasicRequestContext, String) async throws -> Response) {
            router.on(RouterPath(route.routerPath), method: route.httpMethod) { request, context in
                guard let token = ControlAPI.bearerToken(request.headers) else {
                    return try error(.unauthorized, "a bearer token is needed")
                }
                let caller: String
                if route.roles.contains(.admin) {
                    guard HostToken.matches(token, hash: adminTokenHash) else { return try error(.unauthorized, "not the admin token") }
                    caller = ""
                } else {
                    guard let host = try await peer.host(authenticatedBy: token) else { return try error(.unauthorized, "unknown token") }
                    caller = host
                }
                return try await handle(request, context, caller)
            }
        }
        on(.addHost) { request, _, _ in
            let body = try await decode(NewHost.self, request)
            return try ControlAPI.json(IssuedToken(name: body.name, token: try await peer.addHost(body.name)), status: .created)
        }
        on(.addAddress) { request, _, _ in
            let body = try await decode(NewAddress.self, request)
            let layout: SlicePlan.Layout = body.slices.map { .sliceCount($0) } ?? .portsPerSlice(body.sliceSize ?? 2048)
            try await peer.add(body.address, plan: try SlicePlan(range: body.range ?? .nonSystemPorts, layout: layout))
            return Response(status: .created)
        }
        on(.acquire) { request, _, host in
            let answer = try await acquisition(peer, host: host, try await decode(AcquireRequest.self, request))
            return ControlAPI.json(body: answer.json, status: answer.status)
        }
        on(.renewAll) { request, _, host in
            let renewed = try await renewal(peer, host: host, try RenewRequest(body: try await request.body.collect(upTo: maximumBodyBytes).readableBytesView))
            return ControlAPI.json(body: renewed)
        }
        on(.release) { _, context, host in
            guard let id = context.parameters.get("id").flatMap({ Int64($0) }) else { return try error(.badRequest, "the lease id must be a number") }
            guard try await peer.release(id, host: host, now: Moment.current) else { return try error(.notFound, "no such lease of \(host)") }
            return Response(status: .noContent)
        }
        return router
    }

    /// `POST /v1/leases/renew` and `POST /v1/leases` answered ahead of the router, as `serve`
    /// answers them (`ControlAPI.directRoutes`): the same HTTP path for ours and the peer's.
    static func directRoutes(_ peer: FirstFitPeer, serverName: String) -> [any RemovableChannelHandler] {
        /// A host's request of `route`; declined (for the router) without a host's token.
        func forHost(_ route: APIRoute, _ answer: @escaping @Sendable (_ host: String, ByteBuffer) async throws -> DirectRoute.Answer?) -> DirectRoute.Route {
            DirectRoute.Route(method: route.httpMethod, path: route.path) { head, body in
                guard let token = ControlAPI.bearerToken(head.headerFields) else { return nil }
                do {
                    guard let host = try await peer.host(authenticatedBy: token) else { return nil }
                    return try await answer(host, body)
                } catch {
                    return DirectRoute.Answer(status: .internalServerError, json: ByteBuffer(bytes: JSONWriter.encode(ErrorBody(error: "\(error)"))))
                }
            }
        }
        let routes = [
            forHost(.renewAll) { host, body in
                guard let request = try? RenewRequest(body: body.readableBytesView) else { return nil }
                return DirectRoute.Answer(status: .ok, json: try await renewal(peer, host: host, request))
            },
            forHost(.acquire) { host, body in
                guard let request = try? decode(AcquireRequest.self, from: body) else { return nil }
                return try await acquisition(peer, host: host, request)
            },
        ]
        return [DirectRoute(routes: routes, serverName: serverName, maximumBodyBytes: maximumBodyBytes)]
    }

    private static let maximumBodyBytes = 64 * 1024

    private static func acquisition(_ peer: FirstFitPeer, host: String, _ request: AcquireRequest) async throws -> DirectRoute.Answer {
        let now = Moment.current
        do {
            let leases = try await peer.acquire(host: host, count: request.count ?? 1, expires: now + .seconds(request.ttlSeconds ?? 300), now: now)
            return DirectRoute.Answer(status: .created, json: ByteBuffer(bytes: JSONWriter.encode(try leaseList(leases))))
        } catch PeerRefusal.noCapacity {
            return DirectRoute.Answer(status: .conflict, json: ByteBuffer(bytes: JSONWriter.encode(ErrorBody(error: "not enough free slices"))))
        }
    }

    private static func renewal(_ peer: FirstFitPeer, host: String, _ request: RenewRequest) async throws -> ByteBuffer {
        let now = Moment.current
        let leases = try await peer.renewAll(host: host, expires: now + .seconds(request.ttlSeconds ?? 300), now: now)
        return ByteBuffer(bytes: JSONWriter.encode(try leaseList(leases)))
    }

    private static func leaseList(_ leases: [PeerLease]) throws -> LeaseList {
        LeaseList(leases: try leases.map { lease in
            LeaseBody(
                Lease(id: lease.id, host: lease.host, slice: SliceID(address: lease.address, index: lease.sliceIndex),
                      ports: try PortSet(parsing: lease.ports), start: Moment(milliseconds: lease.started), expires: Moment(milliseconds: lease.expires)),
                traits: nil)
        })
    }

    private static func decode<T: Decodable>(_ type: T.Type, _ request: Request) async throws -> T {
        try decode(T.self, from: try await request.body.collect(upTo: maximumBodyBytes))
    }

    private static func decode<T: Decodable>(_ type: T.Type, from body: ByteBuffer) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(body.readableBytesView))
    }

    private static func error(_ status: HTTPResponse.Status, _ message: String) throws -> Response {
        try ControlAPI.json(ErrorBody(error: message), status: status)
    }
}
