import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// Calls the allocator's HTTP API with one token (the admin's or a host's): JSON in, JSON
/// out; an error answer becomes `APIFailure` with the server's words.
public struct AllocatorClient: Sendable {
    public let base: String
    public let token: String

    /// An HTTP client that fails at once when nothing listens (the shared client retries a
    /// refused connection until the request's deadline): an operator's command should say the
    /// allocator is down right away, and the agent has its own retry rhythm.
    public static let http: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = .seconds(5)
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }()

    /// - Parameter base: the allocator's URL, such as `http://127.0.0.1:7300`.
    public init(base: String, token: String) {
        self.base = base.hasSuffix("/") ? String(base.dropLast()) : base
        self.token = token
    }

    /// Sends `body` (if any) and decodes the answer as `T`.
    public func call<T: Decodable>(_ method: HTTPMethod, _ path: String, body: (some Encodable)? = nil as String?, as type: T.Type,
                                   timeout: Duration = .seconds(30)) async throws -> T {
        let data = try await send(method, path, body: body, timeout: timeout)
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch {
            throw AllocatorUnreachable("the allocator at \(base) sent an answer this program does not understand: \(error)")
        }
    }

    /// Sends `body` (if any) and returns the answer's bytes; throws on an error status.
    @discardableResult
    public func send(_ method: HTTPMethod, _ path: String, body: (some Encodable)? = nil as String?, timeout: Duration = .seconds(30)) async throws -> Data {
        var request = HTTPClientRequest(url: base + path)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(body)))
        }
        let response: HTTPClientResponse
        do {
            response = try await Self.http.execute(request, timeout: TimeAmount(timeout))
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw AllocatorUnreachable("cannot reach the allocator at \(base): \(error); is `portslice serve` running there?")
        }
        let bytes = try await response.body.collect(upTo: 16 * 1024 * 1024)
        let data = Data(bytes.readableBytesView)
        guard (200..<300).contains(response.status.code) else {
            throw APIFailure(status: Int(response.status.code), body: data)
        }
        return data
    }
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

    public var message: String {
        struct ErrorBody: Decodable { let error: String; let field: String? }
        guard let decoded = try? JSONDecoder().decode(ErrorBody.self, from: body) else {
            return String(decoding: body, as: UTF8.self)
        }
        return decoded.field.map { "\(decoded.error) (field '\($0)')" } ?? decoded.error
    }

    public var description: String { "the allocator refused (HTTP \(status)): \(message)" }
}
