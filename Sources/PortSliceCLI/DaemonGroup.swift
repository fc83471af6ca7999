import Logging
import ServiceLifecycle

/// Runs a daemon's services (`serve`, `agent`, `proxy`, `edge`) in one group until SIGTERM or
/// SIGINT, then stops them gracefully in the reverse of their order, the whole within
/// `stopWithin` (after which what is left is cancelled). Throws what a service threw.
func runDaemon(_ services: [any Service], logger: Logger, stopWithin: Duration = .seconds(15)) async throws {
    var configuration = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
    configuration.maximumGracefulShutdownDuration = stopWithin
    try await ServiceGroup(configuration: configuration).run()
}
