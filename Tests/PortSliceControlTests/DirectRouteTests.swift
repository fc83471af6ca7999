import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import NIOPosix
import Synchronization
import Testing
@testable import PortSliceControl

/// `DirectRoute` ahead of a live Hummingbird server, over a raw socket so requests can be
/// pipelined: it answers its route, hands what it declines (and what it must not take) to
/// the router, and keeps every connection's answers in the order of its requests.
@Suite("Route answered ahead of the router")
struct DirectRouteTests {
    /// The router answers `/direct` too, so an answer says who made it.
    static func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.get("/slow") { _, _ in
            try await Task.sleep(for: .milliseconds(150))
            return "slow"
        }
        router.get("/hello") { _, _ in "hello" }
        router.post("/direct") { request, _ in
            let body = try await request.body.collect(upTo: 1024)
            return "router " + String(buffer: body)
        }
        return router
    }

    /// Answers `POST /direct` after 100 ms (so anything sent behind it is read meanwhile),
    /// with the body it got, unless the body is "decline"; and `PUT /direct` at once, with
    /// the body it got.
    static func direct() -> [any RemovableChannelHandler] {
        let routes = [
            DirectRoute.Route(method: .post, path: "/direct") { _, body in
                guard String(buffer: body) != "decline" else { return nil }
                try? await Task.sleep(for: .milliseconds(100))
                return DirectRoute.Answer(status: .accepted, json: ByteBuffer(string: #"{"direct":"\#(String(buffer: body))"}"#))
            },
            DirectRoute.Route(method: .put, path: "/direct") { _, body in
                DirectRoute.Answer(status: .ok, json: ByteBuffer(string: #"{"put":"\#(String(buffer: body))"}"#))
            },
        ]
        return [DirectRoute(routes: routes, serverName: "direct-test", maximumBodyBytes: 16)]
    }

    func withServer(_ body: @Sendable (Int) async throws -> Void) async throws {
        let app = Application(router: Self.router(), server: DirectRoute.http1(Self.direct()))
        try await app.test(.live) { client in try await body(try #require(client.port)) }
    }

    static func post(_ body: String, headers: String = "", method: String = "POST") -> String {
        "\(method) /direct HTTP/1.1\r\nHost: test\r\n\(headers)Content-Length: \(body.utf8.count)\r\n\r\n\(body)"
    }

    static let slow = "GET /slow HTTP/1.1\r\nHost: test\r\n\r\n"
    static let hello = "GET /hello HTTP/1.1\r\nHost: test\r\n\r\n"

    @Test func answersItsRouteAndKeepsTheOrderOfPipelinedRequests() async throws {
        try await withServer { port in
            // Taken: its answer is made while the next two wait, then the router answers them.
            let answers = try await Self.exchange(port: port, Self.post("one") + Self.hello + Self.post("decline"), answers: 3)
            #expect(answers.map(\.status) == [202, 200, 200])
            #expect(answers.map(\.body) == [#"{"direct":"one"}"#, "hello", "router decline"])
            #expect(answers[0].headers["content-type"] == "application/json; charset=utf-8")
            #expect(answers[0].headers["server"] == "direct-test")
            #expect(answers[0].headers["date"]?.hasSuffix(" GMT") == true)
            #expect(answers[0].headers["content-length"] == "16")
        }
    }

    @Test func answersEachRouteByItsOwnResponder() async throws {
        try await withServer { port in
            // The slow POST is answered first though the PUT behind it needs no wait; a method
            // of the path that no route has goes to the router (which has none: 404).
            let answers = try await Self.exchange(
                port: port, Self.post("eight") + Self.post("nine", method: "PUT") + Self.post("ten", method: "PATCH"), answers: 3)
            #expect(answers.map(\.status) == [202, 200, 404])
            #expect(answers.prefix(2).map(\.body) == [#"{"direct":"eight"}"#, #"{"put":"nine"}"#])
        }
    }

    @Test func leavesToTheRouterWhatComesBehindARouterRequest() async throws {
        try await withServer { port in
            // The router still works on /slow when /direct arrives: answered by the router, in order.
            let behind = try await Self.exchange(port: port, Self.slow + Self.post("two") + Self.post("three"), answers: 3)
            #expect(behind.map(\.body) == ["slow", "router two", "router three"])
            // Two of its own in a row, then one for the router: each waits for the one before.
            let own = try await Self.exchange(port: port, Self.post("four") + Self.post("five") + Self.hello, answers: 3)
            #expect(own.map(\.body) == [#"{"direct":"four"}"#, #"{"direct":"five"}"#, "hello"])
        }
    }

    @Test func leavesToTheRouterWhatItMustNotAnswer() async throws {
        try await withServer { port in
            let answers = try await Self.exchange(
                port: port,
                Self.post("0123456789abcdefg")  // over its 16 bytes
                    + Self.post("expects", headers: "Expect: 100-continue\r\n")
                    + Self.post("closes", headers: "Connection: close\r\n"),
                answers: 3)
            #expect(answers.map(\.body) == ["router 0123456789abcdefg", "router expects", "router closes"])
        }
    }

    /// What comes behind a request being answered (a request the parser refuses, the client's
    /// half-close) waits for the answer rather than ending the connection before it.
    @Test func answersBeforeWhatComesBehindEndsTheConnection() async throws {
        try await withServer { port in
            let refused = try await Self.exchange(port: port, Self.post("six") + "NOT HTTP AT ALL\r\n\r\n", answers: 2)
            #expect(refused.map(\.status) == [202, 400])
            #expect(refused.first?.body == #"{"direct":"six"}"#)
            let halfClosed = try await Self.exchange(port: port, Self.post("seven"), answers: 1, halfClose: true)
            #expect(halfClosed.map(\.body) == [#"{"direct":"seven"}"#])
        }
    }

    // MARK: - A raw HTTP/1.1 client

    struct Answer {
        let status: Int
        let headers: [String: String]
        let body: String
    }

    /// Sends `requests` in one write on a new connection (then, with `halfClose`, closes its
    /// sending side) and reads `answers` answers.
    static func exchange(port: Int, _ requests: String, answers count: Int, halfClose: Bool = false) async throws -> [Answer] {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(
                        wrappingChannelSynchronously: channel, configuration: .init(isOutboundHalfClosureEnabled: true))
                }
            }
        return try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: requests))
            if halfClose { outbound.finish() }
            var received = ByteBuffer()
            var parsed: [Answer] = []
            for try await var chunk in inbound {
                received.writeBuffer(&chunk)
                while let answer = parse(&received) { parsed.append(answer) }
                if parsed.count >= count { break }
            }
            try #require(parsed.count == count, "the server closed after \(parsed.count) of \(count) answers")
            return parsed
        }
    }

    /// One whole answer off the front of `buffer` (its length from `Content-Length`); an
    /// interim answer (`100 Continue`) is skipped.
    static func parse(_ buffer: inout ByteBuffer) -> Answer? {
        while let answer = parseOne(&buffer) {
            if answer.status >= 200 { return answer }
        }
        return nil
    }

    private static func parseOne(_ buffer: inout ByteBuffer) -> Answer? {
        let text = String(buffer: buffer)
        guard let headEnd = text.range(of: "\r\n\r\n") else { return nil }
        let lines = text[..<headEnd.lowerBound].components(separatedBy: "\r\n")
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let headBytes = text[..<headEnd.upperBound].utf8.count
        let length = Int(headers["content-length"] ?? "0") ?? 0
        guard buffer.readableBytes >= headBytes + length else { return nil }
        buffer.moveReaderIndex(forwardBy: headBytes)
        let body = buffer.readString(length: length) ?? ""
        let status = Int(lines[0].split(separator: " ")[1]) ?? 0
        return Answer(status: status, headers: headers, body: body)
    }
}
