import ArgumentParser
import Foundation
import Logging
import PortSliceCore
import PortSliceEdge
import PortSliceStore

/// `portslice edge`: return-path steering on the router in front of the hosts, or the guard on
/// one host.
struct EdgeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edge",
        abstract: "Steer packets for shared addresses to the host owning their port (nftables + policy routing, no conntrack), or guard one host.",
        discussion: """
            Runs on the router in front of the hosts. It follows the allocator's slice table \
            (long polls with an edge token from `portslice edges add`) or a JSON file of the same \
            form, and applies each \
            change as one nftables transaction: a table that is malformed, conflicts with itself \
            or that nft refuses leaves the rules in force. Changes made by others to its table \
            or routes are undone every --reconcile seconds. On SIGTERM or SIGINT it removes its \
            own table and routes, and nothing else. The router needs forwarding on and rp_filter \
            off or loose.

            IPv6 prefixes the allocator leases are routed whole, one route per lease in routing \
            table 53000 (looked up by an ip -6 rule at priority 28000), via the IPv6 next hop \
            given as --host NAME=IPV4,IPV6; prefixes in quarantine, and those of a host without \
            an IPv6 next hop here, are dropped. Packets of the prefixes bypass connection \
            tracking (nftables table ip6 portslice_edge6, changed in the same transaction).

            With --host-guard NAME it runs on host NAME instead, with that host's own token (it \
            sees only the host's slices): packets leaving from a shared address with a source \
            port outside NAME's slices are dropped and counted.

            Examples:
              portslice edge --server https://10.0.0.5:7300 --ca ca.pem --token EDGE-TOKEN --host proxy-1=192.0.2.2,2001:db8:ffff:1::2 --host proxy-2=192.0.2.6
              portslice edge render --table slices.json --host proxy-1=192.0.2.2
              portslice edge --host-guard proxy-1 --server https://10.0.0.5:7300 --ca ca.pem --token HOST-TOKEN
            """,
        subcommands: [EdgeRun.self, EdgeRender.self],
        defaultSubcommand: EdgeRun.self
    )
}

/// Where the table comes from and what to program; shared by `edge run` and `edge render`.
struct EdgeOptions: ParsableArguments {
    @OptionGroup var server: ServerOptions

    @Option(help: ArgumentHelp("Read the slice table from this JSON file (the form GET /v1/slices answers) instead of the allocator; it is watched for changes.", valueName: "file"))
    var table: String?

    @Option(name: .customLong("host"), help: ArgumentHelp("A host and the next hop that reaches it, NAME=IPV4, or NAME=IPV4,IPV6 for a host that leases IPv6 prefixes; repeat for each host.", valueName: "name=address"))
    var hosts: [String] = []

    @Option(help: ArgumentHelp("Guard host NAME instead of steering: drop and count packets from shared addresses whose source port is outside NAME's slices.", valueName: "name"))
    var hostGuard: String?

    func validate() throws {
        if hostGuard != nil && !hosts.isEmpty {
            throw ValidationError("--host-guard programs one host and takes no --host next hops; run them as two commands")
        }
        if hostGuard == nil && hosts.isEmpty {
            throw ValidationError("name the hosts behind this edge with --host NAME=ADDRESS (one per host), or pass --host-guard NAME on a host")
        }
        _ = try role()
    }

    func role() throws -> EdgeRole {
        if let hostGuard { return .hostGuard(host: hostGuard) }
        var nextHops: [String: IPv4Address] = [:], nextHops6: [String: IPv6Address] = [:]
        for pair in hosts {
            let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
            let addresses = parts.count == 2 ? parts[1].split(separator: ",", omittingEmptySubsequences: false).map(String.init) : []
            guard parts.count == 2, !parts[0].isEmpty, (1...2).contains(addresses.count), let address = try? IPv4Address(parsing: addresses[0]) else {
                throw ValidationError("--host '\(pair)' is not NAME=IPV4 or NAME=IPV4,IPV6 with an IPv4 next hop first, e.g. proxy-1=192.0.2.2 or proxy-1=192.0.2.2,2001:db8:ffff:1::2")
            }
            if addresses.count == 2 {
                guard let address6 = try? IPv6Address(parsing: addresses[1]) else {
                    throw ValidationError("--host '\(pair)': '\(addresses[1])' is not an IPv6 next hop, e.g. proxy-1=192.0.2.2,2001:db8:ffff:1::2")
                }
                nextHops6[parts[0]] = address6
            }
            guard nextHops.updateValue(address, forKey: parts[0]) == nil else {
                throw ValidationError("--host names '\(parts[0])' twice; give each host one --host")
            }
        }
        return .edge(hosts: try EdgeHost.numbered(nextHops, ipv6: nextHops6))
    }

    func source() throws -> any SliceTableSource {
        if let table { return SliceTableFile(path: table) }
        return AllocatorSliceTable(client: try server.client())
    }
}

struct EdgeRun: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Follow the slice table and keep the kernel's rules in step (the default).")

    @OptionGroup var options: EdgeOptions

    @Option(help: ArgumentHelp("Seconds between checks that the rules in force are still ours.", valueName: "seconds"))
    var reconcile: Double = 5

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        guard reconcile >= 0.1 && reconcile <= 3600 else {
            throw ValidationError("--reconcile \(reconcile) is out of range; give 0.1 to 3600 seconds")
        }
    }

    func run() async throws {
        let role = try options.role()
        let logger = try logging.bootstrap("portslice.edge")
        if case .edge(let hosts) = role { try Self.checkForwarding(ipv6: hosts.contains { $0.nextHop6 != nil }, logger: logger) }
        let service = EdgeService(
            controller: EdgeController(role: role),
            source: try options.source(),
            reconcileInterval: .milliseconds(Int(reconcile * 1000)),
            logger: logger
        )
        try await runDaemon([service], logger: logger)
    }

    /// The kernel must forward, and strict reverse-path filtering would drop the hosts' packets
    /// (their source, a shared address, routes nowhere without a mark).
    static func checkForwarding(ipv6: Bool, logger: Logger) throws {
        func sysctl(_ name: String) -> String? {
            (try? String(contentsOfFile: "/proc/sys/net/ipv4/\(name)", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        guard sysctl("ip_forward") == "1" else {
            throw CommandFailure("this machine does not forward IPv4; run `sysctl -w net.ipv4.ip_forward=1` first")
        }
        if ipv6, (try? String(contentsOfFile: "/proc/sys/net/ipv6/conf/all/forwarding", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) != "1" {
            throw CommandFailure("hosts have IPv6 next hops but this machine does not forward IPv6; run `sysctl -w net.ipv6.conf.all.forwarding=1` first")
        }
        for scope in ["all", "default"] where sysctl("conf/\(scope)/rp_filter") == "1" {
            logger.warning("net.ipv4.conf.\(scope).rp_filter is 1 (strict), which drops hosts' packets from shared addresses; set it to 0 or 2")
        }
    }
}

struct EdgeRender: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "render", abstract: "Print the nftables script the edge would apply now, for review; changes nothing.")

    @OptionGroup var options: EdgeOptions

    func run() async throws {
        let table = try await options.source().next(applied: nil)
        let rendering = try options.role().render(table)
        rendering.warnings.forEach { printToStandardError("warning: \($0)") }
        print(rendering.script, terminator: "")
        // The prefix routes go through ip, not nft: shown as comments, in `ip -6 -batch` form.
        for route in rendering.prefixRoutes { print("# ip -6 \(route.command)") }
    }
}
