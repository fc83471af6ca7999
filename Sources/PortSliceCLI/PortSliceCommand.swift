import ArgumentParser
import NIOCore
import NIOPosix

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
            if command is any ServesOnEventLoops {
                NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
            }
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

/// A command that is an HTTP server on SwiftNIO's event loops, whose Swift tasks then run on
/// those loops too (SwiftNIO's singleton group becomes the global executor; installed on the
/// main thread before the command runs). A request's handler then continues on the thread that
/// read the request instead of waking one of Swift's own pool and waking the loop again to
/// write the answer: in `bench alloc`'s renewal round (1,000 requests a second), 7.5 thread
/// switches a request became 0.8. Such a command must not block in a task, as that would hold
/// a loop (the SQLite store has a thread of its own).
protocol ServesOnEventLoops {}
