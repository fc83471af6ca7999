/// A host's port sysctls, as text read from `/proc/sys/net/ipv4/` (reading is the caller's job:
/// this module does no I/O).
public struct HostPortSettings: Hashable, Sendable {
    /// `net.ipv4.ip_local_port_range`: the netns range that per-socket ranges are clipped to,
    /// and the range unrelated programs auto-bind from.
    public let localPortRange: PortRange
    /// `net.ipv4.ip_local_reserved_ports`: ports the kernel never picks automatically.
    public let reservedPorts: PortSet

    public init(localPortRange: PortRange, reservedPorts: PortSet) {
        self.localPortRange = localPortRange
        self.reservedPorts = reservedPorts
    }

    /// - Parameters:
    ///   - localPortRange: the sysctl's text, two numbers separated by white space (`32768\t60999`).
    ///   - reservedPorts: the sysctl's text, a comma-separated list (may be empty).
    public init(localPortRange: String, reservedPorts: String) throws(PortRangeError) {
        let bounds = localPortRange.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" })
        guard bounds.count == 2 else { throw .badPort(port: localPortRange, text: localPortRange) }
        self.localPortRange = try PortRange(parsing: "\(bounds[0])-\(bounds[1])")
        self.reservedPorts = try PortSet(parsing: reservedPorts.filter { $0 != "\n" })
    }
}

/// One result of checking a slice plan against a host.
public struct PlanFinding: Hashable, Sendable, Codable {
    public enum Severity: String, Hashable, Sendable, Codable, Comparable {
        case ok, note, warning, error
        private var rank: Int { [.ok: 0, .note: 1, .warning: 2, .error: 3][self]! }
        public static func < (lhs: Severity, rhs: Severity) -> Bool { lhs.rank < rhs.rank }
    }

    public let severity: Severity
    public let message: String
    /// Commands that fix it, when there is something to change.
    public let fix: [String]

    public init(severity: Severity, message: String, fix: [String] = []) {
        self.severity = severity
        self.message = message
        self.fix = fix
    }
}

extension SlicePlan {
    /// Checks that the kernel will honour these slices on a host with `settings`.
    public func check(against settings: HostPortSettings) -> [PlanFinding] {
        settings.check(slicePorts: PortSet(allocatable.flatMap(\.ports.runs)), allContiguous: allocatable.allSatisfy(\.ports.isContiguous))
    }
}

extension HostPortSettings {
    /// Checks that the kernel will honour slices holding `slicePorts`.
    ///
    /// The per-socket range is intersected with the netns range, and bounds outside it are
    /// silently ignored, so every slice must lie inside `ip_local_port_range`; reserved ports
    /// inside a slice are never picked, so they shrink it.
    /// - Parameter allContiguous: false when some slice is an RFC 7597 port set.
    public func check(slicePorts sliced: PortSet, allContiguous: Bool) -> [PlanFinding] {
        var findings: [PlanFinding] = []
        guard let span = sliced.span else { return findings }
        let netns = localPortRange
        let sysctlFile = "/etc/sysctl.d/90-portslice.conf"
        if netns.contains(span) {
            findings.append(PlanFinding(
                severity: .ok,
                message: "net.ipv4.ip_local_port_range \(netns.lower)-\(netns.upper) covers every slice (\(span))",
                fix: []))
        } else {
            let wanted = netns.covering(span)
            let outside = sliced.subtracting(PortSet(netns))
            findings.append(PlanFinding(
                severity: .error,
                message: "net.ipv4.ip_local_port_range is \(netns.lower)-\(netns.upper) but slices use \(span): "
                    + "the kernel silently ignores per-socket bounds outside it, so \(outside.count) slice ports "
                    + "(\(outside)) would never be used and flows could leave from other hosts' ports",
                fix: [
                    "sysctl -w net.ipv4.ip_local_port_range=\"\(wanted.lower) \(wanted.upper)\"",
                    "echo 'net.ipv4.ip_local_port_range = \(wanted.lower) \(wanted.upper)' > \(sysctlFile)",
                ]))
        }
        let reservedInSlices = sliced.intersection(reservedPorts)
        if !reservedInSlices.isEmpty {
            let kept = reservedPorts.subtracting(sliced)
            findings.append(PlanFinding(
                severity: .warning,
                message: "ports \(reservedInSlices) are in net.ipv4.ip_local_reserved_ports and inside slices: "
                    + "the kernel never picks them, so those slices hold \(reservedInSlices.count) fewer usable ports; "
                    + "plan with them skipped (the default) or free them",
                fix: ["sysctl -w net.ipv4.ip_local_reserved_ports=\"\(kept)\""]))
        }
        if !allContiguous {
            findings.append(PlanFinding(
                severity: .note,
                message: "RFC 7597 port sets are not contiguous: the data plane picks their ports itself "
                    + "(explicit bind) instead of the kernel's IP_LOCAL_PORT_RANGE fast path",
                fix: []))
        }
        let sharedWithOthers = sliced.intersection(PortSet(netns))
        if !sharedWithOthers.isEmpty {
            findings.append(PlanFinding(
                severity: .note,
                message: "other programs on this host auto-bind from \(netns.lower)-\(netns.upper) too, which holds "
                    + "\(sharedWithOthers.count) slice ports: keep them off the shared address (their traffic must "
                    + "use another source address) and apply the host guard so none leaves from a neighbour's slice",
                fix: []))
        }
        return findings
    }
}
