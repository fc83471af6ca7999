import Foundation
import NIOCore
import PortSliceCore

/// HTTP proxying: CONNECT (RFC 9110 section 9.3.6) and requests with an absolute `http://` URI.
/// Reads the request head (at most 16 KiB), opens the flow to the target, then answers 200 and
/// relays (CONNECT) or sends the rewritten request and relays the origin's answer; bytes the
/// client sent after the head follow. Failures get a status and a one-line reason, then the
/// connection closes.
final class HTTPConnectHandler: ChannelInboundHandler, RemovableChannelHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    static let headLimit = 16 * 1024

    let session: ProxySession
    let client: IPAddress
    private var head = ByteBuffer()
    private var answered = false

    init(session: ProxySession, client: IPAddress) {
        self.session = session
        self.client = client
    }

    private var log: @Sendable (String) -> Void { session.log }

    /// Nil when the head carries credentials of a configured user (or none are configured).
    func authenticationRefusal(ofHead text: String) -> HTTPRefusal? {
        guard !session.settings.users.isEmpty else { return nil }
        let header = text.split(separator: "\r\n").dropFirst().first { $0.lowercased().hasPrefix("proxy-authorization:") }
        let value = header.map { $0.dropFirst("proxy-authorization:".count).trimmingCharacters(in: .whitespaces) } ?? ""
        guard value.lowercased().hasPrefix("basic "), let decoded = Data(base64Encoded: String(value.dropFirst(6))).map({ String(decoding: $0, as: UTF8.self) }),
              let colon = decoded.firstIndex(of: ":"),
              session.authenticates(String(decoded[..<colon]), String(decoded[decoded.index(after: colon)...]))
        else { return HTTPRefusal(407, "proxy authentication required") }
        return nil
    }

    /// What a request head asks for: a tunnel (CONNECT), or one request forwarded to an
    /// origin, whose head is rewritten to origin form without the proxy's own headers and with
    /// `Connection: close` (one request per connection keeps every flow on one slice's 4-tuple).
    enum Request: Equatable {
        case tunnel(host: String, port: UInt16)
        case forward(host: String, port: UInt16, head: String)
        /// `GET /metrics`: the proxy's own counters, for Prometheus on the same host.
        case metrics
        /// `GET /`, `GET /status` (text) or `GET /status.json`: the slices and recent flows.
        case status(json: Bool)
    }

    /// The request in a head, or the status and reason to refuse it with.
    static func request(ofHead text: String) -> Result<Request, HTTPRefusal> {
        let lines = text.components(separatedBy: "\r\n")
        let parts = lines[0].split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1."), !parts[0].isEmpty else { return .failure(HTTPRefusal(400, "malformed request line")) }
        if parts[0] == "GET" && parts[1] == "/metrics" { return .success(.metrics) }
        if parts[0] == "GET" && ["/", "/status", "/status.json"].contains(parts[1]) { return .success(.status(json: parts[1] == "/status.json")) }
        if parts[0] == "CONNECT" {
            return authority(parts[1], defaultPort: nil).map { .tunnel(host: $0.host, port: $0.port) }
        }
        guard parts[1].lowercased().hasPrefix("http://") else {
            return .failure(HTTPRefusal(400, "a proxy request needs an absolute http:// URI or CONNECT (https goes through CONNECT)"))
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
        guard let end = view.firstRange(of: [13, 10, 13, 10]) else {
            if head.readableBytes > Self.headLimit { refuse(HTTPRefusal(431, "request head over \(Self.headLimit) bytes"), context: context) }
            return
        }
        answered = true
        let headLength = end.upperBound - view.startIndex
        let text = String(decoding: view.prefix(headLength), as: UTF8.self)
        head.moveReaderIndex(forwardBy: headLength)
        if let refusal = authenticationRefusal(ofHead: text) {
            log("http: \(client): \(refusal.reason)")
            refuse(refusal, context: context)
            return
        }
        switch Self.request(ofHead: text) {
        case .failure(let refusal):
            refuse(refusal, context: context)
        case .success(.metrics):
            serveLocally(session.opener.metrics.text(), type: "text/plain; version=0.0.4", context: context)
        case .success(.status(let json)):
            let status = ProxyStatus(slices: session.opener.slices, recent: session.opener.recent)
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                serveLocally(String(decoding: (try? encoder.encode(status)) ?? Data(), as: UTF8.self), type: "application/json", context: context)
            } else {
                serveLocally(status.text, type: "text/plain; charset=utf-8", context: context)
            }
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

    /// Answers with the proxy's own page, to clients on this host only: it names clients,
    /// destinations and egress ports.
    private func serveLocally(_ body: String, type: String, context: ChannelHandlerContext) {
        guard isLoopback(client) else {
            refuse(HTTPRefusal(403, "the proxy's own pages are served to clients on this host only"), context: context)
            return
        }
        let answer = "HTTP/1.1 200 OK\r\nContent-Type: \(type)\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: answer))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    private func refuse(_ refusal: HTTPRefusal, context: ChannelHandlerContext) {
        answered = true
        let body = refusal.reason + "\n"
        let challenge = refusal.status == 407 ? "Proxy-Authenticate: Basic realm=\"portslice\"\r\n" : ""
        let answer = "HTTP/1.1 \(refusal.status) \(refusal.phrase)\r\n\(challenge)Content-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: answer))).assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }
}

func isLoopback(_ address: IPAddress) -> Bool {
    switch address {
    case .v4(let v4): v4.octets.0 == 127
    case .v6(let v6): v6 == IPv6Address(bits: 1)
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
        case 431: "Request Header Fields Too Large"
        case 501: "Not Implemented"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        default: "Error"
        }
    }
}
