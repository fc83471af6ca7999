import Foundation
import NIOCore
import PortSliceCore

/// HTTP proxying: CONNECT (RFC 9110 section 9.3.6) and requests with an absolute `http://` URI.
/// Reads the request head, opens the flow to the target, then answers 200 and relays (CONNECT)
/// or sends the rewritten request and relays the origin's answer; bytes the client sent after
/// the head follow. Head and early bytes together are capped by `PreRelayBudget` (431 while the
/// head is unfinished, 413 after). Failures get a status and a one-line reason, then the
/// connection closes.
final class HTTPConnectHandler: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    let session: ProxySession
    let client: IPAddress
    private var head = ByteBuffer()
    private var answered = false
    /// Set once the client was refused: a flow that opens after that is closed unused.
    private var refused = false

    init(session: ProxySession, client: IPAddress) {
        self.session = session
        self.client = client
    }

    private var log: @Sendable (String) -> Void { session.log }

    /// The name and password of the head's `Proxy-Authorization: Basic`, as sent (bytes); nil
    /// without one.
    static func basicCredentials(ofHead text: String) -> (user: [UInt8], password: [UInt8])? {
        let header = text.split(separator: "\r\n").dropFirst().first { $0.lowercased().hasPrefix("proxy-authorization:") }
        let value = header.map { $0.dropFirst("proxy-authorization:".count).trimmingCharacters(in: .whitespaces) } ?? ""
        guard value.lowercased().hasPrefix("basic "), let decoded = Data(base64Encoded: String(value.dropFirst(6))).map(Array.init),
              let colon = decoded.firstIndex(of: UInt8(ascii: ":")) else { return nil }
        return (Array(decoded[..<colon]), Array(decoded[(colon + 1)...]))
    }

    /// Succeeds with nil when the head carries the credentials of one of `users`, else with the
    /// 407 to refuse it with. bcrypt runs off the loop.
    func authenticationRefusal(ofHead text: String, users: ProxyUsers, on eventLoop: any EventLoop) -> EventLoopFuture<HTTPRefusal?> {
        guard let (user, password) = Self.basicCredentials(ofHead: text) else {
            return eventLoop.makeSucceededFuture(HTTPRefusal(407, "proxy authentication required"))
        }
        return session.verify(users, user: user, password: password, on: eventLoop).map { accepted in
            accepted ? nil : HTTPRefusal(407, "wrong username or password")
        }
    }

    /// What a request head asks for: a tunnel (CONNECT), or one request forwarded to an
    /// origin, whose head is rewritten to origin form without the proxy's own headers and with
    /// `Connection: close` (one request per connection keeps every flow on one slice's 4-tuple).
    enum Request: Equatable {
        case tunnel(host: String, port: UInt16)
        case forward(host: String, port: UInt16, head: String)
    }

    /// The request in a head, or the status and reason to refuse it with.
    static func request(ofHead text: String) -> Result<Request, HTTPRefusal> {
        let lines = text.components(separatedBy: "\r\n")
        let parts = lines[0].split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1."), !parts[0].isEmpty else { return .failure(HTTPRefusal(400, "malformed request line")) }
        if parts[0] == "CONNECT" {
            return authority(parts[1], defaultPort: nil).map { .tunnel(host: $0.host, port: $0.port) }
        }
        guard parts[1].lowercased().hasPrefix("http://") else {
            return .failure(HTTPRefusal(400, "a proxy request needs an absolute http:// URI or CONNECT (https goes through CONNECT); "
                + "the status page and /metrics are on the admin listener (--admin-listen, 127.0.0.1:1081 by default)"))
        }
        let rest = parts[1].dropFirst("http://".count)
        let pathStart = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        let path = rest[pathStart...].isEmpty ? "/" : (rest[pathStart...].first == "?" ? "/" + rest[pathStart...] : String(rest[pathStart...]))
        return authority(rest[..<pathStart], defaultPort: 80).map { target in
            let dropped = ["proxy-authorization:", "proxy-connection:", "connection:", "keep-alive:"]
            let headers = lines.dropFirst().filter { line in !line.isEmpty && !dropped.contains { line.lowercased().hasPrefix($0) } }
            let head = (["\(parts[0]) \(path) \(parts[2])"] + headers + ["Connection: close", "", ""]).joined(separator: "\r\n")
            return .forward(host: target.host, port: target.port, head: head)
        }
    }

    /// `host:port` (or `host` with a default port) of IPv4 destinations.
    static func authority(_ text: Substring, defaultPort: UInt16?) -> Result<(host: String, port: UInt16), HTTPRefusal> {
        if text.hasPrefix("[") { return .failure(HTTPRefusal(400, "IPv6 destinations are not served: egress addresses are IPv4")) }
        let host: Substring, port: UInt16?
        if let colon = text.lastIndex(of: ":") {
            host = text[..<colon]
            port = UInt16(text[text.index(after: colon)...])
        } else {
            host = text
            port = defaultPort
        }
        guard !host.isEmpty, let port, port != 0 else { return .failure(HTTPRefusal(400, "the request needs host:port with a port from 1 to 65535")) }
        return .success((String(host), port))
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        // Bytes after the head (a TLS hello sent without waiting for 200, a request body) wait
        // here until the flow is open, then go first.
        head.writeBuffer(&bytes)
        guard !answered else { return }
        let view = head.readableBytesView
        guard let end = view.firstRange(of: [13, 10, 13, 10]) else { return }
        answered = true
        let headLength = end.upperBound - view.startIndex
        let text = String(decoding: view.prefix(headLength), as: UTF8.self)
        head.moveReaderIndex(forwardBy: headLength)
        guard let users = session.settings.users else {
            answer(head: text, context: context)
            return
        }
        authenticationRefusal(ofHead: text, users: users, on: context.eventLoop).assumeIsolated().whenSuccess { [self] refusal in
            // Already refused while the password was checked (too many bytes sent), or gone.
            guard !refused && context.channel.isActive else { return }
            if let refusal {
                log("http: \(client): \(refusal.reason)")
                refuse(refusal, context: context)
            } else {
                answer(head: text, context: context)
            }
        }
    }

    /// Serves the request in the (authenticated) head `text`.
    private func answer(head text: String, context: ChannelHandlerContext) {
        switch Self.request(ofHead: text) {
        case .failure(let refusal):
            refuse(refusal, context: context)
        case .success(.tunnel(let host, let port)):
            open(host: host, port: port, forwarding: nil, context: context)
        case .success(.forward(let host, let port, let head)):
            open(host: host, port: port, forwarding: head, context: context)
        }
    }

    /// Opens the flow; answers 200 for a tunnel, or sends `forwardedHead` for a forwarded
    /// request, then relays.
    private func open(host: String, port: UInt16, forwarding forwardedHead: String?, context: ChannelHandlerContext) {
        let channel = context.channel
        let opening = session.opener.open(host: host, port: port, for: client, on: context.eventLoop)
        session.accounted(opening, to: host, port: port, for: client, via: "http").assumeIsolated().whenComplete { [self] result in
            switch result {
            case .success(let (opened, counters)):
                let flow = opened.channel
                guard !refused && channel.isActive else {
                    flow.close(promise: nil)
                    return
                }
                // A tunnel is answered here; a forwarded request is answered by the origin.
                let answered = forwardedHead == nil
                    ? context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "HTTP/1.1 200 Connection established\r\n\r\n")))
                    : context.eventLoop.makeSucceededVoidFuture()
                answered.assumeIsolated().whenComplete { _ in
                    var early = ByteBuffer(string: forwardedHead ?? "")
                    var body = self.head
                    early.writeBuffer(&body)
                    if early.readableBytes > 0 && !opened.revocation.isRevoked {
                        counters.sent.increment(by: Int64(early.readableBytes))
                        flow.writeAndFlush(early, promise: nil)
                    }
                    startRelay(channel, to: opened, counting: counters, removing: [self])
                }
            case .failure(let error):
                refuse(HTTPRefusal(for: error), context: context)
            }
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        guard event is PreRelayBudget.Exceeded else {
            context.fireUserInboundEventTriggered(event)
            return
        }
        let limit = PreRelayBudget.limit
        log("http: \(client): over \(limit) bytes before the relay; closing")
        refuse(answered ? HTTPRefusal(413, "more than \(limit) bytes sent before the destination answered")
                        : HTTPRefusal(431, "request head over \(limit) bytes"), context: context)
    }

    private func refuse(_ refusal: HTTPRefusal, context: ChannelHandlerContext) {
        guard !refused else { return }
        answered = true
        refused = true
        head.clear()
        let body = refusal.reason + "\n"
        let challenge = refusal.status == 407 ? "Proxy-Authenticate: Basic realm=\"portslice\"\r\n" : ""
        let answer = "HTTP/1.1 \(refusal.status) \(refusal.phrase)\r\n\(challenge)Content-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: answer))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }
}

/// An HTTP error answer: status and a reason for the body.
struct HTTPRefusal: Error, Equatable {
    let status: Int
    let reason: String

    init(_ status: Int, _ reason: String) {
        self.status = status
        self.reason = reason
    }

    init(for error: any Error) {
        switch error as? OpenFailure {
        case .refused(let reason): self.init(403, reason)
        case .unresolved, .connectionRefused, .timedOut, .failed: self.init(502, "\(error)")
        case .exhausted: self.init(503, "\(error)")
        case nil: self.init(502, "\(error)")
        }
    }

    var phrase: String {
        switch status {
        case 400: "Bad Request"
        case 403: "Forbidden"
        case 407: "Proxy Authentication Required"
        case 413: "Content Too Large"
        case 431: "Request Header Fields Too Large"
        case 501: "Not Implemented"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        default: "Error"
        }
    }
}
