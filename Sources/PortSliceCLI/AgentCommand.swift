import ArgumentParser
import Foundation
import Logging
import PortSliceAgent
import PortSliceAPI
import PortSliceCore
import PortSliceProxy
import PortSliceSockets
import ServiceLifecycle

/// `portslice agent`: the host agent and the egress proxy it feeds.
struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Run the host agent: lease slices from the allocator and serve the egress proxy from them.",
        discussion: """
            The agent registers with the allocator by this host's token (from `portslice hosts \
            add`), keeps the slices each --want asks for and, when the allocator leases IPv6 \
            prefixes, one prefix per --want; renews them all every third of the lease time \
            (give or take a fifth), and serves the proxy (SOCKS5 and HTTP, as `portslice \
            proxy`) from the slices and prefixes it holds now (each client leaves from an \
            address of its own in a prefix, picked by --address-key); the traits come with the \
            leases. A lease the allocator no longer lists, or whose lease time runs out while \
            the allocator cannot be reached, is used for no new flow from that moment and its \
            open flows are closed; until then an outage changes nothing.

            As root it also puts each shared address on lo while it holds a slice there, routes \
            each prefix it holds to lo (ip -6 route add local PREFIX dev lo), and applies the \
            host guard (nftables table portslice_guard: nothing leaves from a port \
            of a shared address that this host does not hold); --no-host-setup leaves both to \
            the operator. On SIGTERM or SIGINT it stops gracefully: the proxy closes first, then \
            the agent releases its slices and undoes what it set up; prefix leases are kept \
            until they expire, so an agent started again adopts them and clients keep their \
            IPv6 addresses.

            Example:
              portslice agent --server http://10.0.0.1:7300 --token $HOST_TOKEN --want 2,country=DE,category=residential --want 1
            """
    )

    @OptionGroup var server: ServerOptions

    @Option(name: .customLong("want"), help: ArgumentHelp(
        "Slices to hold, COUNT[,KEY=VALUE...] with keys country, region, city, category, reputation, tag; repeat for several classes.",
        valueName: "want"))
    var wants: [String] = ["1"]

    @Option(help: ArgumentHelp("Lease time asked for, 10 to 86400 seconds; leases are renewed every third of it.", valueName: "seconds"))
    var leaseTime: Int64 = 60

    @Flag(help: "Do not put shared addresses on lo, route prefixes to lo, nor apply the host guard (all need root).")
    var noHostSetup = false

    @OptionGroup var proxy: ProxyOptions

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        guard (10...86_400).contains(leaseTime) else { throw ValidationError("--lease-time \(leaseTime) is out of range; give 10 to 86400 seconds") }
        for want in wants {
            do { _ = try LeaseWant(parsing: want) } catch { throw ValidationError("--want \(error)") }
        }
    }

    func run() async throws {
        let settings = HostAgent.Settings(wants: try wants.map { try LeaseWant(parsing: $0) }, leaseTime: .seconds(leaseTime))
        let client = try server.client()
        // The proxy reads the users file only once the first leases are in; a file it would
        // refuse (a plain-text password) stops the agent before it leases anything.
        _ = try proxy.userTable()
        let logger = try logging.bootstrap("portslice.agent")
        let network: HostNetworkSetup?
        if noHostSetup {
            network = nil
        } else if ((try? HostNetwork.effectiveCapabilities()) ?? 0) & (1 << UInt64(HostNetwork.Capability.netAdmin.rawValue)) != 0 {
            network = HostNetworkSetup()
        } else {
            logger.warning("without CAP_NET_ADMIN (root), shared addresses are not put on lo, prefixes are not routed to lo and no host guard is applied; configure them yourself or run as root")
            network = nil
        }
        let agent = AgentService(client: client, settings: settings, network: network, proxy: proxy, logger: logger)
        try await runDaemon([agent], logger: logger)
    }
}

/// A host agent feeding a proxy in one process, as a service: the first round with the
/// allocator, then the proxy (once the first leases are in) and the agent's loop as services of
/// their own, until graceful shutdown. They stop in reverse order of starting: the proxy
/// closes first, then the agent's loop stops and its leases are released.
struct AgentService: Service, CustomStringConvertible {
    let client: AllocatorClient
    let settings: HostAgent.Settings
    let network: HostNetworkSetup?
    let proxy: ProxyOptions
    var allowLoopback = false
    /// For the agent; the proxy logs as `portslice.proxy`, at the same level.
    let logger: Logger

    /// Names the service in the group's logs (and never shows the host's token).
    var description: String { "agent of \(client.base) with its proxy" }

    func run() async throws {
        let egress = EgressSlices(), prefixes = EgressPrefixes()
        let agent = HostAgent(client: client, settings: settings, network: network, use: { held in
            try egress.replace(with: held.slices.map { ($0.slice, $0.traits) })
            prefixes.replace(with: held.prefixes.map { ($0.prefix, $0.traits) })
        }, logger: logger)
        try await agent.start()
        var proxyLogger = Logger(label: "portslice.proxy")
        proxyLogger.logLevel = logger.logLevel
        // The group inherits this service's graceful shutdown (and cancellation); it traps no
        // signals itself. A proxy that cannot start cancels the lease keeper, which still
        // releases the leases.
        let services: [any Service] = [
            LeaseKeeper(agent: agent),
            ProxyService(options: proxy, slices: egress, prefixes: prefixes, prefixesMayCome: true, allowLoopback: allowLoopback, logger: proxyLogger),
        ]
        try await ServiceGroup(services: services, logger: logger).run()
    }
}

/// The agent's loop as a service: keeps the leases until graceful shutdown (or cancellation),
/// then releases them all and undoes the host setup.
struct LeaseKeeper: Service, CustomStringConvertible {
    let agent: HostAgent

    var description: String { "lease keeper" }

    func run() async {
        await cancelWhenGracefulShutdown { [agent] in await agent.run() }
        // Released even when the group was cancelled (the proxy failed to start, or shutdown
        // ran out of time): a task of its own, awaited here, does not inherit the cancellation
        // that would abort the requests to the allocator.
        await Task { [agent] in await agent.releaseAll() }.value
    }
}
