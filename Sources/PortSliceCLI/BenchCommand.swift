import ArgumentParser
import Foundation
import PortSliceBenchmarks

/// `portslice bench`: benchmarks that print a table with a peer measured in the same run.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Run benchmarks; each prints our numbers beside a peer's, measured in the same run.",
        subcommands: [BenchCoreCommand.self, BenchConnectCommand.self]
    )
}

struct BenchCoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "core",
        abstract: "Prefix lookups, table memory, geofeed parsing and egress choice.",
        discussion: "Build with -c release for meaningful numbers: swift run -c release portslice bench core"
    )

    @Option(help: "Prefixes in the generated (seeded) geofeed.")
    var prefixes = 300_000

    @Option(help: "Egress addresses in the pool.")
    var pool = 1_000

    @Option(help: "Minimum seconds per timed loop.")
    var seconds = 1.0

    @Option(help: "Output format.")
    var format: OutputFormat = .table

    func validate() throws {
        guard prefixes >= 1_000 && prefixes <= 5_000_000 else { throw ValidationError("--prefixes must be 1000-5000000.") }
        guard pool >= 1 && pool <= 65_536 else { throw ValidationError("--pool must be 1-65536.") }
        guard seconds > 0 && seconds <= 60 else { throw ValidationError("--seconds must be above 0 and at most 60.") }
    }

    func run() throws {
        var benchmark = CoreBenchmark()
        benchmark.prefixCount = prefixes
        benchmark.poolSize = pool
        benchmark.minimumSeconds = seconds
        let rows = try benchmark.run { printToStandardError("bench: \($0)") }
        switch format {
        case .json:
            print(try jsonText(rows))
        case .table:
            print(renderTable(
                ["metric", "portslice", "peer", "peer measured", "target", "met"],
                rows.map { [$0.metric, $0.portslice, $0.peer, $0.peerName, $0.target, $0.meetsTarget.map { $0 ? "yes" : "NO" } ?? "-"] }))
        }
    }
}

struct BenchConnectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "connect",
        abstract: "Flows per second from a slice 0/50/90/99% full, beside the plain kernel connect.",
        discussion: """
            TCP: the kernel's connect with no slice (the limit), the kernel-range fast path and \
            the port-search fallback; UDP: plain connected-UDP creation and the lock-and-check \
            path. Each flow is closed with a reset so the fill level stays put. As root the run \
            uses a fresh network namespace (removed afterwards); otherwise 127.0.0.1 here.
            Build with -c release: swift run -c release portslice bench connect
            """
    )

    @Option(help: "Ports in the slice.")
    var slicePorts = 1_000

    @Option(help: "Seconds measured per method and fill level.")
    var seconds = 1.0

    @Option(help: "Output format.")
    var format: OutputFormat = .table

    func validate() throws {
        guard (100...10_000).contains(slicePorts) else { throw ValidationError("--slice-ports must be 100-10000.") }
        guard seconds > 0 && seconds <= 60 else { throw ValidationError("--seconds must be above 0 and at most 60.") }
    }

    func run() throws {
        var benchmark = ConnectBenchmark()
        benchmark.slicePorts = slicePorts
        benchmark.secondsPerCell = seconds
        let name = "portslice-bench-\(UInt32.random(in: 0...UInt32.max))"
        let place = try benchmark.prepare(namespaceName: name)
        defer { benchmark.tearDown(place, namespaceName: name) }
        printToStandardError("bench: \(place.summary)")
        let rows = try benchmark.run(in: place) { printToStandardError("bench: \($0)") }
        switch format {
        case .json:
            print(try jsonText(rows))
        case .table:
            print(renderTable(
                ["proto", "method", "fill", "flows/s", "x limit", "target", "met"],
                rows.map {
                    [$0.transport, $0.method, "\($0.fill)%", String(format: "%.0f", $0.operationsPerSecond),
                     String(format: "%.2f", $0.ratioToLimit), $0.target, $0.meetsTarget.map { $0 ? "yes" : "NO" } ?? "-"]
                }))
        }
    }
}
