import Foundation
import Hummingbird
import NIOCore
import PortSliceAPI
import PortSliceCore
import PortSliceStore

// Renewals and acquires answered ahead of Hummingbird's router, by `DirectRoute`, with the
// router's own parts (token check, body decoding, the store's call, refusals, metrics), so
// the two cannot drift apart.
extension ControlAPI {
    /// The handler `serve` puts ahead of the router, made for each connection
    /// (`HTTP1Channel.Configuration.additionalChannelHandlers`): `POST /v1/leases/renew`,
    /// which every agent sends once a period, and `POST /v1/leases`, answered by `DirectRoute`
    /// without Hummingbird's per-request work. Their answers are the router's, which a test
    /// compares byte for byte.
    public func directRoutes(serverName: String?) -> [any RemovableChannelHandler] {
        let routes = [
            DirectRoute.Route(method: APIRoute.renewAll.httpMethod, path: APIRoute.renewAll.path) { await directRenewal($0, $1) },
            DirectRoute.Route(method: APIRoute.acquire.httpMethod, path: APIRoute.acquire.path) { await directAcquire($0, $1) },
        ]
        return [DirectRoute(routes: routes, serverName: serverName, maximumBodyBytes: Self.maximumBodyBytes)]
    }

    /// A renewal as the router's `renewAll` makes it.
    func directRenewal(_ head: HTTPRequest, _ body: ByteBuffer) async -> DirectRoute.Answer? {
        await answerForHost(.renewAll, head, failing: "the renewal failed", decode: { try renewalTime(body: body) }) { host, timeToLive in
            DirectRoute.Answer(status: .ok, json: try await renewal(of: host, timeToLive: timeToLive))
        }
    }

    /// An acquire as the router's `acquire` makes it.
    func directAcquire(_ head: HTTPRequest, _ body: ByteBuffer) async -> DirectRoute.Answer? {
        await answerForHost(.acquire, head, failing: "the acquire failed", decode: { try Self.decode(AcquireRequest.self, from: body) }) { host, request in
            DirectRoute.Answer(status: .created, json: ByteBuffer(bytes: JSONWriter.encode(try await acquisition(for: host, request))))
        }
    }

    /// A host's request of `route`, answered as the router answers it. A request the router
    /// would refuse before anything changes (no host token, the admin's, a body that does not
    /// decode) is declined and goes on to the router, which answers and counts its refusal as
    /// for any route; the admin token is recognised first, as the router does, so that it
    /// never asks the database.
    private func answerForHost<Body>(
        _ route: APIRoute, _ head: HTTPRequest, failing failure: String, decode: () throws -> Body,
        answer: (_ host: String, Body) async throws -> DirectRoute.Answer
    ) async -> DirectRoute.Answer? {
        let started = ContinuousClock.now
        guard let token = Self.bearerToken(head.headerFields), !HostToken.matches(token, hash: adminTokenHash) else { return nil }
        let answered: DirectRoute.Answer
        do {
            // The body first: one the router would refuse costs no token lookup here.
            guard let body = try? decode(), case .host(let name)? = try await store.principal(authenticatedBy: token) else { return nil }
            answered = try await answer(name, body)
        } catch {
            if let refusal = refusal(for: error) {
                answered = DirectRoute.Answer(status: refusal.status, json: refusal.json)
            } else {
                // The server's fault: logged here, and answered without its details.
                logger.error("a request answered ahead of the router failed", metadata: ["route": "\(route.path)", "error": "\(error)"])
                answered = DirectRoute.Answer(status: .internalServerError, json: APIError(.internalServerError, failure).json)
            }
        }
        requestMetrics.record(route: route.path, method: head.method.rawValue, status: answered.status, after: started)
        return answered
    }

    /// Renews every live lease of `host`: the answer's body.
    func renewal(of host: String, timeToLive: Duration) async throws -> ByteBuffer {
        ByteBuffer(bytes: JSONWriter.encode(try await leaseList(try await store.renewAll(host: host, timeToLive: timeToLive, now: now()))))
    }

    /// The leases `request` asks for, acquired for `host`: the answer's body.
    func acquisition(for host: String, _ request: AcquireRequest) async throws -> LeaseList {
        let leases = try await store.acquire(
            host: host, traits: request.traits, count: request.count ?? 1,
            timeToLive: request.ttlSeconds.map { .seconds($0) } ?? defaultTimeToLive, now: now())
        return try await leaseList(HeldLeases(slices: leases))
    }
}
