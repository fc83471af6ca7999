import ArgumentParser
import PortSliceBenchmarks

/// `portslice bench`: benchmarks that print a table with a peer measured in the same run.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Run benchmarks; each prints our numbers beside a peer's, measured in the same run.",
        subcommands: [BenchCoreCommand.self]
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
