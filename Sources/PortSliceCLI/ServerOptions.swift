import ArgumentParser
import Foundation
import PortSliceControl

/// Where the allocator is and the token to use: shared by the commands that talk to it.
struct ServerOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The allocator's URL (PORTSLICE_SERVER).", valueName: "url"))
    var server: String?

    @Option(help: ArgumentHelp(
        "Token: the admin token for pool, hosts, leases, status and who, the host's own token for agent (PORTSLICE_TOKEN; else PORTSLICE_ADMIN_TOKEN, else ./portslice-data/admin-token).",
        valueName: "token"))
    var token: String?

    func client() throws -> AllocatorClient {
        let environment = ProcessInfo.processInfo.environment
        let base = server ?? environment["PORTSLICE_SERVER"] ?? "http://127.0.0.1:7300"
        let file = FileManager.default.contents(atPath: "\(environment["PORTSLICE_DATA_DIR"] ?? "./portslice-data")/admin-token")
            .map { String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) }
        guard let token = token ?? environment["PORTSLICE_TOKEN"] ?? environment["PORTSLICE_ADMIN_TOKEN"] ?? file else {
            throw CommandFailure("no token: pass --token, set PORTSLICE_TOKEN, or run where ./portslice-data/admin-token is")
        }
        return AllocatorClient(base: base, token: token)
    }
}

