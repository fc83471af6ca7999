import Logging
import NIOPosix
import PortSliceCore
@testable import PortSliceProxy

/// A proxy in this process on 127.0.0.1 with one loop and a quiet logger: `body` gets its
/// endpoint and the opener `makeOpener` built (with the pool for password checks); the proxy
/// and the pool are closed afterwards, whatever `body` did.
enum InProcessProxy {
    static func serving(settings: ProxyServer.Settings = ProxyServer.Settings(), _ makeOpener: (NIOThreadPool) throws -> FlowOpener,
                        _ body: (Endpoint, FlowOpener) async throws -> Void) async throws {
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        var failure: (any Error)?
        do {
            let opener = try makeOpener(pool)
            let server = try ProxyServer.start(on: Endpoint(IPv4Address(127, 0, 0, 1), 0), opener: opener, settings: settings, threads: 1,
                                               logger: Logger(label: "portslice.proxy.test") { _ in SwiftLogNoOpLogHandler() })
            do { try await body(server.endpoint, opener) } catch { failure = error }
            await server.close()
        } catch {
            failure = error
        }
        try await pool.shutdownGracefully()
        if let failure { throw failure }
    }
}
