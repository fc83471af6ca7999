import Foundation
import Hummingbird
import NIOCore
import PortSliceAPI
import PortSliceCore

// What the routes read from a request (bodies, path and query parameters, each refusal naming
// its field) and how they write their answers.
extension ControlAPI {
    /// The JSON body as `T`, at most `maximumBodyBytes`; a bad field is named in the answer.
    func decode<T: Decodable>(_ type: T.Type, _ request: Request) async throws -> T {
        try Self.decode(T.self, from: try await collect(request))
    }

    /// The body, at most `maximumBodyBytes`.
    func collect(_ request: Request) async throws -> ByteBuffer {
        do {
            return try await request.body.collect(upTo: Self.maximumBodyBytes)
        } catch {
            throw APIError(.contentTooLarge, "the body is larger than \(Self.maximumBodyBytes) bytes")
        }
    }

    static func decode<T: Decodable>(_ type: T.Type, from json: ByteBuffer) throws -> T {
        try decoding { try JSONDecoder().decode(T.self, from: Data(json.readableBytesView)) }
    }

    /// What `read` reads from a body, a decoding failure answered as 400 naming the field.
    static func decoding<T>(_ read: () throws -> T) throws -> T {
        do {
            return try read()
        } catch let error as DecodingError {
            throw Self.apiError(error)
        } catch {
            throw APIError(.badRequest, "the body is not valid JSON: \(error)")
        }
    }

    static func apiError(_ error: DecodingError) -> APIError {
        func name(_ path: [any CodingKey]) -> String? { path.isEmpty ? nil : path.map(\.stringValue).joined(separator: ".") }
        switch error {
        case .keyNotFound(let key, let context):
            return APIError(.badRequest, "'\(key.stringValue)' is missing", field: name(context.codingPath + [key]))
        case .typeMismatch(_, let context), .valueNotFound(_, let context):
            return APIError(.badRequest, "'\(name(context.codingPath) ?? "body")' has the wrong type", field: name(context.codingPath))
        case .dataCorrupted(let context):
            // A field the contract parsed and refused names itself; otherwise the JSON is broken.
            if let field = name(context.codingPath) { return APIError(.badRequest, context.debugDescription, field: field) }
            return APIError(.badRequest, "the body is not valid JSON: \(context.debugDescription)")
        @unknown default:
            return APIError(.badRequest, "the body could not be read")
        }
    }

    /// Runs `body`, naming `field` when its input is refused.
    static func field<T>(_ field: String, _ body: () throws -> T) throws -> T {
        do { return try body() } catch { throw APIError(.badRequest, "\(error)", field: field) }
    }

    static func parameter(_ name: String, _ context: BasicRequestContext) throws -> String {
        guard let value = context.parameters.get(name), !value.isEmpty else {
            throw APIError(.badRequest, "the path needs a \(name)", field: name)
        }
        return value
    }

    /// The `at` query parameter of `GET /v1/who`.
    static func at(_ request: Request) throws -> Moment {
        guard let at = request.uri.queryParameters["at"].flatMap({ Int64($0) }) else {
            throw APIError(.badRequest, "at must be a time in milliseconds since 1970", field: "at")
        }
        return Moment(milliseconds: at)
    }

    static func leaseID(_ context: BasicRequestContext) throws -> Int64 {
        guard let id = context.parameters.get("id").flatMap({ Int64($0) }) else {
            throw APIError(.badRequest, "the lease id in the path must be a number", field: "id")
        }
        return id
    }

    static func addressParameter(_ context: BasicRequestContext) throws -> IPv4Address {
        try field("address") { try IPv4Address(parsing: context.parameters.get("address") ?? "") }
    }

    /// A pool prefix named by two path segments, its network (which clients may send with its
    /// colons percent-encoded) and its length.
    static func prefixParameter(_ context: BasicRequestContext) throws -> IPv6Prefix {
        let network = try parameter("network", context)
        let length = try parameter("length", context)
        return try field("network") { try IPv6Prefix(parsing: (network.removingPercentEncoding ?? network) + "/" + length) }
    }

    /// `value` as a JSON answer (also the benchmark's peer server's answers).
    public static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        json(body: ByteBuffer(bytes: try JSONEncoder().encode(value)), status: status)
    }

    /// Lease answers, the ones sent most, written without `JSONEncoder` (see `JSONWriter`).
    static func json(_ value: some JSONWritable, status: HTTPResponse.Status = .ok) -> Response {
        json(body: ByteBuffer(bytes: JSONWriter.encode(value)), status: status)
    }

    public static func json(body: ByteBuffer, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json; charset=utf-8"], body: ResponseBody(byteBuffer: body))
    }

    static func text(_ text: String, contentType: String = "text/plain; charset=utf-8") -> Response {
        Response(status: .ok, headers: [.contentType: contentType], body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }
}
