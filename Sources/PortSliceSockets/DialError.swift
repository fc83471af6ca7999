import PortSliceCore
import SystemPackage

/// Why a flow could not be opened from a slice. Each case names what happened and, where
/// there is one, what to do; the errno and system call are kept where one caused it.
public enum DialError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Every port of the slice is in use towards this destination (4-tuple uniqueness).
    case sliceExhausted(slice: PortSet, destination: Endpoint)
    /// The requested local port already carries a flow to this destination, or another socket
    /// holds it.
    case conflict(port: UInt16, destination: Endpoint)
    /// A specific TCP port was asked of a kernel-range dialer on a kernel before 6.18, where the
    /// explicit bind would keep that port from the kernel's own choice afterwards.
    case explicitPortNeedsNewerKernel(kernel: String)
    /// sock_diag does not answer (the inet_diag, tcp_diag or udp_diag modules are missing).
    case sockDiagUnavailable(reason: String)
    /// A specific local port was asked for that the slice does not hold.
    case portOutsideSlice(port: UInt16, slice: PortSet)
    /// The shared address is not configured on this host (bind gave EADDRNOTAVAIL).
    case addressNotLocal(IPv4Address)
    /// The kernel chose a port outside the slice, or would: the slice lies outside
    /// `net.ipv4.ip_local_port_range`, which clips per-socket ranges.
    case rangeIgnored(slice: PortSet, netnsRange: PortRange?, chosenPort: UInt16?)
    /// The kernel does not support `IP_LOCAL_PORT_RANGE` (Linux before 6.3) but its fast path
    /// was forced.
    case kernelRangeUnsupported
    /// A port set that is not one contiguous run cannot use the kernel's range.
    case notContiguous(PortSet)
    /// EACCES or EPERM from a system call.
    case permissionDenied(call: String, errno: Errno)
    /// The destination did not answer in time.
    case timedOut(destination: Endpoint)
    /// Any other failure of a system call.
    case system(call: String, errno: Errno)

    public var description: String {
        switch self {
        case .sliceExhausted(let slice, let destination):
            return "slice \(slice) is exhausted towards \(destination): every port already carries a flow to it; "
                + "close flows, wait for TIME_WAIT to pass (60 s), or use a larger slice"
        case .conflict(let port, let destination):
            return "local port \(port) is already in use towards \(destination) (or held by another socket); choose another port"
        case .explicitPortNeedsNewerKernel(let kernel):
            return "kernel \(kernel) keeps an explicitly bound port out of the kernel's own port choice afterwards "
                + "(fixed in Linux 6.18), so a specific TCP port would shrink the slice for good; "
                + "let the kernel choose, or use the port-search strategy for this slice"
        case .sockDiagUnavailable(let reason):
            return "sock_diag does not answer (\(reason)), so UDP flows cannot be checked for duplicate 4-tuples; "
                + "load the modules: modprobe -a inet_diag tcp_diag udp_diag"
        case .portOutsideSlice(let port, let slice):
            return "local port \(port) is not in the slice \(slice); choose a port of the slice"
        case .addressNotLocal(let address):
            return "\(address) is not an address of this host; add it first, for example: ip address add \(address)/32 dev lo"
        case .rangeIgnored(let slice, let netns, let chosen):
            var text = "the kernel ignored the slice \(slice)"
            if let chosen { text += " and chose port \(chosen)" }
            if let netns, let span = slice.span {
                let wanted = netns.covering(span)
                text += ": net.ipv4.ip_local_port_range is \(netns.lower)-\(netns.upper); "
                    + "run: sysctl -w net.ipv4.ip_local_port_range=\"\(wanted.lower) \(wanted.upper)\""
            }
            return text
        case .kernelRangeUnsupported:
            return "this kernel has no IP_LOCAL_PORT_RANGE (needs Linux 6.3 or later); use the port-search strategy"
        case .notContiguous(let set):
            return "port set \(set) is not one contiguous range, so the kernel range cannot express it; use the port-search strategy"
        case .permissionDenied(let call, let errno):
            let hint = switch call {
            case "bind": "binding ports below net.ipv4.ip_unprivileged_port_start needs CAP_NET_BIND_SERVICE"
            case "connect": "a firewall rule (or a security policy) refused the connection"
            case "setns": "entering a network namespace needs CAP_SYS_ADMIN"
            default: "a security policy (seccomp, LSM) or missing capability forbids it"
            }
            return "\(call) was denied (\(errno)): \(hint)"
        case .timedOut(let destination):
            return "connecting to \(destination) timed out"
        case .system(let call, let errno):
            return "\(call) failed: \(errno)"
        }
    }

    /// Maps a failed system call to the named cases that do not depend on context.
    static func from(_ call: Syscalls.Call, _ errno: Errno) -> DialError {
        if errno == .permissionDenied || errno == .notPermitted {
            return .permissionDenied(call: call.rawValue, errno: errno)
        }
        return .system(call: call.rawValue, errno: errno)
    }
}
