import ArgumentParser

/// `portslice`: the root of the command tree; each subcommand lives in its own file.
public struct PortSliceCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "portslice",
        abstract: "Share scarce IPv4 egress addresses among many hosts by slicing their port space.",
        discussion: """
            Each host owns a slice of an address's ports and sends from it directly; an edge in \
            front of the hosts returns traffic to the owner by destination port. No stateful NAT.
            """,
        version: "0.1.0",
        subcommands: [PlanCommand.self, GeofeedCommand.self, LookupCommand.self, DoctorCommand.self, ConnectCommand.self, BenchCommand.self]
    )

    public init() {}
}
