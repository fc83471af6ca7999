import ArgumentParser

/// `portslice`: the root of the command tree; each subcommand lives in its own file.
public struct PortSliceCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "portslice",
        abstract: "Share scarce IPv4 egress addresses among many hosts by slicing their port space.",
        discussion: """
            Each host owns a slice of an address's ports and sends from it directly; an edge in \
            front of the hosts returns traffic to the owner by destination port. No stateful NAT.
            """,
        version: "0.1.0",
        subcommands: [ServeCommand.self, PoolCommand.self, HostsCommand.self, EdgesCommand.self, ViewersCommand.self, LeasesCommand.self, StatusCommand.self, WhoCommand.self, PlanCommand.self, GeofeedCommand.self, LookupCommand.self, DoctorCommand.self, ConnectCommand.self, ProxyCommand.self, UsersCommand.self, AgentCommand.self, EdgeCommand.self, LabCommand.self, BenchCommand.self]
    )

    public init() {}
}

extension PortSliceCommand {
    /// Parses the command line and runs the chosen command, asynchronously. (Called from
    /// top-level code, `main()` resolves to the synchronous entry point, which refuses async
    /// subcommands such as `serve`.)
    public static func runFromCommandLine() async {
        do {
            var command = try await asyncParseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}
