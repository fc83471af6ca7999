import Foundation
import HTTPTypes
import HummingbirdCore
import NIOCore
import NIOHTTPTypes
import Synchronization

/// Answers a few routes straight from the channel pipeline, ahead of Hummingbird's router
/// (`HTTP1Channel.Configuration.additionalChannelHandlers`); every other request goes on to
/// the router untouched.
///
/// Why: an agent's renewal comes alone on its connection once a period, so nothing is shared
/// between requests and each pays the whole per-request cost; acquires come as fast as the
/// writer makes them, and the router's part of each was CPU the allocator's threads waited
/// for. Through Hummingbird that is a request handed to the connection's task through
/// `NIOAsyncChannel`, a request context, the middleware and the router, and the answer
/// handed back through an async writer: `GET /healthz` at 1,000 requests a second cost
/// `serve` 7.9% of a core, the same answer made in a channel handler 3.0%, and about 4% with a
/// Swift task between request and answer. Here a request costs one task, which awaits the
/// route's responder.
///
/// The responder may decline a request (answer nil) before it has changed anything; the
/// request then goes on to the router, which answers it as it answers any route, refusals
/// and their metrics included. Requests that ask for more than a plain answer (`Connection:
/// close`, `Expect`) and bodies over `maximumBodyBytes` go to the router too.
///
/// A connection's answers stay in the order of its requests: a request is taken here only
/// when no earlier one is still with the router, and while its answer is being made, later
/// requests wait here and reading stops, so what waits is at most one read's worth. What
/// else comes meanwhile (a parse error, the client's half-close, a shutdown's request to
/// close) waits in its place among them, so that none of it ends the connection before the
/// answer is written.
public final class DirectRoute: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = HTTPRequestPart
    public typealias InboundOut = HTTPRequestPart
    public typealias OutboundIn = HTTPResponsePart
    public typealias OutboundOut = HTTPResponsePart

    /// A JSON answer.
    public struct Answer: Sendable {
        public var status: HTTPResponse.Status
        public var json: ByteBuffer

        public init(status: HTTPResponse.Status, json: ByteBuffer) {
            self.status = status
            self.json = json
        }
    }

    /// Makes the answer to a request of the route (its head and whole body), or declines it.
    public typealias Responder = @Sendable (HTTPRequest, ByteBuffer) async -> Answer?

    /// A method and path answered here, and by what.
    public struct Route: Sendable {
        public let method: HTTPRequest.Method
        public let path: String
        public let respond: Responder

        public init(method: HTTPRequest.Method, path: String, respond: @escaping Responder) {
            (self.method, self.path, self.respond) = (method, path, respond)
        }
    }

    private let routes: [Route]
    private let serverName: String?
    private let maximumBodyBytes: Int

    private enum Reading {
        case between
        /// A request passed on to the router, until its end.
        case passing
        /// A request of a route, read so far.
        case taking(HTTPRequest, ByteBuffer, Responder)
    }

    private var reading = Reading.between
    /// A request taken here is being answered.
    private var answering = false
    /// Requests passed on whose answer's end the router has not written yet.
    private var withRouter = 0
    /// What came while an answer is made, in order.
    private enum Held {
        case part(HTTPRequestPart)
        case error(any Error)
        case event(Any)
    }

    private var waiting = CircularBuffer<Held>()
    private var readHeld = false
    /// A shutdown's request to close, held while a request of the route is read or answered.
    private var quiesceHeld = false
    private var isActive = true

    public init(routes: [Route], serverName: String?, maximumBodyBytes: Int) {
        self.routes = routes
        self.serverName = serverName
        self.maximumBodyBytes = maximumBodyBytes
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let part = unwrapInboundIn(data)
        if answering {
            waiting.append(.part(part))
        } else {
            handle(part, context: context)
        }
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if answering { waiting.append(.error(error)) } else { context.fireErrorCaught(error) }
    }

    private func handle(_ part: HTTPRequestPart, context: ChannelHandlerContext) {
        switch (reading, part) {
        case (.between, .head(let head)):
            if withRouter == 0, let respond = responder(for: head) {
                reading = .taking(head, context.channel.allocator.buffer(capacity: 0), respond)
            } else {
                withRouter += 1
                reading = .passing
                context.fireChannelRead(wrapInboundOut(part))
            }
        case (.taking(let head, var body, let respond), .body(var more)):
            guard body.readableBytes + more.readableBytes <= maximumBodyBytes else {
                // The router refuses it, with the answer it gives every over-long body.
                passOn(head, body, context: context)
                reading = .passing
                context.fireChannelRead(wrapInboundOut(part))
                releaseQuiesce(context: context)
                return
            }
            reading = .between  // drops the buffer's other reference while it grows
            body.writeBuffer(&more)
            reading = .taking(head, body, respond)
        case (.taking(let head, let body, let respond), .end):
            reading = .between
            answer(head, body, by: respond, context: context)
        case (.passing, .end):
            reading = .between
            context.fireChannelRead(wrapInboundOut(part))
        default:
            context.fireChannelRead(wrapInboundOut(part))
        }
    }

    /// The responder of the route `head` asks for, unless the request asks for more than a
    /// plain answer.
    private func responder(for head: HTTPRequest) -> Responder? {
        guard let route = routes.first(where: { $0.method == head.method && $0.path == head.path }), head.headerFields[.expect] == nil,
              head.headerFields[.connection].map({ $0.lowercased() == "keep-alive" }) ?? true
        else { return nil }
        return route.respond
    }

    private func answer(_ head: HTTPRequest, _ body: ByteBuffer, by respond: @escaping Responder, context: ChannelHandlerContext) {
        answering = true
        let loop = context.eventLoop
        let bound = NIOLoopBound((handler: self, context: context), eventLoop: loop)
        Task {
            let answer = await respond(head, body)
            loop.execute {
                let (handler, context) = bound.value
                handler.finish(answer, head, body, context: context)
            }
        }
    }

    private func finish(_ answer: Answer?, _ head: HTTPRequest, _ body: ByteBuffer, context: ChannelHandlerContext) {
        answering = false
        guard isActive else { return }
        if let answer {
            var fields: HTTPFields = [
                .contentType: "application/json; charset=utf-8",
                .contentLength: String(answer.json.readableBytes),
                .date: HTTPDate.now,
            ]
            if let serverName { fields[.server] = serverName }
            context.write(wrapOutboundOut(.head(HTTPResponse(status: answer.status, headerFields: fields))), promise: nil)
            context.write(wrapOutboundOut(.body(answer.json)), promise: nil)
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        } else {
            passOn(head, body, context: context)
            context.fireChannelRead(wrapInboundOut(.end(nil)))
        }
        while !answering, let held = waiting.popFirst() {
            switch held {
            case .part(let part): handle(part, context: context)
            case .error(let error): context.fireErrorCaught(error)
            case .event(let event): userInboundEventTriggered(context: context, event: event)
            }
        }
        context.fireChannelReadComplete()
        guard !answering else { return }
        if !isTaking { releaseQuiesce(context: context) }
        if readHeld {
            readHeld = false
            context.read()
        }
    }

    /// Hands a request read so far to the router.
    private func passOn(_ head: HTTPRequest, _ body: ByteBuffer, context: ChannelHandlerContext) {
        withRouter += 1
        context.fireChannelRead(wrapInboundOut(.head(head)))
        if body.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(.body(body))) }
    }

    public func read(context: ChannelHandlerContext) {
        if answering { readHeld = true } else { context.read() }
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        // The router also answers what never reached it as a request (a parse error's 400).
        if case .end = unwrapOutboundIn(data) { withRouter = max(0, withRouter - 1) }
        context.write(data, promise: promise)
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if answering {
            waiting.append(.event(event))
        } else if event is ChannelShouldQuiesceEvent, isTaking {
            quiesceHeld = true
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    private func releaseQuiesce(context: ChannelHandlerContext) {
        guard quiesceHeld else { return }
        quiesceHeld = false
        context.fireUserInboundEventTriggered(ChannelShouldQuiesceEvent())
    }

    private var isTaking: Bool {
        if case .taking = reading { true } else { false }
    }

    public func channelInactive(context: ChannelHandlerContext) {
        isActive = false
        waiting.removeAll()
        context.fireChannelInactive()
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        isActive = false
    }
}

extension DirectRoute {
    /// HTTP/1.1 with `routes` (made anew for each connection) ahead of the router.
    public static func http1(_ routes: @escaping @autoclosure @Sendable () -> [any RemovableChannelHandler]) -> HTTPServerBuilder {
        .http1(configuration: HTTP1Channel.Configuration(additionalChannelHandlers: routes()))
    }
}

/// The `Date` header's value (RFC 9110's IMF-fixdate), formatted at most once a second.
enum HTTPDate {
    private struct Latest: ~Copyable {
        var second = Int.min
        var text = ""
        let formatter: DateFormatter = {
            let formatter = DateFormatter()
            formatter.locale = Locale(identifier: "en_US_POSIX")
            formatter.timeZone = TimeZone(identifier: "GMT")
            formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
            return formatter
        }()
    }

    private static let latest = Mutex(Latest())

    static var now: String {
        let now = Date()
        let second = Int(now.timeIntervalSince1970.rounded(.down))
        return latest.withLock { latest in
            if latest.second != second {
                latest.second = second
                latest.text = latest.formatter.string(from: now)
            }
            return latest.text
        }
    }
}
