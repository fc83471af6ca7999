import Logging
import ServiceLifecycle

/// Runs a daemon's services (`agent`, `proxy`, `edge`) in one group until SIGTERM or SIGINT,
/// then stops them gracefully in the reverse of their order, the whole within 15 seconds (after
/// which what is left is cancelled). Throws what a service threw.
func runDaemon(_ services: [any Service], logger: Logger) async throws {
    var configuration = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
    configuration.maximumGracefulShutdownDuration = .seconds(15)
    try await ServiceGroup(configuration: configuration).run()
}
