import PortSliceCore

/// Follows a slice table source and keeps the kernel's rules in step with it until cancelled,
/// then removes what it installed. Failures are reported and never stop the edge: the rules in
/// force stay until a good table replaces them.
public struct EdgeService: Sendable {
    public let controller: EdgeController
    public let source: any SliceTableSource
    public let reconcileInterval: Duration
    public let report: @Sendable (String) -> Void

    public init(controller: EdgeController, source: any SliceTableSource, reconcileInterval: Duration = .seconds(5), report: @escaping @Sendable (String) -> Void) {
        self.controller = controller
        self.source = source
        self.reconcileInterval = reconcileInterval
        self.report = report
    }

    /// Runs until the task is cancelled.
    /// - Throws: `EdgeError` when the policy routes cannot be installed at start, or when the
    ///   rules cannot be removed at the end.
    public func run() async throws {
        try await controller.start()
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await follow() }
            group.addTask { await reconcileNow() ; await reconcilePeriodically() }
            await group.waitForAll()
        }
        try await controller.shutdown()
        report("removed the rules this process installed")
    }

    private func follow() async {
        while !Task.isCancelled {
            let table: SliceTable
            do {
                table = try await source.next()
            } catch is CancellationError {
                return
            } catch {
                report("\(error); the rules in force stay")
                do { try await Task.sleep(for: .seconds(1)) } catch { return }
                continue
            }
            let started = ContinuousClock.now
            do {
                let warnings = try await controller.apply(table)
                let elapsed = ContinuousClock.now - started
                report("applied slice table version \(table.version) (\(table.slices.count) slices) from the \(source.description) in \(elapsed.formatted(.units(allowed: [.milliseconds])))")
                warnings.forEach(report)
            } catch {
                report("rejected slice table version \(table.version) from the \(source.description): \(error); the rules in force stay")
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
                report("\(restored) had been changed from outside; restored")
            }
        } catch {
            report("cannot check the rules in force: \(error)")
        }
    }
}
