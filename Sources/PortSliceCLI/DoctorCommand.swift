import ArgumentParser
import PortSliceCore
import PortSliceSockets

/// `portslice doctor`: can this host send from a slice, and if not, what to change.
struct DoctorCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Check this host's kernel and settings for sending from a port slice.",
        discussion: """
            Reports the kernel version, IP_LOCAL_PORT_RANGE support, the namespace's port range \
            and reserved ports, sock_diag, and capabilities. With --slice it also checks that the \
            slice lies inside the port range and that its address is local. Every problem comes \
            with the command that fixes it; exits 1 when the slice cannot work as things stand.

            Example:
              portslice doctor --slice 203.0.113.10:20000-21999
            """
    )

    @Option(help: ArgumentHelp("The slice to check, ADDRESS:LOW-HIGH.", valueName: "slice"))
    var slice: String?

    @Option(help: "Output format.")
    var format: OutputFormat = .table

    func run() throws {
        let slice = try slice.map { try EgressSlice(parsing: $0) }
        var findings: [PlanFinding] = []
        func add(_ severity: PlanFinding.Severity, _ message: String, fix: [String] = []) {
            findings.append(PlanFinding(severity: severity, message: message, fix: fix))
        }

        let release = HostNetwork.kernelRelease() ?? "unknown"
        if HostNetwork.supportsLocalPortRange() {
            add(.ok, "kernel \(release) supports IP_LOCAL_PORT_RANGE: TCP uses the kernel's fast path")
        } else {
            add(.warning, "kernel \(release) lacks IP_LOCAL_PORT_RANGE (Linux 6.3+): TCP falls back to portslice's port search, which is slower on full slices",
                fix: ["upgrade the kernel to 6.3 or later"])
        }

        let settings = try HostNetwork.portSettings()
        add(.note, "net.ipv4.ip_local_port_range is \(settings.localPortRange.lower)-\(settings.localPortRange.upper); "
            + "reserved ports: \(settings.reservedPorts.isEmpty ? "none" : settings.reservedPorts.description)")

        do {
            _ = try SockDiag()  // finds a socket of its own, or throws
            add(.ok, "sock_diag answers exact lookups: connected UDP can be checked for duplicate 4-tuples")
        } catch {
            add(.error, "\(error)", fix: ["modprobe -a inet_diag tcp_diag udp_diag"])
        }

        let capabilities = (try? HostNetwork.effectiveCapabilities()) ?? 0
        let held = HostNetwork.Capability.allCases.filter { capabilities & (1 << UInt64($0.rawValue)) != 0 }
        add(.note, "effective capabilities: \(held.isEmpty ? "none of" : held.map(\.name).joined(separator: ", ")) "
            + "(of CAP_NET_BIND_SERVICE, CAP_NET_ADMIN, CAP_NET_RAW; the edge and host guard need CAP_NET_ADMIN)")

        if let slice {
            findings += settings.check(slicePorts: slice.ports, allContiguous: slice.ports.isContiguous)
                .filter { $0.severity != .note }
            if HostNetwork.isLocal(slice.address) {
                add(.ok, "\(slice.address) is an address of this host")
            } else {
                add(.error, "\(slice.address) is not an address of this host, so nothing can be sent from it",
                    fix: ["ip address add \(slice.address)/32 dev lo"])
            }
            if let start = try? HostNetwork.unprivilegedPortStart(), let lowest = slice.ports.span?.lower, lowest < start,
               !held.contains(.netBindService) {
                add(.error, "the slice starts at port \(lowest), below net.ipv4.ip_unprivileged_port_start (\(start)), and this process lacks CAP_NET_BIND_SERVICE",
                    fix: ["sysctl -w net.ipv4.ip_unprivileged_port_start=\(lowest)", "or grant CAP_NET_BIND_SERVICE"])
            }
        }

        switch format {
        case .json:
            print(try jsonText(findings))
        case .table:
            for finding in findings {
                print("\(finding.severity): \(finding.message)")
                for fix in finding.fix { print("  fix: \(fix)") }
            }
        }
        if findings.contains(where: { $0.severity == .error }) { throw ExitCode(1) }
    }
}
