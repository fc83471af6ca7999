import Prometheus
import Synchronization

/// The database's state as the API saw it last, and the metrics that count outages and
/// refused tokens.
final class DatabaseHealth: Sendable {
    private let up = Mutex(true)
    private let outages: Counter
    private let unavailableAnswers: Counter
    private let upGauge: Gauge
    private let registry: PrometheusCollectorRegistry

    init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
        outages = registry.makeCounter(descriptor: MetricNameDescriptor(
            namespace: "portslice", metricName: "database_outages", unitName: "total", helpText: "Times the database was found unreachable after answering"))
        unavailableAnswers = registry.makeCounter(descriptor: MetricNameDescriptor(
            namespace: "portslice", metricName: "database_unavailable_answers", unitName: "total", helpText: "Requests answered 503 because the database was unreachable"))
        upGauge = registry.makeGauge(descriptor: MetricNameDescriptor(
            namespace: "portslice", metricName: "database_up", unitName: "", helpText: "1 while the database answers, 0 while it does not"))
        upGauge.set(Int64(1))
    }

    /// The database did not answer; `answered503` when a request got 503 for it.
    func recordOutage(answered503: Bool = true) {
        if answered503 { unavailableAnswers.increment() }
        let wasUp = up.withLock { wasUp in
            defer { wasUp = false }
            return wasUp
        }
        if wasUp { outages.increment() }
        upGauge.set(Int64(0))
    }

    func recordUp() {
        up.withLock { $0 = true }
        upGauge.set(Int64(1))
    }

    func recordAuthenticationFailure(_ reason: String) {
        registry.makeCounter(
            descriptor: MetricNameDescriptor(namespace: "portslice", metricName: "authentication_failures", unitName: "total",
                                             helpText: "Requests refused for their token: missing, unknown, or forbidden for the route"),
            labels: [("reason", reason)]
        ).increment()
    }
}
