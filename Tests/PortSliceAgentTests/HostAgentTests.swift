import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import PortSliceAPI
import PortSliceControl
import PortSliceCore
import PortSliceEdge
import PortSliceSockets
import PortSliceStore
import Synchronization
import Testing
@testable import PortSliceAgent

/// The agent against a live allocator API (in-process, in-memory SQLite, real HTTP).
@Suite("host agent")
struct HostAgentTests {
    static let adminToken = "admin-secret-for-agent-tests"

    /// What the agent handed on, in order.
    final class Uses: Sendable {
        let calls = Mutex<[Holdings]>([])
        func record(_ held: Holdings) { calls.withLock { $0.append(held) } }
        /// The slices of each call.
        var all: [[HeldSlice]] { calls.withLock { $0.map(\.slices) } }
        var last: [HeldSlice] { all.last ?? [] }
        var lastPrefixes: [HeldPrefix] { calls.withLock { $0.last?.prefixes ?? [] } }
    }

    /// A logger that drops everything, for tests that do not look at the log.
    static let quiet = Logger(label: "portslice.agent.test") { _ in SwiftLogNoOpLogHandler() }

    static let usPrefixes = IPv6Prefix("2001:db8:100::/48")!
    static let dePrefixes = IPv6Prefix("2001:db8:200::/48")!

    /// An allocator with two US residential addresses and one DE hosting address (4 slices
    /// each), with `prefixes` also a US residential and a DE hosting IPv6 pool prefix (leasing
    /// /64s), and a host `h1`; runs `body` with the store and the host's client.
    private func withAllocator(prefixes: Bool = false, _ body: @Sendable (SQLSliceStore, AllocatorClient) async throws -> Void) async throws {
        let store = try await SQLSliceStore.openSQLite(path: nil)
        let plan = try SlicePlan(range: PortRange(20000, 23999), layout: .sliceCount(4))
        let us = try Traits(country: CountryCode(parsing: "US"), category: .residential), de = try Traits(country: CountryCode(parsing: "DE"), category: .hosting)
        for (address, traits) in [("192.0.2.10", us), ("192.0.2.11", us), ("192.0.2.20", de)] {
            try await store.add(EgressAddress(address: try IPv4Address(parsing: address), traits: traits), plan: plan)
        }
        if prefixes {
            try await store.add(PoolPrefix(prefix: Self.usPrefixes, traits: us))
            try await store.add(PoolPrefix(prefix: Self.dePrefixes, traits: de))
        }
        let token = try await store.addHost("h1", labels: [:], now: .current)
        let app = Application(router: ControlAPI(store: store, adminTokenHash: HostToken.hash(of: Self.adminToken)).router())
        try await app.test(.live) { client in
            try await body(store, try AllocatorClient(base: "http://127.0.0.1:\(client.port!)", token: token))
        }
        try await store.close()
    }

    private func traits(_ text: String) throws -> LeaseWant { try LeaseWant(parsing: text) }

    @Test("wants are parsed with their traits; bad ones are named")
    func parsesWants() throws {
        let want = try LeaseWant(parsing: "2,country=DE,region=DE-BE,category=hosting,reputation=high,tag=a,tag=b")
        #expect(want.count == 2)
        #expect(want.traits.country?.description == "DE")
        #expect(want.traits.region?.description == "DE-BE")
        #expect(want.traits.category == .hosting)
        #expect(want.traits.reputation == .high)
        #expect(want.traits.tags == ["a", "b"])
        #expect(try LeaseWant(parsing: "1").traits == .unknown)
        for (bad, named) in [("0", "1 to 64"), ("x", "start with the number"), ("1,color=red", "'color=red'"), ("1,country=Germany", "Germany"),
                             ("1,country=DE,region=US-CA", "US-CA")] {
            #expect(throws: AgentError.self, "\(bad)") { try LeaseWant(parsing: bad) }
            do { _ = try LeaseWant(parsing: bad) } catch { #expect(error.description.contains(named), "\(error)") }
        }
    }

    @Test("a token the allocator refuses stops the agent at start, with an error naming --token")
    func refusedToken() async throws {
        try await withAllocator { _, client in
            let settings = HostAgent.Settings(wants: [try traits("1")], leaseTime: .seconds(30))
            let refused = HostAgent(client: try AllocatorClient(base: client.base, token: "not-this-host's-token"), settings: settings, use: { _ in }, logger: Self.quiet)
            do {
                try await refused.start()
                Issue.record("start accepted a token the allocator refuses")
            } catch {
                #expect("\(error)".contains("HTTP 40") && "\(error)".contains("--token"), "\(error)")
            }
            let agent = HostAgent(client: client, settings: settings, use: { _ in }, logger: Self.quiet)
            try await agent.start()
            #expect(await agent.slices.count == 1)
            await agent.releaseAll()
        }
    }

    @Test("slices the proxy could not take are offered to it again on the next pass")
    func refusedUseIsRetried() async throws {
        try await withAllocator { _, client in
            let uses = Uses()
            let refuseNext = Mutex(true)
            let agent = HostAgent(client: client, settings: HostAgent.Settings(wants: [try traits("1")], leaseTime: .seconds(30)), use: { held in
                if refuseNext.withLock({ refuse in defer { refuse = false }; return refuse }) { throw AgentError("out of descriptors") }
                uses.record(held)
            }, logger: Self.quiet)
            await agent.refresh()
            #expect(uses.all.isEmpty)
            let held = await agent.slices
            #expect(held.count == 1)
            await agent.refresh()
            #expect(uses.last == held, "the slice refused once was not offered again")
            await agent.releaseAll()
        }
    }

    @Test("acquires each want from the closest class, with the addresses' traits; renews; releases on stop")
    func acquiresRenewsReleases() async throws {
        try await withAllocator { store, client in
            let uses = Uses()
            let settings = HostAgent.Settings(wants: [try traits("2,country=US,category=residential"), try traits("1,country=DE")], leaseTime: .seconds(30))
            let agent = HostAgent(client: client, settings: settings, use: { uses.record($0) }, logger: Self.quiet)
            await agent.refresh()
            let held = await agent.slices
            #expect(held.count == 3)
            #expect(held.filter { $0.traits.country?.description == "US" && $0.traits.category == .residential }.count == 2)
            #expect(held.filter { $0.slice.address == IPv4Address(192, 0, 2, 20) && $0.traits.category == .hosting }.count == 1)
            #expect(Set(uses.last) == Set(held))
            // The store agrees, and the leases run for the lease time asked for.
            let stored = try await store.leases(of: "h1")
            #expect(Set(stored.map(\.id)) == Set(held.map(\.leaseID)))
            for lease in stored { #expect(lease.expires.milliseconds - lease.start.milliseconds == 30_000) }
            // A renewal round keeps the same leases and extends them.
            let before = stored.map(\.expires).max()!
            try await Task.sleep(for: .milliseconds(20))
            _ = await agent.contactAllocator()
            #expect(Set(await agent.slices) == Set(held))
            #expect(try await store.leases(of: "h1").map(\.expires).min()! > before)
            // Stopping releases them: the allocator holds nothing for h1 and the proxy is told none.
            await agent.releaseAll()
            #expect(try await store.leases(of: "h1").isEmpty)
            #expect(uses.last.isEmpty)
        }
    }

    @Test("a lease the allocator no longer lists is dropped at once (before anything else changes) and replaced")
    func dropsLostLeases() async throws {
        try await withAllocator { store, client in
            let uses = Uses()
            let agent = HostAgent(client: client, settings: HostAgent.Settings(wants: [try traits("2,country=US")], leaseTime: .seconds(30)),
                                  use: { uses.record($0) }, logger: Self.quiet)
            await agent.refresh()
            let first = await agent.slices
            #expect(first.count == 2)
            let lost = first[0]
            try await store.release(lost.leaseID, host: "h1", now: .current)
            _ = await agent.contactAllocator()
            await agent.refresh()
            let now = await agent.slices
            #expect(now.count == 2)
            #expect(!now.contains(lost))
            // The proxy heard of the loss alone first (only the kept slice), then of the replacement.
            let calls = uses.all
            #expect(calls.count == 3)
            #expect(calls[1] == [first[1]])
            #expect(Set(calls[2]) == Set(now))
            #expect(try await store.leases(of: "h1").count == 2)
        }
    }

    @Test("a restarted agent adopts the leases it already holds instead of taking more, and releases those no want covers")
    func adoptsExistingLeases() async throws {
        try await withAllocator { store, client in
            let settings = HostAgent.Settings(wants: [try traits("1,country=US"), try traits("1,country=DE")], leaseTime: .seconds(30))
            let first = HostAgent(client: client, settings: settings, use: { _ in }, logger: Self.quiet)
            await first.refresh()
            let held = Set(await first.slices)
            let second = HostAgent(client: client, settings: settings, use: { _ in }, logger: Self.quiet)
            await second.refresh()
            #expect(Set(await second.slices) == held)
            #expect(try await store.leases(of: "h1").count == 2)
            // Restarted wanting less: it keeps what a want still covers and releases the rest.
            let third = HostAgent(client: client, settings: HostAgent.Settings(wants: [try traits("1,country=DE")], leaseTime: .seconds(30)),
                                  use: { _ in }, logger: Self.quiet)
            await third.refresh()
            let kept = await third.slices
            #expect(kept.count == 1 && kept.first?.traits.country?.description == "DE")
            #expect(try await store.leases(of: "h1").map(\.id) == kept.map(\.leaseID))
        }
    }

    @Test("while the allocator cannot be reached, leases (slices and prefixes alike) are kept until their deadline, never beyond")
    func keepsLeasesThroughAnOutageUntilTheyExpire() async throws {
        let uses = Uses()
        let logs = RecordedLog()
        // Leases from a live allocator, then the allocator goes away.
        let agent = Mutex<HostAgent?>(nil)
        try await withAllocator(prefixes: true) { _, client in
            let created = HostAgent(client: client, settings: HostAgent.Settings(wants: [try traits("1")], leaseTime: .seconds(10), retryInterval: .milliseconds(200)),
                                    use: { uses.record($0) }, logger: logs.logger)
            await created.refresh()
            // A machine busy with other tests can let the first request outlast its 2.5 s;
            // this test is about the outage, so the lease is asked for until it is held.
            for _ in 0..<10 {
                let slices = await created.slices, prefixes = await created.prefixes
                guard slices.isEmpty || prefixes.isEmpty else { break }
                _ = await created.contactAllocator()
                await created.refresh()
            }
            agent.withLock { $0 = created }
        }
        let running = try #require(agent.withLock { $0 })
        #expect(await running.slices.count == 1)
        #expect(await running.prefixes.count == 1)
        let outage = ContinuousClock.now
        let task = Task { await running.run() }
        defer { task.cancel() }
        // Within the lease time the slice stays in use.
        try await Task.sleep(for: .seconds(5))
        #expect(await running.slices.count == 1)
        #expect(uses.last.count == 1)
        #expect(await running.prefixes.count == 1 && uses.lastPrefixes.count == 1)
        // At the deadline (at most the lease time after the last renewal was sent) it is gone.
        // (The two were acquired by two requests, so their deadlines may differ by those.)
        while ContinuousClock.now - outage < .seconds(12) {
            let slices = await running.slices, prefixes = await running.prefixes
            if slices.isEmpty && prefixes.isEmpty { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        let dropped = ContinuousClock.now - outage
        #expect(await running.slices.isEmpty)
        #expect(uses.last.isEmpty)
        // The prefix was renewed by the same requests, so it shares the slice's deadline.
        #expect(await running.prefixes.isEmpty)
        #expect(uses.lastPrefixes.isEmpty)
        // The agent's own deadline is earlier (the last renewal was sent before the outage);
        // what the test adds is its polling (50 ms) and a busy machine's scheduling.
        #expect(dropped <= .milliseconds(10_300), "dropped \(dropped) after the outage began")
        #expect(logs.messages.contains { $0.contains("cannot renew leases") })
        #expect(logs.messages.contains { $0.contains("expired without renewal") })
        // An outage beginning and a lease expiring are warnings, with the lease as metadata.
        #expect(logs.entries.contains { $0.level == .warning && $0.message.contains("cannot renew leases") })
        #expect(logs.entries.contains { $0.level == .warning && $0.message.contains("expired without renewal") && $0.metadata["lease"] != nil })
    }
}

extension HostAgentTests {
    @Test("leases one IPv6 prefix per want from the closest pool prefix, renews it with the slices, adopts it after a restart, keeps it on stop (slices are released)")
    func leasesPrefixes() async throws {
        try await withAllocator(prefixes: true) { store, client in
            let uses = Uses()
            let settings = HostAgent.Settings(wants: [try traits("2,country=US,category=residential"), try traits("1,country=DE")], leaseTime: .seconds(30))
            let agent = HostAgent(client: client, settings: settings, use: { uses.record($0) }, logger: Self.quiet)
            await agent.refresh()
            let held = await agent.prefixes
            #expect(held.count == 2)
            #expect(await agent.slices.count == 3)
            let us = try #require(held.first { Self.usPrefixes.contains($0.prefix.network) }), de = try #require(held.first { Self.dePrefixes.contains($0.prefix.network) })
            #expect(us.prefix.length == 64 && de.prefix.length == 64)
            #expect(us.traits.country?.description == "US" && us.traits.category == .residential)
            #expect(de.traits.country?.description == "DE" && de.traits.category == .hosting)
            #expect(uses.lastPrefixes == held)
            let stored = try await store.prefixLeases(of: "h1")
            #expect(Set(stored.map(\.id)) == Set(held.map(\.leaseID)))
            for lease in stored { #expect(lease.expires.milliseconds - lease.start.milliseconds == 30_000) }

            // The one renewal request extends the prefixes too, and takes no more.
            let before = stored.map(\.expires).min()!
            try await Task.sleep(for: .milliseconds(20))
            _ = await agent.contactAllocator()
            #expect(await agent.prefixes == held)
            #expect(try await store.prefixLeases(of: "h1").map(\.expires).min()! > before)

            // A restart adopts them instead of leasing more; wanting less releases the rest.
            let second = HostAgent(client: client, settings: settings, use: { _ in }, logger: Self.quiet)
            await second.refresh()
            #expect(await second.prefixes == held)
            #expect(try await store.prefixLeases(of: "h1").count == 2)
            let third = HostAgent(client: client, settings: HostAgent.Settings(wants: [try traits("1,country=DE")], leaseTime: .seconds(30)),
                                  use: { _ in }, logger: Self.quiet)
            await third.refresh()
            #expect(await third.prefixes == [de])
            #expect(try await store.prefixLeases(of: "h1").map(\.id) == [de.leaseID])

            // A prefix the allocator no longer lists is dropped at the next renewal and replaced.
            try await store.releasePrefix(de.leaseID, host: "h1", now: .current)
            _ = await third.contactAllocator()
            let replaced = await third.prefixes
            #expect(replaced.count == 1 && replaced.first?.leaseID != de.leaseID)

            // A graceful stop releases the slices; the prefix stays leased until it expires, for
            // the next run to adopt (clients keep their IPv6 addresses across a restart).
            await third.releaseAll()
            #expect(try await store.prefixLeases(of: "h1").map(\.id) == replaced.map(\.leaseID))
            #expect(try await store.leases(of: "h1").isEmpty)
            let fourth = HostAgent(client: client, settings: HostAgent.Settings(wants: [try traits("1,country=DE")], leaseTime: .seconds(30)),
                                   use: { _ in }, logger: Self.quiet)
            await fourth.refresh()
            #expect(await fourth.prefixes == replaced)
        }
    }

    @Test("an allocator without prefixes: slices are leased, the missing prefix is told once per round as a notice, and it is no outage")
    func allocatorWithoutPrefixes() async throws {
        let logs = RecordedLog()
        try await withAllocator { store, client in
            let agent = HostAgent(client: client, settings: HostAgent.Settings(wants: [try traits("1,country=US"), try traits("1,country=DE")], leaseTime: .seconds(30)),
                                  use: { _ in }, logger: logs.logger)
            try await agent.start()
            #expect(await agent.slices.count == 2)
            #expect(await agent.prefixes.isEmpty)
            func told() -> [RecordedLog.Entry] { logs.entries.filter { $0.message.hasPrefix("no IPv6 prefix for ") } }
            #expect(told().count == 1)
            #expect(told().first?.level == .notice)
            #expect(told().first?.message.contains("US") == true && told().first?.message.contains("DE") == true, "\(told())")
            _ = await agent.contactAllocator()
            #expect(told().count == 2)
            #expect(!logs.messages.contains { $0.contains("cannot renew leases") || $0.contains("cannot acquire") }, "\(logs.messages)")

            // Prefixes added to the pool are leased at the next round.
            try await store.add(PoolPrefix(prefix: Self.dePrefixes, traits: try Traits(country: CountryCode(parsing: "DE"), category: .hosting)))
            _ = await agent.contactAllocator()
            #expect(await agent.prefixes.count == 2, "both wants take the one class there is")
            await agent.releaseAll()
        }
    }
}

extension HostAgentTests {
    @Test("a held prefix is routed to lo before the proxy hears of it, and unrouted only after the proxy let it go (root)",
          .enabled(if: geteuid() == 0, "needs root for network namespaces"))
    func prefixRouteOrder() async throws {
        let namespace = "portslice-agent-test6"  // not psl-: `lab down` removes those
        _ = try? SystemTool.run("ip", ["netns", "del", namespace])
        _ = try SystemTool.run("ip", ["netns", "add", namespace])
        defer { _ = try? SystemTool.run("ip", ["netns", "del", namespace]) }
        _ = try SystemTool.run("ip", ["link", "set", "lo", "up"], in: namespace)
        @Sendable func routed() -> [String] {
            ((try? SystemTool.run("ip", ["-6", "route", "show", "table", "local", "type", "local", "dev", "lo"], in: namespace)) ?? "")
                .split(separator: "\n").compactMap { $0.split(separator: " ").dropFirst().first.map(String.init) }.filter { $0.hasPrefix("2001:db8:") }
        }
        /// Each time the proxy is told: the prefixes it may send from, and the routes on lo then.
        let told = Mutex<[(prefixes: [String], routes: [String])]>([])
        try await withAllocator(prefixes: true) { store, client in
            let agent = HostAgent(client: client, settings: HostAgent.Settings(wants: [try traits("1,country=DE")], leaseTime: .seconds(30)),
                                  network: HostNetworkSetup(namespace: namespace), use: { held in
                told.withLock { $0.append((held.prefixes.map { "\($0.prefix)" }, routed())) }
            }, logger: Self.quiet)
            await agent.refresh()
            let prefix = try #require(await agent.prefixes.first)
            #expect(routed() == ["\(prefix.prefix)"])
            #expect(told.withLock { $0.last?.prefixes } == ["\(prefix.prefix)"])
            #expect(told.withLock { $0.last?.routes } == ["\(prefix.prefix)"], "the proxy heard of the prefix before its route was there")

            // The allocator takes it back: the proxy lets it go while the route is still there,
            // then the route goes; the replacement is routed before the proxy hears of it.
            try await store.releasePrefix(prefix.leaseID, host: "h1", now: .current)
            _ = await agent.contactAllocator()
            await agent.refresh()
            let replacement = try #require(await agent.prefixes.first)
            #expect(replacement.leaseID != prefix.leaseID)
            let calls = told.withLock { $0 }
            let withdrawn = try #require(calls.first { $0.prefixes.isEmpty })
            #expect(withdrawn.routes.contains("\(prefix.prefix)"), "the route went before the proxy let the prefix go: \(calls)")
            #expect(calls.last?.prefixes == ["\(replacement.prefix)"] && calls.last?.routes == ["\(replacement.prefix)"], "\(calls)")
            #expect(routed() == ["\(replacement.prefix)"])

            await agent.releaseAll()
            #expect(routed().isEmpty)
            #expect(told.withLock { $0.last?.prefixes } == [])
        }
    }
}

/// Every message a logger was given, with its level and metadata, in order.
final class RecordedLog: Sendable {
    struct Entry: Sendable {
        let level: Logger.Level
        let message: String
        let metadata: Logger.Metadata
    }

    private let recorded = Mutex<[Entry]>([])

    var entries: [Entry] { recorded.withLock { $0 } }
    var messages: [String] { entries.map(\.message) }

    /// A logger (at trace level) whose messages are kept here.
    var logger: Logger {
        var logger = Logger(label: "portslice.agent.test") { _ in Handler(sink: self) }
        logger.logLevel = .trace
        return logger
    }

    struct Handler: LogHandler {
        let sink: RecordedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let entry = Entry(level: event.level, message: event.message.description, metadata: metadata.merging(event.metadata ?? [:]) { $1 })
            sink.recorded.withLock { $0.append(entry) }
        }
    }
}

/// The host setup in a network namespace of its own (root): addresses on its loopback, the
/// prefixes' routes and the guard's nftables table follow the held leases. One namespace
/// name, so one test at a time.
@Suite("host setup in a network namespace (root)", .serialized, .enabled(if: geteuid() == 0, "needs root for network namespaces and nftables (CI runs as root)"))
struct HostNetworkSetupTests {
    static let namespace = "portslice-agent-test"  // not psl-: `lab down` removes those

    func inNamespace(_ arguments: [String]) throws -> String {
        try SystemTool.run(arguments[0], Array(arguments.dropFirst()), in: Self.namespace)
    }

    /// A new namespace (one left by an earlier run is removed first) with loopback up, and the
    /// host setup that changes it.
    func freshSetup() throws -> HostNetworkSetup {
        Self.removeNamespace()
        _ = try SystemTool.run("ip", ["netns", "add", Self.namespace])
        _ = try inNamespace(["ip", "link", "set", "lo", "up"])
        return HostNetworkSetup(namespace: Self.namespace)
    }

    static func removeNamespace() { _ = try? SystemTool.run("ip", ["netns", "del", namespace]) }

    func held(_ id: Int64, _ text: String, index: Int) throws -> HeldSlice {
        HeldSlice(leaseID: id, host: "h1", slice: try EgressSlice(parsing: text), index: index, traits: .unknown)
    }

    @Test("addresses join lo with their first slice and leave with their last; the guard allows exactly the held ports")
    func followsHeldSlices() async throws {
        defer { Self.removeNamespace() }
        let setup = try freshSetup()
        let first = try held(1, "192.0.2.10:20000-20999", index: 0), second = try held(2, "192.0.2.10:21000-21999", index: 1)

        try await setup.apply([first])
        #expect(try inNamespace(["ip", "-4", "-o", "address", "show", "dev", "lo"]).contains("192.0.2.10/32"))
        var guardTable = try inNamespace(["nft", "list", "set", "ip", "portslice_guard", "owned"])
        #expect(guardTable.contains("192.0.2.10 . 20000-20999"), "\(guardTable)")

        // The first slice lost, another of the same address held: the address stays, the guard
        // moves to the new ports only.
        try await setup.apply([second])
        #expect(try inNamespace(["ip", "-4", "-o", "address", "show", "dev", "lo"]).contains("192.0.2.10/32"))
        guardTable = try inNamespace(["nft", "list", "set", "ip", "portslice_guard", "owned"])
        #expect(guardTable.contains("192.0.2.10 . 21000-21999") && !guardTable.contains("20000-20999"), "\(guardTable)")

        // Nothing held: the address goes, and the guard still knows it as shared, so a socket
        // left bound to it sends nothing.
        try await setup.apply([])
        #expect(try !inNamespace(["ip", "-4", "-o", "address", "show", "dev", "lo"]).contains("192.0.2.10"))
        let shared = try inNamespace(["nft", "list", "set", "ip", "portslice_guard", "shared"])
        #expect(shared.contains("192.0.2.10"), "\(shared)")
        #expect(try !inNamespace(["nft", "list", "set", "ip", "portslice_guard", "owned"]).contains("192.0.2.10"))

        try await setup.remove()
        #expect(try !inNamespace(["nft", "list", "tables"]).contains("portslice_guard"))
    }

    @Test("a prefix route that cannot be added fails the change before the guard moves; the next change adds it, and it leaves with its lease")
    func prefixRouteFailureAndRecovery() async throws {
        defer { Self.removeNamespace() }
        let setup = try freshSetup()
        let first = try held(1, "192.0.2.10:20000-20999", index: 0), second = try held(2, "192.0.2.11:21000-21999", index: 1)
        let prefix = try #require(IPv6Prefix("2001:db8:100:7::/64"))
        func localRoutes() throws -> String { try inNamespace(["ip", "-6", "route", "show", "table", "local", "dev", "lo"]) }
        func owned() throws -> String { try inNamespace(["nft", "list", "set", "ip", "portslice_guard", "owned"]) }
        func ipv6(disabled: Bool) throws {
            _ = try inNamespace(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=\(disabled ? 1 : 0)", "net.ipv6.conf.lo.disable_ipv6=\(disabled ? 1 : 0)"])
        }
        try await setup.apply([first])

        // With IPv6 off on lo the route cannot be added: the change fails naming the prefix and
        // the kernel's reason, and the guard still allows only what it allowed before.
        try ipv6(disabled: true)
        let failure = await #expect(throws: AgentError.self) { try await setup.apply([first, second], prefixes: [prefix]) }
        #expect(failure?.description.contains("cannot route 2001:db8:100:7::/64 to lo") == true, "\(String(describing: failure))")
        #expect(failure?.description.contains("IPv6 is disabled") == true, "\(String(describing: failure))")
        var guardTable = try owned()
        #expect(guardTable.contains("192.0.2.10 . 20000-20999") && !guardTable.contains("21000-21999"), "\(guardTable)")

        // The same change once IPv6 is back: the route and the new slice's ports are in place.
        try ipv6(disabled: false)
        try await setup.apply([first, second], prefixes: [prefix])
        let routed = try localRoutes()
        #expect(routed.contains("local 2001:db8:100:7::/64 "), "\(routed)")
        guardTable = try owned()
        #expect(guardTable.contains("192.0.2.10 . 20000-20999") && guardTable.contains("192.0.2.11 . 21000-21999"), "\(guardTable)")

        // The prefix lost: its route leaves lo, and one removed by someone else meanwhile is no error.
        try await setup.apply([first], prefixes: [])
        let unrouted = try localRoutes()
        #expect(!unrouted.contains("2001:db8:100:7::"), "\(unrouted)")
        try await setup.apply([first], prefixes: [prefix])
        _ = try inNamespace(["ip", "-6", "route", "del", "local", "2001:db8:100:7::/64", "dev", "lo", "table", "local"])
        try await setup.remove()
        #expect(try !localRoutes().contains("2001:db8:100:7::"))
    }
}
