import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import PortSliceAPI

/// The benchmark's paced renewal round through HTTP: the allocator's routes (`APIRoute`) and
/// bodies, as `AllocatorClient` sends them, with a connection per concurrent request. (The
/// closed loops go through `HTTPRequestLoad`, which costs the shared cores less.)
///
/// `AllocatorClient` keeps AsyncHTTPClient's default of at most 8 connections per server,
/// right for one agent or command, but here one process stands for many agents: a renewal
/// round (1,000 requests a second, each waiting up to 100 ms for its batch) behind 8
/// connections cannot keep pace. So the load goes through its own pool, large enough that no
/// request waits for a connection; connections are opened once and kept for the run, for us
/// and the peer alike.
struct LoadClient: Sendable {
    private let http: HTTPClient

    init(connectionsPerServer: Int) {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(idleTimeout: .seconds(300), concurrentHTTP1ConnectionsPerHostSoftLimit: connectionsPerServer)
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = .seconds(5)
        http = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }

    func shutdown() async throws { try await http.shutdown() }

    /// Sends one request and decodes the answer.
    /// - Throws: `BenchmarkFailure` for any status other than `expect`.
    func call<Answer: Decodable>(
        _ route: APIRoute, base: String, _ parameters: [String: String] = [:], token: String, body: (some Encodable)?,
        expect: Int, as type: Answer.Type
    ) async throws -> Answer {
        let data = try await send(route, base: base, parameters, token: token, body: body, expect: expect)
        return try JSONDecoder().decode(Answer.self, from: data)
    }

    private func send(
        _ route: APIRoute, base: String, _ parameters: [String: String] = [:], token: String, body: (some Encodable)?, expect: Int
    ) async throws -> Data {
        var request = HTTPClientRequest(url: base + route.path(parameters))
        request.method = HTTPMethod(rawValue: route.method.rawValue)
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(body)))
        }
        let response = try await http.execute(request, timeout: .seconds(30))
        let data = Data(try await response.body.collect(upTo: 16 * 1024 * 1024).readableBytesView)
        guard Int(response.status.code) == expect else {
            throw BenchmarkFailure("\(route) at \(base) answered \(response.status.code): \(String(decoding: data.prefix(300), as: UTF8.self))")
        }
        return data
    }
}
