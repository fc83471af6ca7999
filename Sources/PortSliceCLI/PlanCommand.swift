import ArgumentParser
import PortSliceCore

/// `portslice plan`: split an address's ports into slices and check the host can honour them.
struct PlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Print a slice plan and check it against this host's port sysctls.",
        discussion: """
            Splits RANGE into contiguous slices (--slice-size or --slices) or RFC 7597 port sets \
            (--psid-offset and --psid-length). Ports in net.ipv4.ip_local_reserved_ports and in \
            --reserved are skipped. The plan is then checked against net.ipv4.ip_local_port_range: \
            the kernel silently ignores slice bounds outside it. Exits 1 when the host cannot \
            honour the plan, printing the commands that fix it.

            Examples:
              portslice plan                          31 slices of 2048 ports in 1024-65535
              portslice plan --slices 8 --format json
              portslice plan --range 0-65535 --hold-back-lowest
              portslice plan --psid-offset 6 --psid-length 8
            """
    )

    @Option(help: ArgumentHelp("Ports to split, LOW-HIGH.", valueName: "range"))
    var range: String = PortRange.nonSystemPorts.description

    @Option(help: "Ports per contiguous slice (default 2048 when no other layout is given).")
    var sliceSize: Int?

    @Option(name: .customLong("slices"), help: "Number of contiguous slices, each as large as fits.")
    var sliceCount: Int?

    @Option(help: "RFC 7597 offset bits a (port sets; use with --psid-length).")
    var psidOffset: Int?

    @Option(help: "RFC 7597 PSID length k: 2^k port sets (use with --psid-offset).")
    var psidLength: Int?

    @Option(help: ArgumentHelp("Extra ports no slice may hold, such as 8080,9000-9010.", valueName: "ports"))
    var reserved: String = ""

    @Flag(help: "Keep the lowest slice out of allocation.")
    var holdBackLowest = false

    @Option(help: "Output format.")
    var format: OutputFormat = .table

    @Flag(help: "Do not read or check this host's sysctls.")
    var noHostCheck = false

    @Option(help: ArgumentHelp("Where the port sysctls are read from.", valueName: "directory"))
    var sysctlDirectory = "/proc/sys/net/ipv4"

    func validate() throws {
        let layouts = [sliceSize != nil, sliceCount != nil, psidOffset != nil || psidLength != nil].filter { $0 }
        if layouts.count > 1 {
            throw ValidationError("Choose one layout: --slice-size, --slices, or --psid-offset with --psid-length.")
        }
        if (psidOffset == nil) != (psidLength == nil) {
            throw ValidationError("RFC 7597 port sets need both --psid-offset and --psid-length.")
        }
    }

    func run() throws {
        let range = try PortRange(parsing: range)
        var reserved = try PortSet(parsing: reserved)
        var settings: HostPortSettings? = nil
        if !noHostCheck {
            let host = try readHostSettings()
            settings = host
            reserved = reserved.union(host.reservedPorts)
        }
        let layout: SlicePlan.Layout
        if let psidOffset, let psidLength {
            layout = .portSets(offsetBits: psidOffset, psidLength: psidLength)
        } else if let sliceCount {
            layout = .sliceCount(sliceCount)
        } else {
            layout = .portsPerSlice(sliceSize ?? 2048)
        }
        let plan = try SlicePlan(range: range, layout: layout, reserved: reserved, holdBackLowest: holdBackLowest)
        let findings = settings.map { plan.check(against: $0) } ?? []
        switch format {
        case .json:
            print(try jsonText(PlanReport(plan: plan, hostCheck: settings == nil ? nil : findings)))
        case .table:
            print(renderTable(["slice", "ports", "count", "psid", "state"], plan.slices.map(row)))
            print()
            print(summary(plan))
            if settings != nil {
                print()
                print("Host check (\(sysctlDirectory)):")
                for finding in findings {
                    print("  \(finding.severity): \(finding.message)")
                    for fix in finding.fix { print("    fix: \(fix)") }
                }
            }
        }
        if findings.contains(where: { $0.severity == .error }) { throw ExitCode(1) }
    }

    private func readHostSettings() throws -> HostPortSettings {
        func sysctl(_ name: String) throws -> String {
            let bytes = try readFile("\(sysctlDirectory)/\(name)", what: "sysctl file")
            return String(decoding: bytes, as: UTF8.self)
        }
        do {
            return try HostPortSettings(
                localPortRange: try sysctl("ip_local_port_range"), reservedPorts: try sysctl("ip_local_reserved_ports"))
        } catch let error as PortRangeError {
            throw CommandFailure("cannot understand the sysctls in \(sysctlDirectory): \(error); pass --no-host-check to skip")
        }
    }

    private func row(_ slice: SlicePlan.Slice) -> [String] {
        let runs = slice.ports.runs
        let ports = runs.count <= 3
            ? slice.ports.description
            : runs.prefix(2).map(\.description).joined(separator: ",") + ",... (\(runs.count) runs)"
        return [
            "\(slice.index)", ports, "\(slice.ports.count)", slice.psid.map { "0x" + String($0, radix: 16) } ?? "-",
            slice.heldBack ? "held back" : "allocatable",
        ]
    }

    private func summary(_ plan: SlicePlan) -> String {
        let sizes = Set(plan.slices.map(\.ports.count))
        let size = sizes.count == 1 ? "\(sizes.first!) ports" : "\(sizes.min()!)-\(sizes.max()!) ports"
        let reserved = plan.reserved.intersection(PortSet(plan.range))
        return "\(plan.allocatable.count) allocatable slices of \(size) in \(plan.range)"
            + (plan.slices.count > plan.allocatable.count ? " (\(plan.slices.count - plan.allocatable.count) held back)" : "")
            + "; \(plan.unusedPorts.count) ports unused"
            + "; reserved ports skipped: \(reserved.isEmpty ? "none" : reserved.description)"
    }
}

/// What `plan --format json` prints.
struct PlanReport: Encodable {
    let plan: SlicePlan
    let hostCheck: [PlanFinding]?
}
