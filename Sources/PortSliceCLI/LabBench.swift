import ArgumentParser
import Foundation
import PortSliceLab

/// `portslice lab bench`: the stateless edge against a source-NAT edge, in one run.
struct LabBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Compare the stateless edge with source NAT + conntrack on the same lab: connections/s, throughput, edge state per 100,000 live flows, apply time and packet rate by slice count (root).",
        discussion: "Builds its own lab (it must not be up) and removes it afterwards. Throughput needs iperf3 (apt-get install iperf3)."
    )

    @Option(help: "Hosts behind the edge.")
    var hosts = 2

    @Option(help: "Seconds each rate is measured for.")
    var seconds = 3.0

    @Option(help: "Live TCP flows held open through each edge while its state is read.")
    var liveFlows = 100_000

    @Option(help: ArgumentHelp("Slice counts to apply and measure the packet rate at, comma-separated.", valueName: "counts"))
    var slices = "10,1000,10000"

    @Option(help: "Output format: table or json.")
    var format: OutputFormat = .table

    func validate() throws {
        guard (1...8).contains(hosts) else { throw ValidationError("--hosts \(hosts) is out of range; give 1 to 8") }
        guard seconds >= 0.5 && seconds <= 60 else { throw ValidationError("--seconds \(seconds) is out of range; give 0.5 to 60") }
        guard (0...200_000).contains(liveFlows) else { throw ValidationError("--live-flows \(liveFlows) is out of range; give 0 to 200000") }
        _ = try sliceCounts()
    }

    func sliceCounts() throws -> [Int] {
        let counts = slices.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !counts.isEmpty, counts.allSatisfy({ $0 != nil && (1...20_000).contains($0!) }) else {
            throw ValidationError("--slices '\(slices)' must be comma-separated counts from 1 to 20000, such as 10,1000,10000")
        }
        return counts.map { $0! }
    }

    func run() async throws {
        try requireRoot("lab bench")
        guard LabTopology.existingNamespaces().isEmpty else { throw CommandFailure("a lab is up; run `portslice lab down` first (the benchmark builds its own)") }
        let topology = try LabTopology(hosts: hosts, addresses: 1)
        let result = try await PortSliceLab.LabBench.run(topology, .init(seconds: seconds, liveFlows: liveFlows, sliceCounts: try sliceCounts())) {
            printToStandardError("lab bench: \($0)")
        }
        switch format {
        case .json: print(try jsonText(result))
        case .table: print(Self.table(result, hosts: hosts))
        }
    }

    static func table(_ result: PortSliceLab.LabBench.Result, hosts: Int) -> String {
        func perHundredThousand(_ measurement: PortSliceLab.LabBench.EdgeMeasurement) -> String {
            guard measurement.liveFlows > 0 else { return "-" }
            let scale = 100_000 / Double(measurement.liveFlows)
            return String(format: "%.1f MiB, %.0f entries", Double(measurement.stateBytes) * scale / 1_048_576, Double(measurement.trackedEntries) * scale)
        }
        func gbits(_ value: Double?) -> String { value.map { String(format: "%.2f Gbit/s", $0 / 1e9) } ?? "iperf3 missing" }
        let comparison = renderTable(["measure (\(hosts) hosts, 1 shared address)", "stateless edge", "source NAT + conntrack"], [
            ["new TCP connections/s through the edge", String(format: "%.0f", result.stateless.connectionsPerSecond), String(format: "%.0f", result.nat.connectionsPerSecond)],
            ["one TCP transfer (iperf3)", gbits(result.stateless.throughput), gbits(result.nat.throughput)],
            ["live flows held for the state reading", "\(result.stateless.liveFlows)", "\(result.nat.liveFlows)"],
            ["edge state per 100,000 live flows", perHundredThousand(result.stateless), perHundredThousand(result.nat)],
        ])
        let base = result.scale.first?.packetsPerSecond ?? 0
        let scale = renderTable(["slices", "apply (one nft transaction)", "packets/s to a host", "vs. fewest slices"], result.scale.map { point in
            [String(point.slices), String(format: "%.0f ms", point.applySeconds * 1000), String(format: "%.0f", point.packetsPerSecond),
             base > 0 ? String(format: "%.2f", point.packetsPerSecond / base) : "-"]
        })
        return comparison + "\n\n" + scale
    }
}
