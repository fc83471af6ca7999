import ArgumentParser
import Foundation
import PortSliceAgent
import PortSliceAPI
import PortSliceCore
import PortSliceEdge
import PortSliceLab
import PortSliceSockets

/// `portslice lab run`: the allocator, the edge and a guard per host as real processes, flows
/// from every host through the data plane's dialer, and a report of what reached where.
struct LabRun: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the allocator, edge and host guards in the lab, send TCP, UDP, HTTP and ICMP through it, and report (exit status 1 when a check fails).",
        discussion: "Builds the lab first when it is not up, and takes it down again afterwards in that case."
    )

    @OptionGroup var size: LabSize

    @Option(help: "TCP flows and UDP flows each host opens (all open at once).")
    var flows = 32

    @Option(help: "Ports per slice.")
    var sliceSize = 2048

    @Option(help: "Slices each host leases.")
    var slicesPerHost = 2

    @Flag(help: .hidden)
    var insideEdge = false

    func validate() throws {
        guard (1...5000).contains(flows) else { throw ValidationError("--flows \(flows) is out of range; give 1 to 5000") }
        guard (1...8).contains(slicesPerHost) else { throw ValidationError("--slices-per-host \(slicesPerHost) is out of range; give 1 to 8") }
    }

    func run() async throws {
        try requireRoot("lab run")
        let topology = try size.topology()
        if insideEdge {
            let report = try await LabRunner(topology: topology, flows: flows, sliceSize: sliceSize, slicesPerHost: slicesPerHost).run()
            print(report.text)
            if !report.passed { throw ExitCode(1) }
            return
        }
        // The runner talks to the allocator over the edge's network, so it runs in the edge's
        // namespace: this command starts itself again there.
        let builtHere = LabTopology.existingNamespaces().isEmpty
        if builtHere { try topology.build() }
        defer { if builtHere { LabTopology.tearDown() } }
        guard Set(topology.namespaces).isSubset(of: LabTopology.existingNamespaces()) else {
            throw CommandFailure("the lab that is up has another size than --hosts \(size.hosts) --addresses \(size.addresses); run `portslice lab down` first")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try SystemTool.path(of: "ip"))
        process.arguments = ["netns", "exec", LabTopology.edge, LabProcess.executable, "lab", "run", "--inside-edge",
                             "--hosts", "\(size.hosts)", "--addresses", "\(size.addresses)", "--flows", "\(flows)",
                             "--slice-size", "\(sliceSize)", "--slices-per-host", "\(slicesPerHost)"]
        try process.run()
        process.waitUntilExit()
        if process.terminationStatus != 0 { throw ExitCode(process.terminationStatus) }
    }
}

/// One check of the report.
struct LabCheck {
    let name: String
    let passed: Bool
    let detail: String
}

struct LabReport {
    var checks: [LabCheck] = []
    var notes: [String] = []

    mutating func check(_ name: String, _ passed: Bool, _ detail: String) { checks.append(LabCheck(name: name, passed: passed, detail: detail)) }
    var passed: Bool { checks.allSatisfy(\.passed) }
    var text: String {
        renderTable(["check", "result", "detail"], checks.map { [$0.name, $0.passed ? "ok" : "FAILED", $0.detail] })
            + (notes.isEmpty ? "" : "\n" + notes.joined(separator: "\n"))
            + "\nlab run: \(checks.filter(\.passed).count) of \(checks.count) checks passed"
    }
}

/// Runs inside the edge's namespace.
struct LabRunner {
    let topology: LabTopology
    let flows: Int
    let sliceSize: Int
    let slicesPerHost: Int

    static let allocatorPort = 7300
    static let echoPort: UInt16 = 7007
    static let closedPort: UInt16 = 7999

    private let started = ContinuousClock.now

    /// A line on standard error with the time since the start, so a slow step shows itself.
    private func progress(_ step: String) {
        let elapsed = ContinuousClock.now - started
        printToStandardError(String(format: "lab run: %6.2f s  %@", Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18, step))
    }

    func run() async throws -> LabReport {
        var report = LabReport()
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("portslice-lab-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: work) }
        let adminToken = UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        let pool = "\(work)/pool.csv"
        try (topology.sharedAddresses.map { "\($0)/32" } + ["\(LabTopology.prefixPool)"]).map { "\($0),US,US-CA,San Jose,,hosting,high" }
            .joined(separator: "\n").write(toFile: pool, atomically: true, encoding: .utf8)

        let allocator = try LabProcess("allocator", ["serve", "--data-dir", "\(work)/allocator", "--listen", "0.0.0.0:\(Self.allocatorPort)",
                                                     "--pool", pool, "--slice-size", "\(sliceSize)"],
                                       environment: ["PORTSLICE_ADMIN_TOKEN": adminToken], logDirectory: work)
        let admin = try AllocatorClient(base: "http://127.0.0.1:\(Self.allocatorPort)", token: adminToken)
        try await waitUntil("the allocator answers", process: allocator) { await admin.isAlive() }

        progress("allocator up")
        // Hosts register and lease their slices, as agents would.
        // Each with a token that can do only its job: the edge reads the table, each host its
        // own leases and (for its guard) its own slices.
        var slices: [Int: [EgressSlice]] = [:]
        var prefixes: [Int: IPv6Prefix] = [:]
        var hostTokens: [Int: String] = [:]
        for index in topology.hostIndices {
            let created = try await admin.addHost(NewHost(name: topology.hostName(index)))
            hostTokens[index] = created.token
            let host = try AllocatorClient(base: admin.base, token: created.token)
            slices[index] = try await host.acquire(AcquireRequest(count: slicesPerHost, ttlSeconds: 3600)).map(\.egressSlice)
            prefixes[index] = try await host.acquirePrefixes(AcquireRequest(count: 1, ttlSeconds: 3600)).first?.prefix
        }
        let edgeToken = try await admin.addEdge(NewEdge(name: "lab-edge")).token
        let version = try await admin.sliceTable().version

        let hostArguments = topology.hostIndices.flatMap { ["--host", "\(topology.hostName($0))=\(topology.hostSide(ofHost: $0)),\(topology.hostSide6(ofHost: $0))"] }
        let edgeArguments = ["edge", "--server", admin.base, "--token", edgeToken, "--reconcile", "1"] + hostArguments
        var edge = try LabProcess("edge", edgeArguments, logDirectory: work)
        let guards = try topology.hostIndices.map { index in
            try LabProcess("guard-\(topology.hostName(index))", [
                "edge", "--host-guard", topology.hostName(index),
                "--server", "http://\(topology.edgeSide(ofHost: index)):\(Self.allocatorPort)", "--token", hostTokens[index]!,
            ], namespace: topology.namespace(ofHost: index), logDirectory: work)
        }
        let edgeTable = OwnedTable(name: EdgeRuleset.tableName)
        let guardTables = Dictionary(uniqueKeysWithValues: topology.hostIndices.map { ($0, OwnedTable(name: HostGuardRuleset.tableName, namespace: topology.namespace(ofHost: $0))) })
        let applyStarted = ContinuousClock.now
        // The row compares what each one applied (the version in its table's comment) with the
        // version asked for, after waiting up to 20 s for it; a process that dies fails the run.
        _ = try await waitUntil(process: edge) { appliedVersion(edgeTable) == version }
        for index in topology.hostIndices {
            _ = try await waitUntil(process: guards[index - 1]) { appliedVersion(guardTables[index]!) == version }
        }
        let appliedVersions = [("edge", appliedVersion(edgeTable))] + topology.hostIndices.map { ("guard \(topology.hostName($0))", appliedVersion(guardTables[$0]!)) }
        let behind = appliedVersions.filter { $0.1 != version }
        report.check("rules applied", behind.isEmpty,
                     behind.isEmpty
                        ? "edge and \(guards.count) guards at slice table version \(version) within \((ContinuousClock.now - applyStarted).formatted(.units(allowed: [.milliseconds])))"
                        : "asked for version \(version); " + behind.map { "\($0.0) has \($0.1.map(String.init) ?? "nothing")" }.joined(separator: ", "))

        let server = Endpoint(LabTopology.internetAddress, Self.echoPort)
        let echo = try NetworkNamespace.run(at: NetworkNamespace.path(named: LabTopology.internet)) { try EchoServers(server) }

        progress("rules applied; echo servers up")
        // Flows from every host, all at once per host.
        var outcomes: [Int: [FlowOutcome]] = [:]
        var kept: [Int: [OpenFlow]] = [:]
        for index in topology.hostIndices {
            let (hostOutcomes, open) = try LabTraffic.exchange(inNamespace: topology.namespace(ofHost: index), slices: slices[index]!, server: server, count: flows)
            outcomes[index] = hostOutcomes
            kept[index] = Array(open.prefix(4))
        }
        let perHost = topology.hostIndices.map { index in
            let list = outcomes[index]!
            return "\(topology.hostName(index)): \(list.filter { $0.transport == .tcp && $0.failure == nil }.count) tcp + \(list.filter { $0.transport == .udp && $0.failure == nil }.count) udp"
        }
        let all = outcomes.values.flatMap { $0 }
        let failures = all.filter { $0.failure != nil }
        report.check("flows per host", failures.isEmpty, perHost.joined(separator: ", ") + (failures.first.map { "; first failure: \($0.failure!)" } ?? ""))
        report.check("return traffic to the right host", failures.isEmpty, "\(all.count - failures.count) of \(all.count) flows got their echo (\(percent(all.count - failures.count, of: all.count)))")

        progress("flows done")
        // What the far end saw: every source must be a shared address and a port of the slice
        // of the host that opened the flow.
        let observed = echo.peers
        var misplaced: [String] = []
        var seenFromHosts: [Int: Int] = [:]
        for (transport, peers) in observed {
            for peer in peers {
                guard let owner = topology.hostIndices.first(where: { slices[$0]!.contains { $0.address == peer.address && $0.ports.contains(peer.port) } }) else {
                    misplaced.append("\(transport) \(peer)")
                    continue
                }
                let opened = outcomes[owner]!.contains { $0.transport == transport && $0.local == peer }
                if !opened { misplaced.append("\(transport) \(peer) (in \(topology.hostName(owner))'s slice, but \(topology.hostName(owner)) did not open it)") }
                seenFromHosts[owner, default: 0] += 1
            }
        }
        let observedCount = observed.values.map(\.count).reduce(0, +)
        report.check("source ports inside the host's slices", misplaced.isEmpty && observedCount > 0,
                     "\(observedCount) sources seen by the far end, \(misplaced.count) outside their host's slice" + (misplaced.first.map { ": \($0)" } ?? ""))

        // ICMP errors travel back by the port quoted inside them.
        let far = Endpoint(LabTopology.farAddress, Self.echoPort)
        var icmpDetails: [String] = []
        var icmpPassed = true
        for index in topology.hostIndices {
            let before = try guardTables.mapValues { try $0.counters()["icmp_errors"]?.packets ?? 0 }
            let (local, mtu) = try LabTraffic.learnPathMTU(inNamespace: topology.namespace(ofHost: index), slice: slices[index]![0], towards: far, datagramSize: 1400)
            let after = try guardTables.mapValues { try $0.counters()["icmp_errors"]?.packets ?? 0 }
            let grew = topology.hostIndices.filter { after[$0]! > before[$0]! }
            let right = mtu == LabTopology.farLinkMTU && grew == [index]
            icmpPassed = icmpPassed && right
            icmpDetails.append("\(topology.hostName(index)) from \(local.port): mtu \(mtu.map(String.init) ?? "not learned"), counted on \(grew.map(topology.hostName).joined(separator: ",").nonEmpty ?? "no host")")
        }
        report.check("ICMP fragmentation-needed to the right host", icmpPassed, icmpDetails.joined(separator: "; "))

        progress("ICMP fragmentation-needed done")
        var refusedDetails: [String] = []
        var refusedPassed = true
        for index in topology.hostIndices {
            let (local, refused) = try LabTraffic.refusedByClosedPort(inNamespace: topology.namespace(ofHost: index), slice: slices[index]!.last!, destination: Endpoint(LabTopology.internetAddress, Self.closedPort))
            refusedPassed = refusedPassed && refused
            refusedDetails.append("\(topology.hostName(index)) from \(local.port): \(refused ? "refused" : "no answer")")
        }
        report.check("ICMP port-unreachable to the right host", refusedPassed, refusedDetails.joined(separator: "; "))

        progress("ICMP port-unreachable done")
        // A program on host 1 that sends from a port outside its slices is stopped by the guard.
        if topology.hostCount >= 2, let foreign = slices[2]?.first {
            let before = try guardTables[1]!.counters()["outside"]?.packets ?? 0
            let stray = EgressSlice(address: foreign.address, ports: PortSet(PortRange(port: foreign.ports.runs[0].lower)))
            // The guard's drop in the output hook fails the send itself (EPERM).
            _ = try? LabTraffic.refusedByClosedPort(inNamespace: topology.namespace(ofHost: 1), slice: stray, destination: server)
            let after = try guardTables[1]!.counters()["outside"]?.packets ?? 0
            let reached = echo.peers[.udp, default: []].contains(Endpoint(stray.address, stray.ports.runs[0].lower))
            report.check("host guard stops ports outside the slice", after > before && !reached,
                         "h1 sent from \(stray.address):\(stray.ports) (h2's): \(after - before) packet(s) dropped by h1's guard, \(reached ? "REACHED" : "never reached") the far end")
        }

        progress("guard check done")
        try await checkIPv6(topology: topology, prefixes: prefixes, report: &report)
        progress("IPv6 done")
        // Restarting the edge: flows of live slices go on, with no state lost.
        let restartVersion = try await admin.sliceTable().version
        edge.stop()
        edge = try LabProcess("edge-restarted", edgeArguments, logDirectory: work)
        try await waitUntil("the restarted edge applies version \(restartVersion)", process: edge) { appliedVersion(edgeTable) == restartVersion }
        let keptFlows = kept.values.flatMap { $0 }
        let survived = keptFlows.filter { $0.echo("after the edge restarted") == nil }.count
        report.check("flows survive an edge restart", survived == keptFlows.count, "\(survived) of \(keptFlows.count) TCP flows opened before the restart still echo")

        progress("edge restart done")
        // No packet to a wrong host, and the edge's drop counters.
        let foreign = try topology.hostIndices.map { try guardTables[$0]!.counters()["foreign"]?.packets ?? 0 }.reduce(0, +)
        report.check("packets to a wrong host", foreign == 0, "\(foreign) packets arrived at a host for a port it does not hold (the guards' foreign counters)")
        let edgeCounters = try edgeTable.counters()
        report.notes.append("edge drop counters: " + EdgeRuleset.counterNames.map { "\($0) \(edgeCounters[$0]?.packets ?? 0)" }.joined(separator: ", "))
        let conntrack = (try? String(contentsOfFile: "/proc/sys/net/netfilter/nf_conntrack_count", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "0 (conntrack not loaded)"
        report.notes.append("edge connection-tracking entries: \(conntrack)")

        kept.removeAll()
        // Stopping everything removes every rule the processes installed.
        edge.stop()
        guards.forEach { $0.stop() }
        allocator.stop()
        progress("processes stopped")
        let leftovers = try ([edgeTable, OwnedTable(name: EdgeRuleset.tableName6, family: "ip6")] + Array(guardTables.values)).filter { try $0.listing() != nil }
        let leftRoutes = try PrefixRoutes().installed().count
        report.check("nothing left behind by the processes", leftovers.isEmpty && leftRoutes == 0,
                     leftovers.isEmpty && leftRoutes == 0 ? "edge and guards removed their tables and routes on SIGTERM"
                        : "\(leftovers.count) table(s) and \(leftRoutes) IPv6 prefix route(s) still installed")
        return report
    }

    /// IPv6: each host's leased /64 routed to its lo (as its agent would), the edge's route per
    /// prefix, TCP from every host's prefix to a closed port beyond the edge whose reset must
    /// come back to that host, a host sending from another's prefix getting no answer, and no
    /// connection-tracking entry at the edge for any of it.
    private func checkIPv6(topology: LabTopology, prefixes: [Int: IPv6Prefix], report: inout LabReport) async throws {
        let missing = topology.hostIndices.filter { prefixes[$0] == nil }
        guard missing.isEmpty else {
            report.check("IPv6 prefixes routed to their hosts", false, "no prefix leased to \(missing.map(topology.hostName).joined(separator: ", "))")
            return
        }
        // The edge applied its routes with the table version checked above.
        let routes = try PrefixRoutes().installed()
        let expected = Dictionary(uniqueKeysWithValues: topology.hostIndices.map { (prefixes[$0]!, Optional(topology.hostSide6(ofHost: $0))) })
        report.check("IPv6 prefixes routed to their hosts", routes == expected,
                     topology.hostIndices.map { "\(prefixes[$0]!) via \(routes[prefixes[$0]!].map { $0.map(\.description) ?? "blackhole" } ?? "no route")" }.joined(separator: ", "))

        // A bystander's table whose rules ask connection tracking about every packet of the
        // prefixes (which turns tracking on for IPv6 here) and count what it says: without the
        // edge's notrack, each flow below would be tracked.
        _ = try SystemTool.run("nft", ["-f", "-"], input: Self.conntrackProbe)
        defer { _ = try? SystemTool.run("nft", ["delete", "table", "ip6", Self.conntrackProbeTable]) }
        let setups = topology.hostIndices.map { HostNetworkSetup(namespace: topology.namespace(ofHost: $0)) }
        for index in topology.hostIndices { try await setups[index - 1].apply([], prefixes: [prefixes[index]!]) }

        var details: [String] = []
        var passed = true
        for index in topology.hostIndices {
            let source = IPv6Address(bits: prefixes[index]!.network.bits | 0x5053)
            let failure = try LabTraffic.refusedFromPrefix(inNamespace: topology.namespace(ofHost: index), source: source, destination: LabTopology.internetAddress6,
                                                           port: Self.closedPort, timeout: .seconds(3))
            passed = passed && failure == nil
            details.append("\(topology.hostName(index)) from \(source): \(failure ?? "refused")")
        }
        report.check("IPv6 return traffic to the right host", passed, details.joined(separator: "; "))

        if topology.hostCount >= 2 {
            // h1 sends from h2's prefix: the answer goes to h2, which has no such flow.
            let stray = IPv6Address(bits: prefixes[2]!.network.bits | 0x5054)
            let failure = try LabTraffic.refusedFromPrefix(inNamespace: topology.namespace(ofHost: 1), source: stray, destination: LabTopology.internetAddress6,
                                                           port: Self.closedPort, timeout: .seconds(1))
            report.check("IPv6 from another host's prefix gets no answer", failure != nil, "h1 from \(stray) (h2's): \(failure ?? "REFUSED, so the answer reached h1")")
        }

        let counters = try OwnedTable(name: Self.conntrackProbeTable, family: "ip6").counters()
        let tracked = counters["tracked"]?.packets ?? 0, untracked = counters["untracked"]?.packets ?? 0
        // And, as for IPv4, the entries the edge holds: the kernel lists IPv6 addresses in full.
        func full(_ address: IPv6Address) -> String { address.groups.map { String(format: "%04x", $0) }.joined(separator: ":") }
        let pool = full(LabTopology.prefixPool.network).prefix(Int(LabTopology.prefixPool.length) / 16 * 5)  // "2001:0db8:0100:"
        let entries = ((try? String(contentsOfFile: "/proc/net/nf_conntrack", encoding: .utf8)) ?? "").split(separator: "\n")
            .filter { $0.hasPrefix("ipv6") && $0.contains("=\(pool)") }.count
        report.check("IPv6 flows tracked at the edge", tracked == 0 && untracked > 0 && entries == 0,
                     "\(untracked) packets of the prefixes passed untracked, \(tracked) tracked; \(entries) connection-tracking entries for them")
        for setup in setups { try await setup.remove() }
    }

    static let conntrackProbeTable = "psl_conntrack_probe"
    static let conntrackProbe = """
        table ip6 \(conntrackProbeTable) {
          counter tracked { }
          counter untracked { }
          chain prerouting {
            type filter hook prerouting priority 0; policy accept;
            ip6 saddr \(LabTopology.prefixPool) ct state untracked counter name untracked
            ip6 daddr \(LabTopology.prefixPool) ct state untracked counter name untracked
            ip6 saddr \(LabTopology.prefixPool) ct state != untracked counter name tracked
            ip6 daddr \(LabTopology.prefixPool) ct state != untracked counter name tracked
          }
        }

        """

    /// The slice-table version an edge or guard last applied, read from its table's comment
    /// in the kernel; nil when it has applied none.
    private func appliedVersion(_ table: OwnedTable) -> Int64? {
        guard let listing = (try? table.listing()) ?? nil, let range = listing.range(of: "slice table version ") else { return nil }
        return Int64(listing[range.upperBound...].prefix { $0.isNumber })
    }

    /// Polls `condition` every 50 ms for up to 20 s; fails naming what was awaited and the
    /// process's last words when it does not hold by then, or when the process died.
    private func waitUntil(_ what: String, process: LabProcess, _ condition: () async -> Bool) async throws {
        guard try await waitUntil(process: process, condition) else {
            throw CommandFailure("lab run: \(what) did not happen within 20 s; \(process.name) said:\n\(process.logTail)")
        }
    }

    /// Polls `condition` every 50 ms for up to 20 s; whether it came to hold. Fails only when
    /// the process died.
    private func waitUntil(process: LabProcess, _ condition: () async -> Bool) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline {
            if await condition() { return true }
            guard process.isRunning else { throw CommandFailure("lab run: \(process.name) exited:\n\(process.logTail)") }
            try await Task.sleep(for: .milliseconds(50))
        }
        return false
    }
}

func percent(_ part: Int, of whole: Int) -> String {
    whole == 0 ? "-" : String(format: "%.1f%%", Double(part) * 100 / Double(whole))
}

extension String {
    var nonEmpty: String? { isEmpty ? nil : self }
}
