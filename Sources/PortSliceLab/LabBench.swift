import Foundation
import PortSliceCore
import PortSliceEdge
import PortSliceSockets
import Synchronization

/// The lab's comparison of the stateless edge with what it replaces, a source-NAT edge with
/// connection tracking, on the same namespaces and the same load generator in one run.
public enum LabBench {
    public struct Settings: Sendable {
        public var seconds: Double
        public var liveFlows: Int
        public var sliceCounts: [Int]

        public init(seconds: Double, liveFlows: Int, sliceCounts: [Int]) {
            self.seconds = seconds
            self.liveFlows = liveFlows
            self.sliceCounts = sliceCounts
        }
    }

    /// What one kind of edge measured.
    public struct EdgeMeasurement: Sendable, Codable {
        public var connectionsPerSecond = 0.0
        /// Bits per second of one iperf3 TCP transfer from host 1; nil when iperf3 is missing.
        public var throughput: Double?
        /// Live flows held open through the edge while its state was read.
        public var liveFlows = 0
        /// Connection-tracking entries the edge gained for those flows.
        public var trackedEntries = 0
        /// Kernel memory the edge gained for them (conntrack slab objects).
        public var stateBytes = 0
    }

    public struct ScalePoint: Sendable, Codable {
        public let slices: Int
        public let applySeconds: Double
        public let packetsPerSecond: Double
    }

    public struct Result: Sendable, Codable {
        public var stateless = EdgeMeasurement()
        public var nat = EdgeMeasurement()
        public var scale: [ScalePoint] = []
    }

    static let closingPort: UInt16 = 8000
    static let holdingPorts: [UInt16] = [8001, 8002, 8003, 8004]
    static let iperfPort = 5201
    static let natTable = "portslice_bench_nat"

    /// Builds the lab, measures both edges and the stateless edge at each slice count, and
    /// takes the lab down again, whatever happens.
    public static func run(_ topology: LabTopology, _ settings: Settings, progress: @Sendable (String) -> Void) async throws -> Result {
        try topology.build()
        defer { LabTopology.tearDown() }
        // Each live flow costs two descriptors here (client and server side).
        let limit = Int(HostNetwork.raiseOpenFileLimit(to: UInt64(settings.liveFlows * 2 + 10_000)))
        let liveFlows = min(settings.liveFlows, max(0, (limit - 4_000) / 2))
        if liveFlows < settings.liveFlows {
            progress("the open-file limit is \(limit) (raising it further needs CAP_SYS_RESOURCE): holding \(liveFlows) live flows instead of \(settings.liveFlows); the per-100,000 figures scale from them")
        }
        let internet = NetworkNamespace.path(named: LabTopology.internet)
        let closing = try NetworkNamespace.run(at: internet) { try AcceptingListener(Endpoint(LabTopology.internetAddress, closingPort)) }
        var result = Result()
        /// Live flows first, before the other loads leave closing entries behind; then
        /// connections and throughput.
        func measureEdge(_ name: String) throws -> EdgeMeasurement {
            progress("\(name): \(liveFlows) live flows")
            var measurement = try withLiveFlows(topology, liveFlows)
            progress("\(name): connections")
            measurement.connectionsPerSecond = try median(rounds) { try connectionRate(topology, seconds: settings.seconds, to: closing.endpoint) }
            progress("\(name): throughput")
            measurement.throughput = try medianThroughput(topology, seconds: settings.seconds)
            return measurement
        }

        // The stateless edge: one slice per host, each host's ephemeral range set to its slice
        // so that tools which bind by themselves (iperf3) stay inside it too.
        let shared = topology.sharedAddresses[0]
        let width = (65535 - 1024 + 1) / topology.hostCount
        let slices = topology.hostIndices.map { index in
            EgressSlice(address: shared, ports: PortSet(try! PortRange(UInt16(1024 + (index - 1) * width), UInt16(1024 + index * width - 1))))
        }
        let hosts = try EdgeHost.numbered(Dictionary(uniqueKeysWithValues: topology.hostIndices.map { (topology.hostName($0), topology.hostSide(ofHost: $0)) }))
        let table = SliceTable(version: 1, slices: topology.hostIndices.map { index in
            SliceTable.Entry(address: shared, index: index - 1, ports: slices[index - 1].ports, state: .leased, host: topology.hostName(index))
        })
        let controller = EdgeController(role: .edge(hosts: hosts), namespace: LabTopology.edge)
        try await controller.start()
        try await controller.apply(table)
        // The same client code runs against both edges: plain connects, whose source the
        // kernel takes from the route (the shared address here) and the namespace's range
        // (the host's slice), so only the edge differs between the two columns.
        for index in topology.hostIndices {
            let range = slices[index - 1].ports.span!
            try sysctl(topology.namespace(ofHost: index), "net.ipv4.ip_local_port_range=\(range.lower) \(range.upper)")
            try defaultRoute(topology, index, source: shared)
        }
        result.stateless = try measureEdge("stateless edge")
        progress("stateless edge: slice counts")
        var points: [Int: [ScalePoint]] = [:]
        for _ in 0..<rounds {
            for count in settings.sliceCounts { points[count, default: []].append(try scalePoint(count, topology, hosts, seconds: settings.seconds)) }
        }
        result.scale = settings.sliceCounts.map { count in
            let measured = points[count]!
            return ScalePoint(slices: count, applySeconds: middle(measured.map(\.applySeconds)), packetsPerSecond: middle(measured.map(\.packetsPerSecond)))
        }
        try await controller.shutdown()

        // Source NAT with conntrack: hosts send from their own addresses, the edge rewrites.
        for index in topology.hostIndices {
            try sysctl(topology.namespace(ofHost: index), "net.ipv4.ip_local_port_range=1024 65535")
            try defaultRoute(topology, index, source: nil)
        }
        try OwnedTable(name: natTable, namespace: LabTopology.edge).apply("""
            table ip \(natTable) {
              chain postrouting {
                type nat hook postrouting priority srcnat; policy accept;
                oifname "uplink" ip saddr 192.0.2.0/24 snat to \(shared)
              }
            }

            """)
        defer { try? OwnedTable(name: natTable, namespace: LabTopology.edge).remove() }
        result.nat = try measureEdge("NAT edge")
        return result
    }

    /// Rates are measured this many times and the median kept: two cores carry the load
    /// generator, the edge and the servers at once, so single runs wander.
    static let rounds = 3

    static func median(_ count: Int, _ measure: () throws -> Double) throws -> Double {
        middle(try (0..<count).map { _ in try measure() })
    }

    static func middle(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

    /// The median of `rounds` transfers, or nil without iperf3.
    static func medianThroughput(_ topology: LabTopology, seconds: Double) throws -> Double? {
        guard let first = try throughput(topology, seconds: seconds) else { return nil }
        return middle([first] + (try (1..<rounds).map { _ in try throughput(topology, seconds: seconds) ?? first }))
    }

    /// Host `index`'s default route via the edge, naming the source address when given.
    static func defaultRoute(_ topology: LabTopology, _ index: Int, source: IPv4Address?) throws {
        _ = try SystemTool.run("ip", ["route", "replace", "default", "via", "\(topology.edgeSide(ofHost: index))"] + (source.map { ["src", "\($0)"] } ?? []),
                               in: topology.namespace(ofHost: index))
    }

    /// New connections per second from every host at once, each closed with a reset (no
    /// TIME_WAIT to run a slice dry), for `seconds`.
    static func connectionRate(_ topology: LabTopology, seconds: Double, to destination: Endpoint) throws -> Double {
        let total = Atomic<Int>(0)
        let failure = Mutex<String?>(nil)
        let started = ContinuousClock.now
        try onEveryHost(topology) { _ in
            let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
            var made = 0
            while ContinuousClock.now < deadline && made < 5_000_000 {
                do {
                    let socket = try UnslicedConnect.tcp(to: destination)
                    try socket.resetOnClose()
                    made += 1
                } catch {
                    failure.withLock { $0 = $0 ?? "\(error)" }
                    break
                }
            }
            total.add(made, ordering: .relaxed)
        }
        if let message = failure.withLock({ $0 }) { throw LabError("the connection-rate load failed: \(message)") }
        let elapsed = ContinuousClock.now - started
        return Double(total.load(ordering: .relaxed)) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }

    /// Opens `count` flows spread over the hosts and four listeners that hold them, reads what
    /// the edge holds for them, and closes them.
    static func withLiveFlows(_ topology: LabTopology, _ count: Int) throws -> EdgeMeasurement {
        var measurement = EdgeMeasurement()
        // Listeners of its own, so both sides of the flows are closed when this returns.
        let holding = try holdingPorts.map { port in
            try NetworkNamespace.run(at: NetworkNamespace.path(named: LabTopology.internet)) {
                try AcceptingListener(Endpoint(LabTopology.internetAddress, port), holding: true)
            }
        }
        let (entriesBefore, bytesBefore) = try edgeState()
        let kept = Mutex<[OpenFlow]>([])
        let failure = Mutex<String?>(nil)
        let perHost = count / topology.hostCount
        try onEveryHost(topology) { _ in
            var mine: [OpenFlow] = []
            mine.reserveCapacity(perHost)
            let deadline = ContinuousClock.now + .seconds(120)
            for number in 0..<perHost where ContinuousClock.now < deadline {
                do {
                    mine.append(OpenFlow(try UnslicedConnect.tcp(to: holding[number % holding.count].endpoint)))
                } catch {
                    failure.withLock { $0 = $0 ?? "\(error)" }
                    break
                }
            }
            kept.withLock { $0 += mine }
        }
        if let message = failure.withLock({ $0 }) { throw LabError("opening live flows failed: \(message)") }
        measurement.liveFlows = kept.withLock { $0.count }
        let (entriesAfter, bytesAfter) = try edgeState()
        measurement.trackedEntries = max(0, entriesAfter - entriesBefore)
        measurement.stateBytes = max(0, bytesAfter - bytesBefore)
        kept.withLock { $0.removeAll() }
        return measurement
    }

    /// One iperf3 TCP transfer from host 1 to the internet for `seconds` (its source comes
    /// from the route, as for the connections); nil without iperf3.
    static func throughput(_ topology: LabTopology, seconds: Double) throws -> Double? {
        guard (try? SystemTool.path(of: "iperf3")) != nil else { return nil }
        let server = Process()
        server.executableURL = URL(fileURLWithPath: try SystemTool.path(of: "ip"))
        server.arguments = ["netns", "exec", LabTopology.internet, try SystemTool.path(of: "iperf3"), "-s", "-1", "-B", "\(LabTopology.internetAddress)", "-p", "\(iperfPort)"]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer { if server.isRunning { server.terminate() }; server.waitUntilExit() }
        Thread.sleep(forTimeInterval: 0.3)
        let arguments = ["-c", "\(LabTopology.internetAddress)", "-p", "\(iperfPort)", "-t", "\(max(1, Int(seconds.rounded())))", "-J"]
        let output = try SystemTool.run("iperf3", arguments, in: topology.namespace(ofHost: 1))
        guard let json = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any],
              let end = json["end"] as? [String: Any], let received = end["sum_received"] as? [String: Any],
              let bits = received["bits_per_second"] as? Double
        else { throw LabError("iperf3 gave no result: \(output.prefix(300))") }
        return bits
    }

    /// Applies a table of `count` slices (spread over up to 50 addresses, owners round robin)
    /// and measures the apply and the packet rate to a slice of host 1.
    static func scalePoint(_ count: Int, _ topology: LabTopology, _ hosts: [EdgeHost], seconds: Double) throws -> ScalePoint {
        let addresses = min(50, max(1, count / 200))
        let perAddress = (count + addresses - 1) / addresses
        let width = (65535 - 1024 + 1) / perAddress
        var entries: [SliceTable.Entry] = []
        for number in 0..<count {
            let address = IPv4Address(203, 0, 113, UInt8(10 + number / perAddress))
            let lower = 1024 + (number % perAddress) * width
            let host = hosts[(number % perAddress) % hosts.count].name
            entries.append(SliceTable.Entry(address: address, index: number % perAddress, ports: PortSet(try PortRange(UInt16(lower), UInt16(lower + width - 1))), state: .leased, host: host))
        }
        let script = EdgeRuleset.render(try SteeringPlan(table: SliceTable(version: Int64(count), slices: entries), hosts: hosts))
        let table = OwnedTable(name: EdgeRuleset.tableName, namespace: LabTopology.edge)
        var applyTimes: [Double] = []
        for _ in 0..<3 {
            let started = ContinuousClock.now
            try table.apply(script)
            let elapsed = ContinuousClock.now - started
            applyTimes.append(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        }
        // Slice 0 of the first address belongs to host 1 and starts at port 1024.
        let target = Endpoint(topology.sharedAddresses[0], 1024)
        let sink = try NetworkNamespace.run(at: NetworkNamespace.path(named: topology.namespace(ofHost: 1))) { try EchoServers(target, mode: .udpSink) }
        // The sender's thread is given no reference to the sink: a thread that ends a moment
        // after `run` returns would keep it (and its port) open into the next point's bind.
        let elapsed = try NetworkNamespace.run(at: NetworkNamespace.path(named: LabTopology.internet)) { () throws -> Double in
            let socket = try UnslicedConnect.udp(to: target)
            let payload = [UInt8](repeating: 0x55, count: 64)
            let started = ContinuousClock.now
            let deadline = started + .milliseconds(Int(seconds * 1000))
            var sent = 0
            while ContinuousClock.now < deadline && sent < 20_000_000 {
                if (try? socket.send(payload)) != nil { sent += 1 }
            }
            Thread.sleep(forTimeInterval: 0.2)  // let the last packets arrive
            let elapsed = ContinuousClock.now - started - .milliseconds(200)
            return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        }
        return ScalePoint(slices: count, applySeconds: applyTimes.sorted()[1], packetsPerSecond: Double(sink.datagramCount) / elapsed)
    }

    /// Connection-tracking entries in the edge's namespace, and the conntrack slab's bytes in
    /// use (the slab is shared by every namespace; only the NAT edge adds to it here).
    static func edgeState() throws -> (entries: Int, bytes: Int) {
        // Read from a thread inside the namespace rather than by a child process: with tens of
        // thousands of descriptors open, Foundation's Process crashes while spawning.
        // An unreadable count is an error, not zero: without connection tracking loaded the
        // stateless edge's 0 would prove nothing. The NAT edge's entries are read the same way.
        let read = try NetworkNamespace.run(at: NetworkNamespace.path(named: LabTopology.edge)) {
            (try? String(contentsOfFile: "/proc/sys/net/netfilter/nf_conntrack_count", encoding: .utf8))
                .flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        guard let count = read else {
            throw LabError("cannot read the edge's connection-tracking count (/proc/sys/net/netfilter/nf_conntrack_count): conntrack is not loaded, so a count of 0 would prove nothing; run `modprobe nf_conntrack`")
        }
        let slab = (try? String(contentsOfFile: "/proc/slabinfo", encoding: .utf8)) ?? ""
        let line = slab.split(separator: "\n").first { $0.hasPrefix("nf_conntrack ") }
        let fields = line.map { $0.split(separator: " ", omittingEmptySubsequences: true) } ?? []
        let bytes = fields.count > 3 ? (Int(fields[1]) ?? 0) * (Int(fields[3]) ?? 0) : 0
        return (count, bytes)
    }

    static func sysctl(_ namespace: String, _ setting: String) throws {
        _ = try SystemTool.run("sysctl", ["-q", "-w", setting], in: namespace)
    }

    /// Runs `body` for each host on a thread inside the host's namespace, all at once.
    static func onEveryHost(_ topology: LabTopology, _ body: @escaping @Sendable (Int) throws -> Void) throws {
        let errors = Mutex<[String]>([])
        let group = DispatchGroup()
        for index in topology.hostIndices {
            group.enter()
            Thread {
                defer { group.leave() }
                do { try NetworkNamespace.run(at: NetworkNamespace.path(named: topology.namespace(ofHost: index))) { try body(index) } } catch {
                    errors.withLock { $0.append("\(topology.hostName(index)): \(error)") }
                }
            }.start()
        }
        group.wait()
        if let first = errors.withLock({ $0.first }) { throw LabError(first) }
    }
}
