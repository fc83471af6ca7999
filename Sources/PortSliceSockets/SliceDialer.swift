import CPortSlice
import PortSliceCore
import SystemPackage

/// How the local port is chosen.
public enum DialStrategy: String, Hashable, Sendable, CaseIterable {
    /// The kernel's fast path where it works (Linux 6.3+, a contiguous slice inside
    /// `net.ipv4.ip_local_port_range`), else `portSearch`.
    case automatic
    /// `IP_BIND_ADDRESS_NO_PORT` + `IP_LOCAL_PORT_RANGE` + `bind(ip, 0)` + `connect`: the
    /// kernel picks the port at connect time and shares it across destinations.
    case kernelRange
    /// Our own search: explicit `bind(ip, port)` with `SO_REUSEADDR`, next port on a clash.
    case portSearch
}

/// Opens TCP connections and connected UDP sockets from one slice, sharing each port across
/// destinations and never creating a duplicate 4-tuple.
///
/// TCP uses the strategy chosen at creation. Connected UDP always takes the lock-and-check
/// path: bind with `SO_REUSEADDR`, clear it (now no one else can bind the port), ask
/// sock_diag which socket owns the 4-tuple, and connect only if it is ours; the kernel alone
/// would silently create duplicates. Both give exactly N flows per destination from N ports.
public final class SliceDialer: Sendable {
    public let slice: EgressSlice
    /// The strategy TCP connects use, resolved from the one asked for.
    public let tcpStrategy: DialStrategy
    /// The ports the search tries: the slice less the host's reserved ports.
    private let search: PortSearch
    private let sockDiag: SockDiag
    private let netnsRange: PortRange?
    /// Linux 6.18 and later: an explicit bind no longer keeps a port from the kernel's choice.
    private let explicitBindsLeaveNoTrace: Bool
    /// The fast path's own flows per destination, for its one-port hints (nil for the search).
    private let occupancy: PortOccupancy?

    /// - Parameters:
    ///   - slice: the shared address and its ports.
    ///   - strategy: `.automatic` unless a test or an operator forces one.
    ///   - sockDiag: a shared sock_diag channel (one is opened when nil).
    ///   - hostSettings: the netns port sysctls; read from `/proc` when nil.
    ///   - kernelSupportsRange: the `IP_LOCAL_PORT_RANGE` probe result; probed when nil.
    /// - Throws: `DialError.kernelRangeUnsupported`, `.notContiguous` or `.rangeIgnored` when
    ///   the kernel range is forced but cannot work here; `.system` when sock_diag is missing.
    public init(
        slice: EgressSlice, strategy: DialStrategy = .automatic, sockDiag: SockDiag? = nil,
        hostSettings: HostPortSettings? = nil, kernelSupportsRange: Bool? = nil
    ) throws(DialError) {
        let settings = hostSettings ?? (try? HostNetwork.portSettings())
        let supported = kernelSupportsRange ?? HostNetwork.supportsLocalPortRange()
        let insideNetns = settings.map { settings in slice.ports.runs.allSatisfy { settings.localPortRange.contains($0) } } ?? false
        switch strategy {
        case .portSearch:
            tcpStrategy = .portSearch
        case .kernelRange:
            guard supported else { throw .kernelRangeUnsupported }
            guard slice.ports.isContiguous else { throw .notContiguous(slice.ports) }
            guard insideNetns else { throw .rangeIgnored(slice: slice.ports, netnsRange: settings?.localPortRange, chosenPort: nil) }
            tcpStrategy = .kernelRange
        case .automatic:
            tcpStrategy = supported && slice.ports.isContiguous && insideNetns ? .kernelRange : .portSearch
        }
        self.slice = slice
        netnsRange = settings?.localPortRange
        explicitBindsLeaveNoTrace = HostNetwork.kernelVersion.map { $0 >= (6, 18) } ?? false
        search = PortSearch(ports: slice.ports.subtracting(settings?.reservedPorts ?? .empty))
        occupancy = tcpStrategy == .kernelRange ? PortOccupancy(span: slice.ports.span!, reserved: settings?.reservedPorts ?? .empty) : nil
        if let sockDiag { self.sockDiag = sockDiag } else { self.sockDiag = try SockDiag() }
    }

    // MARK: - TCP

    /// Opens a TCP connection and waits until it is established.
    /// - Parameters:
    ///   - localPort: a specific port of the slice; `.conflict` when it is taken towards
    ///     `destination`.
    ///   - timeout: how long to wait for the handshake.
    ///   - nonBlocking: leave the returned socket in non-blocking mode (as SwiftNIO wants it).
    public func connectTCP(
        to destination: Endpoint, localPort: UInt16? = nil, timeout: Duration = .seconds(10), nonBlocking: Bool = false
    ) throws(DialError) -> ConnectedSocket {
        let pending = try startTCP(to: destination, localPort: localPort)
        let socket = try pending.finish(timeout: timeout)
        if !nonBlocking, case .failure(let errno) = Syscalls.setNonBlocking(socket.descriptor, false) {
            throw DialError.from(.fcntl, errno)
        }
        return socket
    }

    /// How many of this dialer's TCP flows (handed off or not) hold a port towards
    /// `destination` now, as its one-port hints count them; 0 when it gives no hints (port search).
    public func flowsHeld(towards destination: Endpoint) -> Int {
        occupancy?.heldCount(towards: destination) ?? 0
    }

    /// Starts a TCP connection without waiting: the local port is chosen and checked before
    /// this returns (the kernel picks it when it sends the SYN).
    public func startTCP(to destination: Endpoint, localPort: UInt16? = nil) throws(DialError) -> PendingConnection {
        if let localPort {
            try requireInSlice(localPort)
            // Before Linux 6.18 a port once bound explicitly stayed unusable for the kernel's
            // own choice at connect time, so it would leave the fast path's slice for good.
            if tcpStrategy == .kernelRange && !explicitBindsLeaveNoTrace {
                throw .explicitPortNeedsNewerKernel(kernel: HostNetwork.kernelRelease() ?? "unknown")
            }
            guard let socket = try attemptTCP(to: destination, port: localPort) else {
                throw .conflict(port: localPort, destination: destination)
            }
            return PendingConnection(socket, local: Endpoint(slice.address, localPort), remote: destination)
        }
        if tcpStrategy == .kernelRange {
            // The kernel chose the port: read it back, and check it is the slice's.
            return try pending(try kernelRangeTCP(to: destination), to: destination, occupancy: occupancy)
        }
        // The first port is tried directly; after a clash sock_diag is asked first (firstFree).
        var bound: UInt16 = 0
        let socket = try firstFree(.tcp, to: destination) { port throws(DialError) in
            bound = port
            return try attemptTCP(to: destination, port: port)
        }
        // Bound explicitly, so the local end is known without asking the kernel (getsockname).
        return PendingConnection(socket, local: Endpoint(slice.address, bound), remote: destination)
    }

    private func kernelRangeTCP(to destination: Endpoint) throws(DialError) -> OwnedDescriptor {
        if let hint = occupancy?.believedFree(towards: destination),
           let socket = try kernelRangeAttempt(to: destination, range: PortRange(port: hint)) {
            return socket
        }
        guard let socket = try kernelRangeAttempt(to: destination, range: slice.ports.span!) else {
            throw .sliceExhausted(slice: slice.ports, destination: destination)
        }
        return socket
    }

    /// The kernel picks a port of `range` at connect time; nil when every one is taken
    /// towards `destination`.
    private func kernelRangeAttempt(to destination: Endpoint, range: PortRange) throws(DialError) -> OwnedDescriptor? {
        let socket = try OwnedDescriptor(.tcp, nonBlocking: true)
        // SO_REUSEADDR lets an explicit request for this port towards another destination
        // bind beside this flow; the kernel's own choice ignores it.
        try socket.set(.reuseAddress, 1)
        try socket.set(.bindAddressNoPort, 1)
        try socket.set(.localPortRange, cportslice_pack_port_range(range.lower, range.upper))
        try bind(socket, port: 0)
        switch Syscalls.connect(socket.raw, destination.address, destination.port) {
        case .success:
            return socket
        case .failure(let errno) where errno == .nowInProgress || errno == .interrupted:
            return socket
        case .failure(let errno) where errno == .addressNotAvailable || errno == .resourceTemporarilyUnavailable:
            return nil
        case .failure(let errno):
            throw DialError.from(.connect, errno)
        }
    }

    /// One explicit-port attempt; nil when the port is busy (bound by a non-sharing socket, or
    /// the 4-tuple exists).
    private func attemptTCP(to destination: Endpoint, port: UInt16) throws(DialError) -> OwnedDescriptor? {
        let socket = try OwnedDescriptor(.tcp, nonBlocking: true)
        try socket.set(.reuseAddress, 1)
        guard try bindUnlessBusy(socket, port: port) else { return nil }
        switch Syscalls.connect(socket.raw, destination.address, destination.port) {
        case .success:
            return socket
        case .failure(let errno) where errno == .nowInProgress || errno == .interrupted:
            return socket
        case .failure(let errno) where errno == .addressNotAvailable:
            return nil
        case .failure(let errno):
            throw DialError.from(.connect, errno)
        }
    }

    private func pending(
        _ socket: consuming OwnedDescriptor, to destination: Endpoint, occupancy: PortOccupancy? = nil
    ) throws(DialError) -> PendingConnection {
        let local = try checkedLocal(socket)
        return PendingConnection(socket, local: local, remote: destination, occupancy: occupancy)
    }

    // MARK: - UDP

    /// Opens a connected UDP socket whose 4-tuple no other socket has.
    /// - Parameters:
    ///   - localPort: a specific port of the slice; `.conflict` when it is taken towards
    ///     `destination`.
    ///   - nonBlocking: create the socket in non-blocking mode.
    public func connectUDP(to destination: Endpoint, localPort: UInt16? = nil, nonBlocking: Bool = false) throws(DialError) -> ConnectedSocket {
        if let localPort {
            try requireInSlice(localPort)
            guard let socket = try attemptUDP(to: destination, port: localPort, nonBlocking: nonBlocking) else {
                throw .conflict(port: localPort, destination: destination)
            }
            return socket
        }
        return try firstFree(.udp, to: destination) { port throws(DialError) in
            try attemptUDP(to: destination, port: port, nonBlocking: nonBlocking)
        }
    }

    /// The lock-and-check sequence for one port; nil when another socket would receive the
    /// tuple's packets: a connected flow on it (it outranks ours in the lookup), or an
    /// unconnected socket bound to the wildcard on this port, even one that shares ports (ours,
    /// bound to the shared address, would outrank it and hide it, so it is looked up apart, as
    /// 0.0.0.0:port, in the same round trip).
    private func attemptUDP(to destination: Endpoint, port: UInt16, nonBlocking: Bool) throws(DialError) -> ConnectedSocket? {
        let socket = try OwnedDescriptor(.udp, nonBlocking: nonBlocking)
        try socket.set(.reuseAddress, 1)
        guard try bindUnlessBusy(socket, port: port) else { return nil }
        try socket.set(.reuseAddress, 0)  // lock: no one else can bind this address and port now
        let cookie = try socket.cookie()
        let local = Endpoint(slice.address, port)
        guard let owners = try ownersOfTuple(from: port, to: destination) else {
            // Our own bound socket must answer (SockDiag checked that lookups work); lasting
            // silence means the netlink socket lives in another network namespace than this one.
            throw .sockDiagUnavailable(reason: "our own socket was not found; is the dialer used in another network namespace than it was created in?")
        }
        guard owners.tuple.cookie == cookie, owners.wildcard == nil else { return nil }
        if case .failure(let errno) = Syscalls.connect(socket.raw, destination.address, destination.port) {
            throw DialError.from(.connect, errno)
        }
        try socket.set(.reuseAddress, 1)  // unlock, so the port serves other destinations too
        // Bound explicitly to a port of the slice: no need to ask the kernel where it is.
        return ConnectedSocket(socket, transport: .udp, local: local, remote: destination)
    }

    /// Who would receive `destination`'s packets to `port` of the slice: the socket the kernel
    /// picks for the 4-tuple, and any unconnected socket bound to the wildcard on that port.
    /// Nil when the kernel names no socket for the tuple three times running. One silent answer
    /// happens under churn: the lookup's best match is a socket closing at that moment, whose
    /// reference the kernel can no longer take (udp_dump_one answers ENOENT then), though our
    /// own bound socket is there; asking again finds it.
    private func ownersOfTuple(from port: UInt16, to destination: Endpoint) throws(DialError) -> (tuple: SockDiag.Answer, wildcard: SockDiag.Answer?)? {
        let locals = [Endpoint(slice.address, port), Endpoint(IPv4Address(bits: 0), port)]
        for _ in 0..<3 {
            let owners = try sockDiag.lookup(.udp, locals: locals, remote: destination)
            if let tuple = owners[0] { return (tuple, owners[1]) }
        }
        return nil
    }

    // MARK: - Shared steps

    /// Tries the ports of the slice in this destination's search order until `attempt` opens
    /// a flow. The first port is attempted directly (in a lightly used slice it is free);
    /// after that, ports are screened with sock_diag in growing batches (1, 4, 16, 64), so a
    /// nearly full slice costs two system calls per batch instead of a socket per taken port,
    /// and ports reported busy lately are skipped without asking (`PortSearch`). The attempt
    /// stays the authority: a port can be taken between screen and bind. Before the slice is
    /// called exhausted, every port is asked about once more, remembered or not.
    private func firstFree<Flow: ~Copyable>(
        _ transport: Transport, to destination: Endpoint, _ attempt: (UInt16) throws(DialError) -> Flow?
    ) throws(DialError) -> Flow {
        let order = search.order(transport, from: slice.address, to: destination)
        var next = 0
        if search.count > 0 && !search.knownBusy(order, attempt: 0) {
            if let flow = try attempt(search.port(order, attempt: 0)) {
                search.finish(order, attempts: 1)
                return flow
            }
            next = 1
        }
        var batch = 1
        var skipped = false
        var trustMemory = true
        while true {
            var attempts: [Int] = []
            while attempts.count < batch && next < search.count {
                if trustMemory && search.knownBusy(order, attempt: next) { skipped = true } else { attempts.append(next) }
                next += 1
            }
            if attempts.isEmpty {
                guard trustMemory && skipped else { break }
                trustMemory = false  // the last pass asks about every port
                next = 0
                continue
            }
            let ports = attempts.map { search.port(order, attempt: $0) }
            let owners = try sockDiag.lookup(transport, locals: ports.map { Endpoint(slice.address, $0) }, remote: destination)
            search.rememberBusy(order, attempts: attempts.indices.filter { owners[$0] != nil }.map { attempts[$0] })
            for index in attempts.indices where owners[index] == nil {
                if let flow = try attempt(ports[index]) {
                    search.finish(order, attempts: attempts[index] + 1)
                    return flow
                }
            }
            batch = min(batch * 4, SockDiag.batchLimit)
        }
        search.finish(order, attempts: search.count)
        throw .sliceExhausted(slice: slice.ports, destination: destination)
    }

    private func bind(_ socket: borrowing OwnedDescriptor, port: UInt16) throws(DialError) {
        if case .failure(let errno) = Syscalls.bind(socket.raw, slice.address, port) {
            throw errno == .addressNotAvailable ? .addressNotLocal(slice.address) : DialError.from(.bind, errno)
        }
    }

    /// Binds to `port`; false when it is taken (EADDRINUSE).
    private func bindUnlessBusy(_ socket: borrowing OwnedDescriptor, port: UInt16) throws(DialError) -> Bool {
        switch Syscalls.bind(socket.raw, slice.address, port) {
        case .success: return true
        case .failure(let errno) where errno == .addressInUse: return false
        case .failure(let errno) where errno == .addressNotAvailable: throw .addressNotLocal(slice.address)
        case .failure(let errno): throw DialError.from(.bind, errno)
        }
    }

    /// The socket's local endpoint, which must be the shared address and a port of the slice.
    private func checkedLocal(_ socket: borrowing OwnedDescriptor) throws(DialError) -> Endpoint {
        let local = try socket.localEndpoint()
        guard local.address == slice.address, slice.ports.contains(local.port) else {
            throw .rangeIgnored(slice: slice.ports, netnsRange: netnsRange, chosenPort: local.port)
        }
        return local
    }

    private func requireInSlice(_ port: UInt16) throws(DialError) {
        guard slice.ports.contains(port) else { throw .portOutsideSlice(port: port, slice: slice.ports) }
    }
}

/// A TCP connection whose handshake may still be under way; its local port is final.
public struct PendingConnection: ~Copyable, Sendable {
    public let local: Endpoint
    public let remote: Endpoint
    private var descriptor: CInt
    /// Counts the port as held until the connection ends or becomes a `ConnectedSocket`.
    private var occupancy: PortOccupancy?

    init(_ socket: consuming OwnedDescriptor, local: Endpoint, remote: Endpoint, occupancy: PortOccupancy? = nil) {
        descriptor = socket.release()
        self.local = local
        self.remote = remote
        self.occupancy = occupancy
        occupancy?.hold(local.port, towards: remote)
    }

    /// The non-blocking descriptor, still owned by this value: wait for it to become
    /// writable (poll, epoll, an event loop), then call `finishEnded`.
    public var pollableDescriptor: CInt { descriptor }

    /// Waits for the handshake to complete.
    /// - Throws: `DialError.timedOut`, or `.system(connect, errno)` with the error the
    ///   connection ended with (such as ECONNREFUSED).
    public consuming func finish(timeout: Duration) throws(DialError) -> ConnectedSocket {
        // The descriptor and the port's count move to `owned` and then to the ConnectedSocket;
        // this value's deinit is left nothing to close or release.
        let owned = OwnedDescriptor(descriptor)
        let occupancy = occupancy
        descriptor = -1
        self.occupancy = nil
        do {
            return try Self.waitForHandshake(owned, local: local, remote: remote, timeout: timeout, occupancy: occupancy)
        } catch {
            occupancy?.release(local.port, towards: remote)
            throw error
        }
    }

    /// Ends a handshake that the caller's own poller saw end: no waiting. `failed` is whether
    /// the poller reported an error or a hang-up with it; without one, writable means
    /// connected, and the socket's error is not asked for.
    /// - Throws: `.system(connect, errno)` with the error the connection ended with.
    public consuming func finishEnded(failed: Bool) throws(DialError) -> ConnectedSocket {
        let owned = OwnedDescriptor(descriptor)
        let occupancy = occupancy
        descriptor = -1
        self.occupancy = nil
        guard failed else { return ConnectedSocket(owned, transport: .tcp, local: local, remote: remote, occupancy: occupancy) }
        do {
            return try Self.connected(owned, local: local, remote: remote, occupancy: occupancy)
        } catch {
            occupancy?.release(local.port, towards: remote)
            throw error
        }
    }

    private static func waitForHandshake(
        _ owned: consuming OwnedDescriptor, local: Endpoint, remote: Endpoint, timeout: Duration, occupancy: PortOccupancy?
    ) throws(DialError) -> ConnectedSocket {
        let deadline = ContinuousClock.now + max(timeout, .zero)
        while true {
            let left = max(deadline - ContinuousClock.now, .zero)
            let milliseconds = CInt(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000)
            switch Syscalls.poll(owned.raw, events: Syscalls.pollOut, timeoutMilliseconds: milliseconds) {
            case .success(0): throw .timedOut(destination: remote)
            case .success: break
            case .failure(let errno) where errno == .interrupted: continue
            case .failure(let errno): throw DialError.from(.poll, errno)
            }
            break
        }
        return try connected(owned, local: local, remote: remote, occupancy: occupancy)
    }

    /// The socket once its handshake has ended: connected, or the error it ended with.
    private static func connected(
        _ owned: consuming OwnedDescriptor, local: Endpoint, remote: Endpoint, occupancy: PortOccupancy?
    ) throws(DialError) -> ConnectedSocket {
        switch Syscalls.getOption(owned.raw, .error, as: CInt.self) {
        case .success(0): return ConnectedSocket(owned, transport: .tcp, local: local, remote: remote, occupancy: occupancy)
        case .success(let code): throw DialError.from(.connect, Errno(rawValue: code))
        case .failure(let errno): throw DialError.from(.getsockopt, errno)
        }
    }

    deinit {
        if descriptor >= 0 { Syscalls.close(descriptor) }
        occupancy?.release(local.port, towards: remote)
    }
}
