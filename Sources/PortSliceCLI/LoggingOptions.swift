import ArgumentParser
import Foundation
import Logging

/// `--log-level` for the commands that run as daemons: the level below which swift-log's
/// messages are dropped. Logs go to standard error with their metadata.
struct LoggingOptions: ParsableArguments {
    @Option(help: ArgumentHelp("trace, debug, info, notice, warning, error or critical; info by default (PORTSLICE_LOG_LEVEL).", valueName: "level"))
    var logLevel: String?

    func validate() throws {
        if let logLevel, Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("--log-level '\(logLevel)' is not one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    /// Sets the process's log handler (once per process) and returns a logger for `label`.
    func bootstrap(_ label: String) throws -> Logger {
        let text = logLevel ?? ProcessInfo.processInfo.environment["PORTSLICE_LOG_LEVEL"] ?? "info"
        guard let level = Logger.Level(rawValue: text) else {
            throw CommandFailure("PORTSLICE_LOG_LEVEL '\(text)' is not one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        LoggingBootstrap.once.withLock { done in
            guard !done else { return }
            done = true
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
        }
        var logger = Logger(label: label)
        logger.logLevel = level
        return logger
    }
}

import Synchronization

/// swift-log may be bootstrapped once per process; tests run several commands in one.
enum LoggingBootstrap {
    static let once = Mutex(false)
}
