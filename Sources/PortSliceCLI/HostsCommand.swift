import ArgumentParser
import PortSliceControl

/// `portslice hosts`: the hosts that may lease slices.
struct HostsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hosts", abstract: "Register hosts (admin).", subcommands: [HostsAddCommand.self])
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

    struct NewHost: Encodable {
        let name: String
        let labels: [String: String]
    }

    func run() async throws {
        let pairs = labels.map { label in
            let parts = label.split(separator: "=", maxSplits: 1)
            return (String(parts[0]), parts.count > 1 ? String(parts[1]) : "")
        }
        let created = try await server.client().call(
            .POST, "/v1/hosts", body: NewHost(name: name, labels: Dictionary(pairs) { $1 }), as: ControlAPI.HostCreated.self)
        print(created.token)
    }
}
