import Synchronization
import Prometheus
import PortSliceCore
import PortSliceSockets

/// The proxy's counters in Prometheus text form (the same format as the allocator's
/// `/metrics`): flows and bytes per egress address and slice, slices found exhausted,
/// requests that failed, by reason, requests the destination policy refused, by its reason,
/// and password checks, by result.
public final class ProxyMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry

    public init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
    }

    /// The counters of one flow, looked up once when it opens.
    struct FlowCounters: Sendable {
        let sent: Counter
        let received: Counter
    }

    /// A slice's counters for one protocol, made once: labels are strings, and building them
    /// for every flow cost more on the connect path than counting.
    private struct SliceCounters: Sendable {
        let flows: Counter
        let bytes: FlowCounters
    }

    private struct SliceProtocol: Hashable {
        let source: FlowSource
        let proxyProtocol: String
    }

    private let bySlice = Mutex<[SliceProtocol: SliceCounters]>([:])

    private static var flows: MetricNameDescriptor { name("flows", "Flows opened, by egress address, slice and protocol.") }
    private static var bytes: MetricNameDescriptor { name("bytes", "Bytes relayed, by egress address, slice and direction (sent: client to destination).") }
    private static var sliceExhausted: MetricNameDescriptor { name("slice_exhausted", "Times a slice had no port free towards a destination.") }
    private static var failures: MetricNameDescriptor { name("failures", "Requests that opened no flow, by reason and protocol.") }
    private static var refusals: MetricNameDescriptor {
        name("refusals", "Requests the destination policy refused (also in failures as refused_by_policy), by reason: port, address_denied, egress_address, special_purpose, host_address; and protocol. A UDP datagram to a refused destination is dropped and counted.")
    }
    private static var passwordChecks: MetricNameDescriptor {
        name("password_checks", "Passwords checked, by result: accepted and refused ran bcrypt; remembered matched credentials accepted lately; impossible could be no user's (over 72 bytes, say).")
    }

    /// `portslice_proxy_NAME_total`.
    private static func name(_ metric: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(namespace: "portslice", subsystem: "proxy", metricName: metric, unitName: "total", helpText: help)
    }

    func flowOpened(from source: FlowSource, via proxyProtocol: String) -> FlowCounters {
        let key = SliceProtocol(source: source, proxyProtocol: proxyProtocol)
        let counters = bySlice.withLock { known in
            if let counters = known[key] { return counters }
            let labels = [("egress", source.egress), ("slice", source.ports)]
            let made = SliceCounters(
                flows: registry.makeCounter(descriptor: Self.flows, labels: labels + [("protocol", proxyProtocol)]),
                bytes: FlowCounters(
                    sent: registry.makeCounter(descriptor: Self.bytes, labels: labels + [("direction", "sent")]),
                    received: registry.makeCounter(descriptor: Self.bytes, labels: labels + [("direction", "received")])))
            known[key] = made
            return made
        }
        counters.flows.increment()
        return counters.bytes
    }

    func sliceExhausted(_ slice: EgressSlice) {
        registry.makeCounter(descriptor: Self.sliceExhausted, labels: [("egress", "\(slice.address)"), ("slice", "\(slice.ports)")]).increment()
    }

    func failed(_ failure: OpenFailure, via proxyProtocol: String) {
        registry.makeCounter(descriptor: Self.failures, labels: [("reason", failure.reason), ("protocol", proxyProtocol)]).increment()
        if case .refused(let refusal) = failure {
            registry.makeCounter(descriptor: Self.refusals, labels: [("reason", refusal.reason), ("protocol", proxyProtocol)]).increment()
        }
    }

    func passwordChecked(_ verdict: PasswordVerdict) {
        registry.makeCounter(descriptor: Self.passwordChecks, labels: [("result", verdict.rawValue)]).increment()
    }

    public func text() -> String {
        var bytes: [UInt8] = []
        registry.emit(into: &bytes)
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension OpenFailure {
    /// A short label for metrics.
    var reason: String {
        switch self {
        case .refused: "refused_by_policy"
        case .unresolved: "unresolved"
        case .exhausted: "exhausted"
        case .noEgress: "no_egress"
        case .connectionRefused: "connection_refused"
        case .timedOut: "timed_out"
        case .failed: "failed"
        }
    }
}
