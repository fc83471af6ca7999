import CPortSlice
import PortSliceCore
import SystemPackage

/// What this host's kernel and network namespace offer for port slicing, read from `/proc`
/// and probed with a throw-away socket.
public enum HostNetwork {
    /// True when the kernel accepts `IP_LOCAL_PORT_RANGE` (Linux 6.3 and later).
    public static func supportsLocalPortRange() -> Bool {
        guard let socket = try? OwnedDescriptor(.tcp, nonBlocking: true) else { return false }
        return (try? socket.set(.localPortRange, cportslice_pack_port_range(60000, 60001))) != nil
    }

    /// `net.ipv4.ip_local_port_range` and `ip_local_reserved_ports` of this network namespace.
    public static func portSettings(sysctlDirectory: String = "/proc/sys/net/ipv4") throws -> HostPortSettings {
        try HostPortSettings(
            localPortRange: readText("\(sysctlDirectory)/ip_local_port_range"),
            reservedPorts: readText("\(sysctlDirectory)/ip_local_reserved_ports"))
    }

    /// `net.ipv4.ip_unprivileged_port_start`: binding below it needs CAP_NET_BIND_SERVICE.
    public static func unprivilegedPortStart(sysctlDirectory: String = "/proc/sys/net/ipv4") throws -> UInt16 {
        let text = try readText("\(sysctlDirectory)/ip_unprivileged_port_start")
        guard let value = UInt16(text.filter { !$0.isWhitespace }) else {
            throw HostNetworkError.unreadable(path: "\(sysctlDirectory)/ip_unprivileged_port_start", reason: "not a port number: \(text)")
        }
        return value
    }

    /// The kernel release, such as `6.18.44`.
    public static func kernelRelease() -> String? {
        try? Syscalls.kernelRelease().get()
    }

    /// The kernel's major and minor version, parsed from the release.
    public static var kernelVersion: (Int, Int)? {
        guard let release = kernelRelease() else { return nil }
        let numbers = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        return numbers.count == 2 ? (numbers[0], numbers[1]) : nil
    }

    /// Effective capabilities of this process (the `CapEff` mask of `/proc/self/status`).
    public static func effectiveCapabilities() throws -> UInt64 {
        let status = try readText("/proc/self/status")
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") }),
              let mask = UInt64(line.dropFirst("CapEff:".count).filter { !$0.isWhitespace }, radix: 16)
        else { throw HostNetworkError.unreadable(path: "/proc/self/status", reason: "no CapEff line") }
        return mask
    }

    /// Capability numbers from linux/capability.h that slicing cares about.
    public enum Capability: Int, CaseIterable, Sendable {
        case netBindService = 10, netAdmin = 12, netRaw = 13, sysAdmin = 21

        public var name: String {
            switch self {
            case .netBindService: "CAP_NET_BIND_SERVICE"
            case .netAdmin: "CAP_NET_ADMIN"
            case .netRaw: "CAP_NET_RAW"
            case .sysAdmin: "CAP_SYS_ADMIN"
            }
        }
    }

    /// True when `address` can be bound here (it is configured on an interface, or
    /// `net.ipv4.ip_nonlocal_bind` allows it).
    public static func isLocal(_ address: IPv4Address) -> Bool {
        guard let socket = try? OwnedDescriptor(.udp, nonBlocking: true) else { return false }
        return (try? Syscalls.bind(socket.raw, address, 0).get()) != nil
    }

    /// Why TCP `endpoint` cannot be bound now (held by another program, not an address of
    /// this host, a privileged port), or nil when it can: a listener that shares its port among
    /// its own sockets (SO_REUSEPORT) checks first that no other program has it.
    public static func tcpBindProblem(_ endpoint: Endpoint) -> DialError? {
        do {
            let socket = try OwnedDescriptor(.tcp, nonBlocking: true)
            try socket.set(.reuseAddress, 1)
            if case .failure(let errno) = Syscalls.bind(socket.raw, endpoint.address, endpoint.port) {
                return errno == .addressNotAvailable ? .addressNotLocal(endpoint.address) : DialError.from(.bind, errno)
            }
            return nil
        } catch {
            return error
        }
    }

    /// Raises the soft limit on open descriptors to `wanted`: past the hard limit when this
    /// process may raise that too, else capped at it. Returns the soft limit in force afterwards.
    @discardableResult
    public static func raiseOpenFileLimit(to wanted: UInt64) -> UInt64 {
        guard let (soft, hard) = try? Syscalls.openFileLimit().get() else { return 0 }
        guard wanted > soft else { return soft }
        // Root (CAP_SYS_RESOURCE) may raise the hard limit too; anyone may go up to it.
        if wanted > hard, (try? Syscalls.setOpenFileLimit(soft: wanted, hard: wanted).get()) != nil { return wanted }
        let target = min(wanted, hard)
        return (try? Syscalls.setOpenFileLimit(soft: target, hard: hard).get()).map { target } ?? soft
    }

    /// The IPv4 addresses of `host`: a dotted-decimal literal as it is, a name through the
    /// system resolver.
    public static func resolveIPv4(_ host: String) throws(HostNetworkError) -> [IPv4Address] {
        if let literal = try? IPv4Address(parsing: host) { return [literal] }
        switch Syscalls.resolveIPv4(host) {
        case .success(let addresses) where !addresses.isEmpty: return addresses
        case .success: throw .unresolvable(host: host, reason: "it has no IPv4 address")
        case .failure(let failure): throw .unresolvable(host: host, reason: failure.message)
        }
    }

    /// Every IPv4 and IPv6 address on this host's interfaces now, loopback included.
    public static func interfaceAddresses() throws(HostNetworkError) -> [InterfaceAddress] {
        switch Syscalls.interfaceAddresses() {
        case .success(let entries): return entries.map { InterfaceAddress($0.address, on: $0.interface) }
        case .failure(let errno): throw .interfacesUnlisted(errno)
        }
    }

    static func readText(_ path: String) throws(HostNetworkError) -> String {
        do {
            let descriptor = try FileDescriptor.open(FilePath(path), .readOnly)
            defer { try? descriptor.close() }
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = try chunk.withUnsafeMutableBytes { try descriptor.read(into: $0) }
                if count == 0 { break }
                bytes += chunk[..<count]
            }
            return String(decoding: bytes, as: UTF8.self)
        } catch {
            throw .unreadable(path: path, reason: "\(error)")
        }
    }
}

public enum HostNetworkError: Error, Hashable, Sendable, CustomStringConvertible {
    case unreadable(path: String, reason: String)
    case unresolvable(host: String, reason: String)
    case interfacesUnlisted(Errno)

    public var description: String {
        switch self {
        case .unreadable(let path, let reason): "cannot read \(path): \(reason)"
        case .unresolvable(let host, let reason): "cannot resolve '\(host)': \(reason)"
        case .interfacesUnlisted(let errno): "cannot list this host's interface addresses (getifaddrs): \(errno)"
        }
    }
}
