import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// Where the allocator is and the token to use: shared by the commands that talk to it.
struct ServerOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The allocator's URL (PORTSLICE_SERVER).", valueName: "url"))
    var server: String?

    @Option(help: ArgumentHelp(
        "Token: the admin token for pool, hosts, leases, status and who (PORTSLICE_TOKEN; else PORTSLICE_ADMIN_TOKEN, else ./portslice-data/admin-token).",
        valueName: "token"))
    var token: String?

    func client() throws -> APIClient {
        let environment = ProcessInfo.processInfo.environment
        let base = server ?? environment["PORTSLICE_SERVER"] ?? "http://127.0.0.1:7300"
        let file = FileManager.default.contents(atPath: "\(environment["PORTSLICE_DATA_DIR"] ?? "./portslice-data")/admin-token")
            .map { String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) }
        guard let token = token ?? environment["PORTSLICE_TOKEN"] ?? environment["PORTSLICE_ADMIN_TOKEN"] ?? file else {
            throw CommandFailure("no token: pass --token, set PORTSLICE_TOKEN, or run where ./portslice-data/admin-token is")
        }
        return APIClient(base: base.hasSuffix("/") ? String(base.dropLast()) : base, token: token)
    }
}

/// A JSON call to the allocator's API; an error answer becomes a message with the server's words.
struct APIClient {
    let base: String
    let token: String

    /// Sends `body` (if any) and decodes the answer as `T`.
    func call<T: Decodable>(_ method: HTTPMethod, _ path: String, body: (some Encodable)? = nil as String?, as type: T.Type) async throws -> T {
        let data = try await send(method, path, body: body)
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch {
            throw CommandFailure("the allocator at \(base) sent an answer this command does not understand: \(error)")
        }
    }

    /// Sends `body` (if any) and returns the answer's bytes; throws on an error status.
    @discardableResult
    func send(_ method: HTTPMethod, _ path: String, body: (some Encodable)? = nil as String?) async throws -> Data {
        var request = HTTPClientRequest(url: base + path)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(body)))
        }
        let response: HTTPClientResponse
        do {
            response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        } catch {
            throw CommandFailure("cannot reach the allocator at \(base): \(error); is `portslice serve` running there?")
        }
        let bytes = try await response.body.collect(upTo: 16 * 1024 * 1024)
        let data = Data(bytes.readableBytesView)
        guard (200..<300).contains(response.status.code) else {
            throw APIFailure(status: Int(response.status.code), body: data)
        }
        return data
    }
}

/// An error answer from the allocator, worded as the server worded it.
struct APIFailure: Error, CustomStringConvertible {
    let status: Int
    let body: Data

    var message: String {
        struct ErrorBody: Decodable { let error: String; let field: String? }
        guard let decoded = try? JSONDecoder().decode(ErrorBody.self, from: body) else {
            return String(decoding: body, as: UTF8.self)
        }
        return decoded.field.map { "\(decoded.error) (field '\($0)')" } ?? decoded.error
    }

    var description: String { "the allocator refused (HTTP \(status)): \(message)" }
}
