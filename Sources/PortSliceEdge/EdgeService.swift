import Logging
import PortSliceCore
import ServiceLifecycle

/// Follows a slice table source and keeps the kernel's rules in step with it until graceful
/// shutdown (or cancellation), then removes what it installed. Failures are logged and never
/// stop the edge: the rules in force stay until a good table replaces them.
public struct EdgeService: Service, CustomStringConvertible {
    public let controller: EdgeController
    public let source: any SliceTableSource
    public let reconcileInterval: Duration
    public let logger: Logger

    public init(controller: EdgeController, source: any SliceTableSource, reconcileInterval: Duration = .seconds(5), logger: Logger) {
        self.controller = controller
        self.source = source
        self.reconcileInterval = reconcileInterval
        self.logger = logger
    }

    /// Names the service in logs (and never shows a token).
    public var description: String { "edge following the \(source.description)" }

    /// Runs until graceful shutdown or until the task is cancelled.
    /// - Throws: `EdgeError` when the policy routes cannot be installed at start, or when the
    ///   rules cannot be removed at the end.
    public func run() async throws {
        try await controller.start()
        await cancelWhenGracefulShutdown {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await follow() }
                group.addTask { await reconcileNow() ; await reconcilePeriodically() }
                await group.waitForAll()
            }
        }
        try await controller.shutdown()
        logger.notice("removed the rules this process installed")
    }

    private func follow() async {
        var applied: Int64?
        while !Task.isCancelled {
            let table: SliceTable
            do {
                table = try await source.next(applied: applied)
            } catch is CancellationError {
                return
            } catch {
                logger.warning("\(error); the rules in force stay", metadata: ["source": "\(source.description)"])
                do { try await Task.sleep(for: .seconds(1)) } catch { return }
                continue
            }
            let started = ContinuousClock.now
            let metadata: Logger.Metadata = ["version": "\(table.version)", "source": "\(source.description)"]
            do {
                let warnings = try await controller.apply(table)
                applied = table.version
                let elapsed = ContinuousClock.now - started
                logger.info("applied slice table version \(table.version) (\(table.slices.count) slices) from the \(source.description) in \(elapsed.formatted(.units(allowed: [.milliseconds])))",
                            metadata: metadata.merging(["slices": "\(table.slices.count)"]) { $1 })
                for warning in warnings { logger.warning("\(warning)", metadata: metadata) }
            } catch {
                logger.error("rejected slice table version \(table.version) from the \(source.description): \(error); the rules in force stay", metadata: metadata)
            }
        }
    }

    private func reconcilePeriodically() async {
        while true {
            do { try await Task.sleep(for: reconcileInterval) } catch { return }
            await reconcileNow()
        }
    }

    private func reconcileNow() async {
        do {
            if let restored = try await controller.reconcile() {
                logger.warning("\(restored) had been changed from outside; restored")
            }
        } catch {
            logger.error("cannot check the rules in force: \(error)")
        }
    }
}
