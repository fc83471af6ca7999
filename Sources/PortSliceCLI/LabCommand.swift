import ArgumentParser
import Foundation
import PortSliceCore
import PortSliceEdge
import PortSliceLab
import PortSliceSockets

/// `portslice lab`: a testbed in network namespaces that checks the whole path end to end.
struct LabCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lab",
        abstract: "Build a testbed in network namespaces (documentation prefixes only), run end-to-end checks through it, or compare with stateful NAT (root).",
        discussion: """
            The lab: N hosts sharing M addresses (203.0.113.10 and up, on their loopback), an \
            edge in front of them, an "internet" namespace with TCP, UDP and HTTP echo servers, \
            and a "far" namespace behind a 1280-byte link that draws ICMP fragmentation-needed.

              portslice lab up --hosts 3 --addresses 1
              portslice lab run
              portslice lab down
            """,
        subcommands: [LabUp.self, LabRun.self, LabDown.self, LabBench.self]
    )
}

/// The lab's size, shared by `up`, `run` and `bench`.
struct LabSize: ParsableArguments {
    @Option(help: "Hosts behind the edge.")
    var hosts = 3

    @Option(help: "Shared addresses the hosts carry.")
    var addresses = 1

    func topology() throws -> LabTopology {
        do { return try LabTopology(hosts: hosts, addresses: addresses) } catch { throw ValidationError(error.description) }
    }

    func validate() throws { _ = try topology() }
}

func requireRoot(_ what: String) throws {
    let needed = [HostNetwork.Capability.netAdmin, .sysAdmin]
    let held = (try? HostNetwork.effectiveCapabilities()) ?? 0
    guard needed.allSatisfy({ held & (1 << UInt64($0.rawValue)) != 0 }) else {
        throw CommandFailure("\(what) creates network namespaces and nftables rules, which needs root; run it with sudo")
    }
}

struct LabUp: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "up", abstract: "Build the lab's namespaces, links, addresses and routes.")

    @OptionGroup var size: LabSize

    func run() async throws {
        try requireRoot("lab up")
        let topology = try size.topology()
        try topology.build()
        print("lab up: \(topology.namespaces.joined(separator: ", ")); shared \(topology.sharedAddresses.map(\.description).joined(separator: ", "))")
    }
}

struct LabDown: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "down", abstract: "Remove the lab: every psl-* namespace and what is in it.")

    func run() async throws {
        try requireRoot("lab down")
        let before = LabTopology.existingNamespaces()
        let left = LabTopology.tearDown()
        guard left.isEmpty else { throw CommandFailure("lab down: could not remove \(left.joined(separator: ", ")); processes may still hold them (`ip netns pids NAME`)") }
        print("lab down: removed \(before.count) namespace(s); nothing left behind")
    }
}
