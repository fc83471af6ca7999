import Foundation
import Logging
import PortSliceAgent
import PortSliceAPI
import PortSliceCore
import ServiceLifecycle
import Synchronization

/// The agent and proxy of `portslice serve`'s local demo, run beside the allocator: once the
/// allocator listens, the agent leases one slice of each example trait class over the API (as
/// any host would) and the proxy serves from them until shutdown.
final class DemoService: Service {
    static let hostName = "demo"
    /// The viewer whose token the console link printed at start carries.
    static let viewerName = "console"

    /// Loopback egress addresses with the traits of four kinds of exit.
    static let examplePool = """
        127.0.0.2/32,US,US-CA,Los Angeles,,residential,high
        127.0.0.3/32,US,US-NY,New York,,hosting,medium
        127.0.0.4/32,DE,DE-BE,Berlin,,residential,high
        127.0.0.5/32,GB,GB-LND,London,,mobile,medium

        """

    /// Clients by source address; `curl --interface 127.0.0.10` is a client in Berlin.
    static let exampleClients = """
        127.0.0.1/32,US,US-CA,Los Angeles,,residential,high
        127.0.0.10/32,DE,DE-BE,Berlin,,residential,high
        127.0.0.11/32,GB,GB-LND,London,,mobile,medium
        127.0.0.12/32,US,US-NY,New York,,hosting,medium

        """

    let hostToken: String
    let viewerToken: String
    let wants: [LeaseWant]
    let proxy: ProxyOptions
    private let allocatorPort: AsyncStream<Int>
    private let announce: AsyncStream<Int>.Continuation

    init(hostToken: String, viewerToken: String, wants: [LeaseWant], proxy: ProxyOptions) {
        self.hostToken = hostToken
        self.viewerToken = viewerToken
        self.wants = wants
        self.proxy = proxy
        (allocatorPort, announce) = AsyncStream.makeStream(of: Int.self)
    }

    func allocatorStarted(on port: Int) {
        announce.yield(port)
        announce.finish()
    }

    func run() async throws {
        // A shutdown before the allocator listens ends the demo at once.
        guard let port = await cancelWhenGracefulShutdown({ [allocatorPort] in await allocatorPort.first { _ in true } }) else { return }
        let client = try AllocatorClient(base: "http://127.0.0.1:\(port)", token: hostToken)
        FileHandle.standardOutput.write(Data("""
            portslice demo: allocator on 127.0.0.1:\(port) (SQLite); agent '\(Self.hostName)' leasing one slice of each of the pool's \(wants.count) trait class(es)
            portslice console: http://127.0.0.1:\(port)/console#token=\(viewerToken)

            """.utf8))
        // Logs at the level `serve` bootstrapped the log handler with.
        try await AgentService(client: client, settings: HostAgent.Settings(wants: wants, leaseTime: .seconds(60)), network: nil, proxy: proxy,
                               allowLoopback: true, logger: Logger(label: "portslice.agent"))
            .run()
    }
}
