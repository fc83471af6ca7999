import ArgumentParser
import PortSliceAPI

/// `portslice hosts`: the hosts that may lease slices.
struct HostsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hosts", abstract: "Register, re-key and remove hosts (admin).",
        subcommands: [HostsAddCommand.self, HostsRotateCommand.self, HostsRemoveCommand.self])
}

struct HostsAddCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add",
        abstract: "Register a host and print its token (shown this once; only its hash is kept).",
        discussion: "Example: portslice hosts add proxy-1 --label rack=a"
    )

    @OptionGroup var server: ServerOptions

    @Argument(help: ArgumentHelp("Host name: lower-case letters, digits, '-' and '.'.", valueName: "name"))
    var name: String

    @Option(name: .customLong("label"), help: ArgumentHelp("A KEY=VALUE label; repeat for several.", valueName: "key=value"))
    var labels: [String] = []

    func validate() throws {
        for label in labels where !label.contains("=") {
            throw ValidationError("--label '\(label)' must be KEY=VALUE.")
        }
    }

    func run() async throws {
        let pairs = labels.map { label in
            let parts = label.split(separator: "=", maxSplits: 1)
            return (String(parts[0]), parts.count > 1 ? String(parts[1]) : "")
        }
        print(try await server.client().addHost(NewHost(name: name, labels: Dictionary(pairs) { $1 })).token)
    }
}

/// The arguments of a command that acts on one named host or edge.
struct NamedTarget: ParsableArguments {
    @OptionGroup var server: ServerOptions

    @Argument(help: ArgumentHelp("Its name.", valueName: "name"))
    var name: String
}

struct HostsRotateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate",
        abstract: "Give a host a new token and print it; the old token stops working at once.",
        discussion: "Its leases stay: give the new token to the host's agent before it next renews (a third of the lease time).")

    @OptionGroup var target: NamedTarget

    func run() async throws {
        print(try await target.server.client().rotateHost(target.name).token)
    }
}

struct HostsRemoveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remove", abstract: "Remove a host: its token stops working and its leases end now (their slices go to quarantine).")

    @OptionGroup var target: NamedTarget

    func run() async throws {
        try await target.server.client().removeHost(target.name)
        print("host \(target.name) removed; its slices are in quarantine")
    }
}

/// `portslice edges`: routers that read the slice table with tokens of their own.
struct EdgesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "edges", abstract: "Register, re-key and remove edges, whose tokens read the slice table and nothing else (admin).",
        subcommands: [EdgesAddCommand.self, EdgesRotateCommand.self, EdgesRemoveCommand.self])
}

struct EdgesAddCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add",
        abstract: "Register an edge and print its token (shown this once; only its hash is kept).",
        discussion: "Example: portslice edges add router-1, then: portslice edge --token TOKEN --host ...")

    @OptionGroup var target: NamedTarget

    func run() async throws {
        print(try await target.server.client().addEdge(NewEdge(name: target.name)).token)
    }
}

struct EdgesRotateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate", abstract: "Give an edge a new token and print it; the old token stops working at once.")

    @OptionGroup var target: NamedTarget

    func run() async throws {
        print(try await target.server.client().rotateEdge(target.name).token)
    }
}

struct EdgesRemoveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "remove", abstract: "Remove an edge; its token stops working.")

    @OptionGroup var target: NamedTarget

    func run() async throws {
        try await target.server.client().removeEdge(target.name)
        print("edge \(target.name) removed")
    }
}

/// `portslice viewers`: people who watch the console; their tokens read what an admin reads
/// and change nothing.
struct ViewersCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "viewers", abstract: "Register, re-key and remove viewers, whose tokens read everything and change nothing (admin).",
        subcommands: [ViewersAddCommand.self, ViewersRotateCommand.self, ViewersRemoveCommand.self])
}

struct ViewersAddCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add",
        abstract: "Register a viewer and print its token (shown this once; only its hash is kept).",
        discussion: "Example: portslice viewers add noc; the console link is printed on standard error.")

    @OptionGroup var target: NamedTarget

    func run() async throws {
        let client = try target.server.client()
        let token = try await client.addViewer(NewViewer(name: target.name)).token
        print(token)
        printToStandardError("console: \(client.base)/console#token=\(token)")
    }
}

struct ViewersRotateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate", abstract: "Give a viewer a new token and print it; the old token stops working at once.")

    @OptionGroup var target: NamedTarget

    func run() async throws {
        print(try await target.server.client().rotateViewer(target.name).token)
    }
}

struct ViewersRemoveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "remove", abstract: "Remove a viewer; its token stops working.")

    @OptionGroup var target: NamedTarget

    func run() async throws {
        try await target.server.client().removeViewer(target.name)
        print("viewer \(target.name) removed")
    }
}
