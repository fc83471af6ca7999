import Foundation
import PortSliceCore
import PortSliceSockets
import Synchronization

/// The last flows the proxy opened, newest last: which client went where, from which egress
/// address, port and slice. Kept for the status page; bounded, so it costs nothing over time.
public final class RecentFlows: Sendable {
    public struct Entry: Codable, Hashable, Sendable {
        /// Milliseconds since 1970.
        public let time: Int64
        public let transport: String
        public let client: String
        public let destination: String
        /// The flow's local end: egress address and port.
        public let egress: String
        public let slice: String
    }

    /// What a flow's entry is made from, kept as it comes: formatting waits for a reader.
    private struct Record: Sendable {
        let time: Double
        let transport: Transport
        let client: IPAddress
        let remote: IPEndpoint
        let local: IPEndpoint
        let source: FlowSource
    }

    public let capacity: Int
    /// A ring: once full, each new record takes the oldest one's place (`next`), so recording
    /// a flow moves nothing else.
    private let records = Mutex<(ring: [Record], next: Int)>(([], 0))

    public init(capacity: Int = 50) {
        precondition(capacity > 0, "RecentFlows keeps at least one flow")
        self.capacity = capacity
    }

    func record(from local: IPEndpoint, to remote: IPEndpoint, source: FlowSource, client: IPAddress, transport: Transport) {
        let record = Record(time: Date().timeIntervalSince1970, transport: transport, client: client, remote: remote, local: local, source: source)
        records.withLock { records in
            if records.ring.count < capacity {
                records.ring.append(record)
            } else {
                records.ring[records.next] = record
                records.next = (records.next + 1) % capacity
            }
        }
    }

    /// The flows kept, oldest first.
    public var all: [Entry] {
        records.withLock { Array($0.ring[$0.next...] + $0.ring[..<$0.next]) }.map {
            Entry(time: Int64($0.time * 1000), transport: $0.transport == .tcp ? "tcp" : "udp", client: "\($0.client)",
                  destination: "\($0.remote)", egress: "\($0.local)", slice: "\($0.source)")
        }
    }
}

/// What `GET /status.json` answers (and `GET /status` shows as text): the destination ports
/// policy, the slices flows may leave from now, with their address's traits and open flows,
/// and the recent flows.
public struct ProxyStatus: Codable, Sendable {
    public struct Slice: Codable, Hashable, Sendable {
        public let slice: String
        public let traits: String
        public let openFlows: Int
    }

    /// The port policy's rules in order, on one line (`PortPolicy.description`).
    public let destinationPorts: String
    public let slices: [Slice]
    public let recentFlows: [RecentFlows.Entry]

    init(ports: PortPolicy, slices: EgressSlices, recent: RecentFlows) {
        destinationPorts = "\(ports)"
        let held = slices.held
        let traits = Dictionary(held.pool.addresses.map { ($0.address, $0.traits.summary) }, uniquingKeysWith: { first, _ in first })
        let open = slices.openFlowCounts
        self.slices = held.dialers.values.joined().map(\.slice).sorted { ($0.address, $0.ports.description) < ($1.address, $1.ports.description) }
            .map { Slice(slice: "\($0)", traits: traits[$0.address] ?? "", openFlows: open[$0] ?? 0) }
        recentFlows = recent.all
    }

    /// The status as aligned text tables.
    public var text: String {
        func table(_ header: [String], _ rows: [[String]]) -> String {
            let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
            return ([header] + rows).map { row in
                row.enumerated().map { $0.offset == row.count - 1 ? $0.element : $0.element.padding(toLength: widths[$0.offset], withPad: " ", startingAt: 0) }
                    .joined(separator: "  ")
            }.joined(separator: "\n")
        }
        let formatter = ISO8601DateFormatter()
        let held = slices.isEmpty ? "no slices held: every flow is refused until the agent leases some"
            : table(["SLICE", "OPEN FLOWS", "TRAITS"], slices.map { [$0.slice, "\($0.openFlows)", $0.traits] })
        let flows = recentFlows.isEmpty ? "no flows yet"
            : table(["TIME", "PROTO", "CLIENT", "DESTINATION", "LEFT FROM", "SLICE"], recentFlows.reversed().map {
                [formatter.string(from: Date(timeIntervalSince1970: Double($0.time) / 1000)), $0.transport, $0.client, $0.destination, $0.egress, $0.slice]
            })
        return "Destination ports: \(destinationPorts)\n\nSlices this proxy sends from\n\(held)\n\nRecent flows (newest first)\n\(flows)\n"
    }
}
