import ArgumentParser
import Foundation
import PortSliceAPI

/// Where the allocator is, the token to use and the CA to trust: shared by the commands that
/// talk to it.
struct ServerOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The allocator's URL, http:// or https:// (PORTSLICE_SERVER).", valueName: "url"))
    var server: String?

    @Option(help: ArgumentHelp(
        "Token: the admin token for pool, hosts, edges, leases, status and who; the host's own token for agent and edge --host-guard; an edge token for edge (PORTSLICE_TOKEN; else PORTSLICE_ADMIN_TOKEN, else ./portslice-data/admin-token).",
        valueName: "token"))
    var token: String?

    @Option(help: ArgumentHelp("PEM file of a private CA to trust for an https:// allocator, instead of the system's roots (PORTSLICE_CA).", valueName: "file"))
    var ca: String?

    /// - Parameter needsToken: false for the routes anyone may read (the published geofeed).
    func client(needsToken: Bool = true) throws -> AllocatorClient {
        let environment = ProcessInfo.processInfo.environment
        let base = server ?? environment["PORTSLICE_SERVER"] ?? "http://127.0.0.1:7300"
        let file = FileManager.default.contents(atPath: "\(environment["PORTSLICE_DATA_DIR"] ?? "./portslice-data")/admin-token")
            .map { String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) }
        guard let token = token ?? environment["PORTSLICE_TOKEN"] ?? environment["PORTSLICE_ADMIN_TOKEN"] ?? file ?? (needsToken ? nil : "") else {
            throw CommandFailure("no token: pass --token, set PORTSLICE_TOKEN, or run where ./portslice-data/admin-token is")
        }
        let client: AllocatorClient
        do {
            client = try AllocatorClient(base: base, token: token, caFile: ca ?? environment["PORTSLICE_CA"])
        } catch {
            throw CommandFailure("\(error)")
        }
        if let warning = client.plainTextWarning { printToStandardError("warning: \(warning)") }
        return client
    }
}
