import Hummingbird
import Prometheus
import Synchronization

/// Counts the API's requests per route, method and status, and times them per route and
/// method, into the Prometheus registry that `/metrics` reads.
///
/// Not Hummingbird's `MetricsMiddleware`: that one times a request until its body is written
/// by wrapping the body in a closure, which takes the answer off Hummingbird's path that sends
/// head and body in one write (two `write` calls an answer instead of one), and it asks
/// swift-metrics' factory for its handles. Every answer here is a buffer made before it is
/// returned, so the time to make it is the request's time.
struct RequestMetrics<Context: RequestContext>: RouterMiddleware {
    private let handles: RequestMetricHandles

    init(handles: RequestMetricHandles) {
        self.handles = handles
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = ContinuousClock.now
        let route = context.endpointPath ?? "unmatched"
        // Labels only from a known set: a client that sent a method of its own making with
        // every request would otherwise add a counter and a histogram each time.
        let method = switch request.method {
        case .get, .head, .post, .put, .patch, .delete, .options: request.method.rawValue
        default: "other"
        }
        do {
            let response = try await next(request, context)
            handles.record(route: route, method: method, status: response.status, after: started)
            return response
        } catch {
            let status = (error as? any HTTPResponseError)?.status ?? .internalServerError
            handles.record(route: route, method: method, status: status, after: started)
            throw error
        }
    }
}

/// The registry's counters and histograms, kept once made: the registry finds one by its
/// name and labels under a lock of its own, with the labels as new strings each time. The
/// middleware and the requests answered ahead of the router (`DirectRoute`) share them.
final class RequestMetricHandles: Sendable {
    private struct Key: Hashable {
        let route: String
        let method: String
        let status: Int
    }

    private let registry: PrometheusCollectorRegistry
    private let made = Mutex<[Key: (requests: Counter, duration: DurationHistogram)]>([:])

    init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
    }

    func record(route: String, method: String, status: HTTPResponse.Status, after started: ContinuousClock.Instant) {
        let key = Key(route: route, method: method, status: status.code)
        let handles = made.withLock { made in
            if let handles = made[key] { return handles }
            let handles = (
                requests: registry.makeCounter(
                    descriptor: MetricNameDescriptor(namespace: "portslice", metricName: "api_requests", unitName: "total",
                                                     helpText: "API requests answered, by route, method and status"),
                    labels: [("route", route), ("method", method), ("status", String(status.code))]),
                duration: registry.makeDurationHistogram(
                    descriptor: MetricNameDescriptor(namespace: "portslice", metricName: "api_request_duration", unitName: "seconds",
                                                     helpText: "Time from a request's head to its answer, by route and method"),
                    labels: [("route", route), ("method", method)],
                    buckets: Self.durationBuckets))
            made[key] = handles
            return handles
        }
        handles.requests.increment()
        handles.duration.record(ContinuousClock.now - started)
    }

    /// From a cached renewal (under a millisecond) to a long poll that waited its full 25 s.
    static let durationBuckets: [Duration] = [
        .microseconds(500), .milliseconds(1), .milliseconds(2.5), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1), .seconds(5), .seconds(30),
    ]
}
