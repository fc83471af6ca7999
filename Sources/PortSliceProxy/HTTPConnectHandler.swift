import Foundation
import NIOCore
import PortSliceCore

/// HTTP CONNECT (RFC 9110 section 9.3.6): reads the request head (at most 16 KiB), opens the
/// flow to `host:port`, answers 200 and relays; bytes the client sent after the head go to the
/// destination first. Failures get a status and a one-line reason, then the connection closes.
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

    /// The target of a request head, or the status and reason to refuse it with.
    static func target(ofHead text: String) -> Result<(host: String, port: UInt16), HTTPRefusal> {
        guard let requestLine = text.split(separator: "\r\n", maxSplits: 1, omittingEmptySubsequences: false).first else {
            return .failure(HTTPRefusal(400, "empty request"))
        }
        let parts = requestLine.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1.") else { return .failure(HTTPRefusal(400, "malformed request line")) }
        guard parts[0] == "CONNECT" else {
            return .failure(HTTPRefusal(501, "this proxy serves CONNECT only (plain HTTP forwarding is not built yet)"))
        }
        let authority = parts[1]
        let host: Substring, portText: Substring
        if authority.hasPrefix("[") {
            return .failure(HTTPRefusal(400, "IPv6 destinations are not served: egress addresses are IPv4"))
        } else if let colon = authority.lastIndex(of: ":") {
            host = authority[..<colon]
            portText = authority[authority.index(after: colon)...]
        } else {
            return .failure(HTTPRefusal(400, "CONNECT needs host:port"))
        }
        guard !host.isEmpty, let port = UInt16(portText), port != 0 else { return .failure(HTTPRefusal(400, "CONNECT needs host:port with a port from 1 to 65535")) }
        return .success((String(host), port))
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        guard !answered else { return }
        head.writeBuffer(&bytes)
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
        switch Self.target(ofHead: text) {
        case .failure(let refusal):
            refuse(refusal, context: context)
        case .success(let (host, port)):
            let channel = context.channel
            session.opener.open(host: host, port: port, for: client, on: context.eventLoop).assumeIsolated().whenComplete { [self] result in
                switch result {
                case .success(let (flow, _)):
                    context.writeAndFlush(wrapOutboundOut(ByteBuffer(string: "HTTP/1.1 200 Connection established\r\n\r\n"))).assumeIsolated().whenComplete { _ in
                        let early = self.head
                        if early.readableBytes > 0 { flow.writeAndFlush(early, promise: nil) }
                        do {
                            try relay(channel, to: flow)
                            channel.pipeline.syncOperations.removeHandler(self, promise: nil)
                        } catch {
                            flow.close(promise: nil)
                            channel.close(promise: nil)
                        }
                    }
                case .failure(let error):
                    log("http: \(client) -> \(host):\(port): \(error)")
                    refuse(HTTPRefusal(for: error), context: context)
                }
            }
        }
    }

    private func refuse(_ refusal: HTTPRefusal, context: ChannelHandlerContext) {
        answered = true
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
        case 431: "Request Header Fields Too Large"
        case 501: "Not Implemented"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        default: "Error"
        }
    }
}
