import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import PortSliceCore

/// The proxy's own pages: `GET /` and `/status` (text), `/status.json`, and `/metrics`
/// (Prometheus). They name clients, destinations and egress ports, so they live on a listener
/// of their own (loopback by default), apart from the proxy port: a PROXY header there can
/// never make a remote client look local, and the proxy port serves only proxy requests.
///
/// A page is answered only when the request's `Host` is an IP literal or `localhost`: a web
/// page in a browser on this machine could otherwise read them through a name of its own that
/// it re-points at 127.0.0.1 (DNS rebinding), since the browser then sends that name as `Host`.
public struct ProxyAdminPages: Sendable {
    let metrics: ProxyMetrics
    let slices: EgressSlices
    let recent: RecentFlows
    let ports: PortPolicy

    public init(opener: FlowOpener) {
        metrics = opener.metrics
        slices = opener.slices
        recent = opener.recent
        ports = opener.policy.ports
    }

    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: HostCheck())
        router.get("/") { _, _ in text(status.text, type: "text/plain; charset=utf-8") }
        router.get("/status") { _, _ in text(status.text, type: "text/plain; charset=utf-8") }
        router.get("/status.json") { _, _ in
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(data: try encoder.encode(status))))
        }
        router.get("/metrics") { _, _ in text(metrics.text(), type: "text/plain; version=0.0.4") }
        return router
    }

    /// The pages served on `host`:`port` (port 0 picks one); `onListening` is told the port once
    /// the listener is bound. As a `Service`, it serves until graceful shutdown.
    public func application(host: String, port: Int, logger: Logger,
                            onListening: @escaping @Sendable (Int) -> Void) -> some Service {
        Application(router: router(), configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: "portslice-proxy"),
                    onServerRunning: { onListening($0.localAddress?.port ?? port) }, logger: logger)
    }

    private var status: ProxyStatus { ProxyStatus(ports: ports, slices: slices, recent: recent) }

    private func text(_ body: String, type: String) -> Response {
        Response(status: .ok, headers: [.contentType: type], body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    /// True when `authority` (the request's `Host`) is an IPv4 or bracketed IPv6 literal or
    /// `localhost`, with or without a port: names that no one else can point at this listener.
    static func admits(authority: String?) -> Bool {
        guard let authority, !authority.isEmpty else { return false }
        let host: Substring
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return false }
            let rest = authority[authority.index(after: close)...]
            guard rest.isEmpty || (rest.first == ":" && UInt16(rest.dropFirst()) != nil) else { return false }
            return (try? IPv6Address(parsing: String(authority[authority.index(after: authority.startIndex)..<close]))) != nil
        }
        if let colon = authority.firstIndex(of: ":") {
            guard UInt16(authority[authority.index(after: colon)...]) != nil else { return false }
            host = authority[..<colon]
        } else {
            host = authority[...]
        }
        return host.lowercased() == "localhost" || (try? IPv4Address(parsing: String(host))) != nil
    }

    /// Refuses a request whose `Host` is a name (see `admits(authority:)`).
    struct HostCheck<Context: RequestContext>: RouterMiddleware {
        func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
            guard ProxyAdminPages.admits(authority: request.head.authority) else {
                let reason = "the proxy's admin pages answer only requests for an IP address or localhost (Host: \(request.head.authority ?? "none")): "
                    + "a name could be pointed here by someone else's web page\n"
                return Response(status: .forbidden, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: reason)))
            }
            return try await next(request, context)
        }
    }
}
