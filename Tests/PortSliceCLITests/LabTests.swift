import Foundation
import Glibc
import Logging
import PortSliceCore
import PortSliceEdge
import PortSliceLab
import PortSliceSockets
import PortSliceStore
import PortSliceTestSupport
import Testing

enum RootOnly {
    static var isRoot: Bool { geteuid() == 0 }
    static let skipReason: Comment = "needs root for network namespaces and nftables (CI runs as root)"
}

/// The lab's namespaces have fixed names, so everything that builds them runs one at a time.
@Suite("Edge and lab in network namespaces (root)", .serialized, .enabled(if: RootOnly.isRoot, RootOnly.skipReason))
struct LabTests {
    @Test("lab run: every host's TCP, UDP, HTTP and ICMP go out from its slices and come back to it, and nothing is left behind")
    func endToEnd() async throws {
        LabTopology.tearDown()
        let result = try await CommandRunner.run(["lab", "run", "--hosts", "3", "--addresses", "2", "--flows", "16"])
        #expect(result.status == 0, "\(result.output)\n\(result.errorOutput)")
        for check in ["rules applied", "flows per host", "return traffic to the right host", "source ports inside the host's slices",
                      "ICMP fragmentation-needed to the right host", "ICMP port-unreachable to the right host",
                      "host guard stops ports outside the slice", "flows survive an edge restart", "packets to a wrong host",
                      "IPv6 prefixes routed to their hosts", "IPv6 return traffic to the right host", "IPv6 from another host's prefix gets no answer",
                      "IPv6 flows tracked at the edge", "nothing left behind by the processes"] {
            let line = result.output.split(separator: "\n").first { $0.hasPrefix(check) }
            #expect(line?.contains(" ok ") == true, "\(check): \(line ?? "missing")")
        }
        #expect(result.output.contains("96 of 96 flows got their echo (100.0%)"))
        #expect(result.output.contains("edge connection-tracking entries: 0"))
        #expect(result.output.contains(" 0 tracked; 0 connection-tracking entries for them"))
        #expect(result.output.contains("lab run: 14 of 14 checks passed"))
        #expect(LabTopology.existingNamespaces().isEmpty)
    }

    @Test("the edge routes each leased IPv6 prefix to its host, moves it in one step, drops a quarantined one, leaves unchanged routes alone, restores a deleted route and removes only its own")
    func edgePrefixRoutes() async throws {
        LabTopology.tearDown()
        let topology = try LabTopology(hosts: 2, addresses: 1)
        try topology.build()
        defer { LabTopology.tearDown() }
        let hosts = try EdgeHost.numbered(Dictionary(uniqueKeysWithValues: topology.hostIndices.map { (topology.hostName($0), topology.hostSide(ofHost: $0)) }),
                                          ipv6: Dictionary(uniqueKeysWithValues: topology.hostIndices.map { (topology.hostName($0), topology.hostSide6(ofHost: $0)) }))
        let controller = EdgeController(role: .edge(hosts: hosts), namespace: LabTopology.edge)
        let routes = PrefixRoutes(namespace: LabTopology.edge)
        let first = IPv6Prefix("2001:db8:100:1::/64")!, second = IPv6Prefix("2001:db8:100:2::/64")!
        func table(_ version: Int64, _ prefixes: [SliceTable.PrefixEntry]) -> SliceTable { SliceTable(version: version, slices: [], prefixes: prefixes) }
        let h1 = topology.hostSide6(ofHost: 1), h2 = topology.hostSide6(ofHost: 2)

        try await controller.start()
        try await controller.apply(table(1, [.init(prefix: first, state: .leased, host: "h1"), .init(prefix: second, state: .leased, host: "h2")]))
        #expect(try routes.installed() == [first: h1, second: h2])
        // The kernel's own answer: which next hop a packet for the prefix takes.
        let lookup = try SystemTool.run("ip", ["-6", "route", "get", "2001:db8:100:1::5053"], in: LabTopology.edge)
        #expect(lookup.contains("via \(h1) "), "\(lookup)")
        #expect(try OwnedTable(name: EdgeRuleset.tableName6, family: "ip6", namespace: LabTopology.edge).listing()?.contains("2001:db8:100:1::/64") == true)

        // The first moves to h2 and the second goes to quarantine, in one table.
        try await controller.apply(table(2, [.init(prefix: first, state: .leased, host: "h2"), .init(prefix: second, state: .quarantined, host: nil)]))
        let movedAndDropped: [IPv6Prefix: IPv6Address?] = [first: h2, second: nil]
        #expect(try routes.installed() == movedAndDropped)
        // Released for good: its route goes.
        try await controller.apply(table(3, [.init(prefix: first, state: .leased, host: "h2")]))
        #expect(try routes.installed() == [first: h2])

        // Someone deletes the route. A table whose prefixes did not change leaves the routes
        // alone (it runs no `ip`); the next reconcile puts the route back.
        _ = try SystemTool.run("ip", ["-6", "route", "del", "\(first)", "table", "\(PrefixRoutes.table)"], in: LabTopology.edge)
        try await controller.apply(table(4, [.init(prefix: first, state: .leased, host: "h2")]))
        #expect(try routes.installed().isEmpty)
        #expect(try await controller.reconcile() == "IPv6 prefix routes")
        #expect(try routes.installed() == [first: h2])

        try await controller.shutdown()
        #expect(try routes.installed().isEmpty)
        #expect(try !SystemTool.run("ip", ["-6", "rule", "show"], in: LabTopology.edge).contains("lookup \(PrefixRoutes.table)"))
        #expect(try OwnedTable(name: EdgeRuleset.tableName6, family: "ip6", namespace: LabTopology.edge).listing() == nil)
    }

    @Test("lab up refuses to build over a lab that is up; lab down removes it all")
    func upAndDown() async throws {
        LabTopology.tearDown()
        let up = try await CommandRunner.run(["lab", "up", "--hosts", "2"])
        #expect(up.status == 0, "\(up.errorOutput)")
        #expect(LabTopology.existingNamespaces() == ["psl-edge", "psl-far", "psl-h1", "psl-h2", "psl-inet"])
        let again = try await CommandRunner.run(["lab", "up"])
        #expect(again.status != 0)
        #expect(again.errorOutput.contains("already exist") && again.errorOutput.contains("lab down"))
        let down = try await CommandRunner.run(["lab", "down"])
        #expect(down.status == 0)
        #expect(down.output.contains("removed 5 namespace(s); nothing left behind"))
        #expect(LabTopology.existingNamespaces().isEmpty)
    }

    @Test("the edge reroutes a moved slice within a second, keeps its rules on a bad table, restores outside changes and removes only its own")
    func edgeFaults() async throws {
        LabTopology.tearDown()
        let topology = try LabTopology(hosts: 2, addresses: 1)
        try topology.build()
        defer { LabTopology.tearDown() }
        let shared = topology.sharedAddresses[0]
        let port: UInt16 = 1500
        let receivers = try topology.hostIndices.map { index in
            try NetworkNamespace.run(at: NetworkNamespace.path(named: topology.namespace(ofHost: index))) { try EchoServers(Endpoint(shared, port)) }
        }
        let sender = try NetworkNamespace.run(at: NetworkNamespace.path(named: LabTopology.internet)) {
            OpenFlow(try UnslicedConnect.udp(to: Endpoint(shared, port)))
        }
        /// Sends one datagram from the internet and names the host whose echo came back.
        @Sendable func deliveredTo() -> Int? {
            let before = receivers.map { $0.peers[.udp, default: []].count }
            guard sender.echo("probe", timeout: .milliseconds(150)) == nil else { return nil }
            return receivers.indices.first { receivers[$0].peers[.udp, default: []].count > before[$0] }.map { $0 + 1 }
        }
        /// How long until the probe reaches `host` (nil: never, within `limit`). Each probe
        /// waits up to 150 ms for its echo, off the shared pool, which the edge's own tasks need.
        func waitFor(_ host: Int?, within limit: Duration) async throws -> Duration? {
            let start = ContinuousClock.now
            while ContinuousClock.now - start < limit {
                if try await offThePool({ deliveredTo() }) == host { return ContinuousClock.now - start }
                try await Task.sleep(for: .milliseconds(20))
            }
            return nil
        }

        let directory = try TemporaryDirectory()
        func writeTable(_ version: Int64, _ slices: [(String, SliceStatus, String?)]) throws {
            let entries = slices.enumerated().map { index, slice in
                SliceTable.Entry(address: shared, index: index, ports: try! PortSet(parsing: slice.0), state: slice.1, host: slice.2)
            }
            try writeAtomically(JSONEncoder().encode(SliceTable(version: version, slices: entries)))
        }
        func writeAtomically(_ data: Data) throws {
            let staging = directory.url.appendingPathComponent("table.json.new")
            try data.write(to: staging)
            // rename(2) replaces the file in one step, so the edge never reads it half written.
            #expect(Glibc.rename(staging.path, directory.url.appendingPathComponent("table.json").path) == 0)
        }
        try writeTable(1, [("1024-2047", .leased, "h1"), ("2048-3071", .free, nil)])

        _ = try SystemTool.run("nft", ["add", "table", "ip", "bystander"], in: LabTopology.edge)
        let hosts = try EdgeHost.numbered(Dictionary(uniqueKeysWithValues: topology.hostIndices.map { (topology.hostName($0), topology.hostSide(ofHost: $0)) }))
        let controller = EdgeController(role: .edge(hosts: hosts), namespace: LabTopology.edge)
        let reports = Reports()
        let service = EdgeService(controller: controller, source: SliceTableFile(path: directory.url.appendingPathComponent("table.json").path),
                                  reconcileInterval: .milliseconds(200), logger: reports.logger)
        let running = Task { try await service.run() }

        #expect(try await waitFor(1, within: .seconds(5)) != nil, "never reached h1: \(reports.all)")

        // Someone deletes the table, then one policy rule: both come back. The edge checks every
        // 200 ms, but in a full test run its task can wait seconds for a turn on the shared
        // pool, which other tests keep busy; the bound is for that wait, not for the edge.
        _ = try SystemTool.run("nft", ["delete", "table", "ip", EdgeRuleset.tableName], in: LabTopology.edge)
        #expect(try await waitFor(1, within: .seconds(10)) != nil,
                "the table was not restored: \(reports.all); tables now: \((try? SystemTool.run("nft", ["list", "tables"], in: LabTopology.edge)) ?? "?")")
        _ = try SystemTool.run("ip", ["rule", "del", "priority", "\(hosts[0].rulePriority)"], in: LabTopology.edge)
        #expect(try await waitFor(1, within: .seconds(10)) != nil, "the rule was not restored: \(reports.all)")
        #expect(reports.all.contains { $0.contains("changed from outside; restored") })

        // Malformed and conflicting tables are refused; the rules in force stay.
        try writeAtomically(Data("{\"version\": 2, \"slices\": [".utf8))
        try await Task.sleep(for: .milliseconds(600))
        try writeTable(3, [("1024-2047", .leased, "h2"), ("2000-3071", .free, nil)])
        // The edge waits a second after a table it cannot read before it looks again.
        try await waitUntil(checkingEvery: .milliseconds(50)) { reports.all.contains(where: { $0.contains("rejected slice table version 3") }) }
        #expect(await controller.appliedVersion == 1)
        #expect(deliveredTo() == 1)
        #expect(reports.all.contains { $0.contains("not a slice table") })
        #expect(reports.all.contains { $0.contains("rejected slice table version 3") && $0.contains("share ports") }, "\(reports.all)")

        // The slice is released into quarantine (dropped and counted), then leased to h2.
        try writeTable(4, [("1024-2047", .quarantined, nil), ("2048-3071", .free, nil)])
        #expect(try await waitFor(nil, within: .seconds(3)) != nil)
        let edgeTable = OwnedTable(name: EdgeRuleset.tableName, namespace: LabTopology.edge)
        #expect((try edgeTable.counters()["quarantined"]?.packets ?? 0) > 0)
        let h1Before = receivers[0].peers[.udp, default: []].count
        try writeTable(5, [("1024-2047", .leased, "h2"), ("2048-3071", .free, nil)])
        let rerouted = try await waitFor(2, within: .seconds(1))
        #expect(rerouted != nil, "not rerouted to h2 within a second of the table change: \(reports.all)")
        #expect(receivers[0].peers[.udp, default: []].count == h1Before, "h1 received after its slice moved")

        // Shutdown removes the edge's table and rules, and nothing else.
        running.cancel()
        try await running.value
        #expect(try edgeTable.listing() == nil)
        #expect(try OwnedTable(name: "bystander", namespace: LabTopology.edge).listing() != nil)
        let rules = try SystemTool.run("ip", ["rule", "show"], in: LabTopology.edge)
        #expect(!rules.contains("0x5053"))
    }
}

/// What the edge logged, for failure messages and checks.
final class Reports: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    func add(_ line: String) { lock.withLock { lines.append(line) } }
    var all: [String] { lock.withLock { lines } }

    /// A logger (every level) whose messages are kept here.
    var logger: Logger {
        var logger = Logger(label: "portslice.edge.test") { _ in Handler(reports: self) }
        logger.logLevel = .trace
        return logger
    }

    struct Handler: LogHandler {
        let reports: Reports
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) { reports.add(event.message.description) }
    }
}

extension LabTests {
    @Test("lab bench prints both edges side by side and the slice-count table, and leaves no lab behind")
    func benchSmoke() async throws {
        LabTopology.tearDown()
        let result = try await CommandRunner.run(["lab", "bench", "--seconds", "0.5", "--live-flows", "300", "--slices", "10,100", "--format", "json"])
        #expect(result.status == 0, "\(result.errorOutput)")
        struct Measured: Decodable { let connectionsPerSecond: Double; let liveFlows: Int; let trackedEntries: Int }
        struct Point: Decodable { let slices: Int; let packetsPerSecond: Double }
        struct Bench: Decodable { let stateless: Measured; let nat: Measured; let scale: [Point] }
        let bench = try JSONDecoder().decode(Bench.self, from: Data(result.output.utf8))
        #expect(bench.stateless.connectionsPerSecond > 0 && bench.nat.connectionsPerSecond > 0)
        #expect(bench.stateless.liveFlows == 300 && bench.nat.liveFlows == 300)
        // The design's point: the stateless edge keeps nothing per flow; NAT keeps an entry each.
        #expect(bench.stateless.trackedEntries == 0)
        #expect(bench.nat.trackedEntries >= 300)
        #expect(bench.scale.map(\.slices) == [10, 100] && bench.scale.allSatisfy { $0.packetsPerSecond > 0 })
        #expect(LabTopology.existingNamespaces().isEmpty)
    }
}
