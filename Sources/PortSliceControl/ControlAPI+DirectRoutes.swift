import Foundation
import Hummingbird
import NIOCore
import PortSliceAPI
import PortSliceStore

// Renewals answered ahead of Hummingbird's router, by `DirectRoute`, with the router's own
// parts (token check, lease time, renewal, refusals, metrics), so the two cannot drift apart.
extension ControlAPI {
    /// The handlers `serve` puts ahead of the router, made for each connection
    /// (`HTTP1Channel.Configuration.additionalChannelHandlers`): `POST /v1/leases/renew`,
    /// which every agent sends once a period, answered by `DirectRoute` without Hummingbird's
    /// per-request work. Its answers are the router's, which a test compares byte for byte.
    public func directRoutes(serverName: String?) -> [any RemovableChannelHandler] {
        let route = APIRoute.renewAll
        return [DirectRoute(method: route.httpMethod, path: route.path, serverName: serverName, maximumBodyBytes: Self.maximumBodyBytes) { head, body in
            await directRenewal(head, body)
        }]
    }

    /// A renewal as the router's `renewAll` makes it. A request the router would refuse
    /// before anything changes (no host token, the admin's, a body that does not decode) is
    /// declined and goes on to the router, which answers and counts its refusal as for any
    /// route; the admin token is recognised first, as the router does, so that it never asks
    /// the database.
    func directRenewal(_ head: HTTPRequest, _ body: ByteBuffer) async -> DirectRoute.Answer? {
        let started = ContinuousClock.now
        guard let token = Self.bearerToken(head.headerFields), !HostToken.matches(token, hash: adminTokenHash) else { return nil }
        let answer: DirectRoute.Answer
        do {
            // The body first: one the router would refuse costs no token lookup here.
            guard let timeToLive = try? renewalTime(body: body), case .host(let name)? = try await store.principal(authenticatedBy: token)
            else { return nil }
            answer = DirectRoute.Answer(status: .ok, json: try await renewal(of: name, timeToLive: timeToLive))
        } catch {
            if let refusal = refusal(for: error) {
                answer = DirectRoute.Answer(status: refusal.status, json: refusal.json)
            } else {
                // The server's fault: logged here, and answered without its details.
                logger.error("a renewal failed", metadata: ["error": "\(error)"])
                answer = DirectRoute.Answer(status: .internalServerError, json: APIError(.internalServerError, "the renewal failed").json)
            }
        }
        requestMetrics.record(route: APIRoute.renewAll.path, method: head.method.rawValue, status: answer.status, after: started)
        return answer
    }

    /// Renews every live lease of `host`: the answer's body.
    func renewal(of host: String, timeToLive: Duration) async throws -> ByteBuffer {
        ByteBuffer(bytes: JSONWriter.encode(try await leaseList(try await store.renewAll(host: host, timeToLive: timeToLive, now: now()))))
    }
}
