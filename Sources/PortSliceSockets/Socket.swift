import PortSliceCore
import Synchronization
import SystemPackage

/// TCP or UDP.
public enum Transport: String, Hashable, Sendable, CustomStringConvertible {
    case tcp, udp
    public var description: String { rawValue }
}

/// A descriptor that is closed when the value goes away, so no error path can leak it.
struct OwnedDescriptor: ~Copyable {
    let raw: CInt

    init(_ raw: CInt) { self.raw = raw }

    /// Opens an IPv4 socket.
    init(_ transport: Transport, nonBlocking: Bool) throws(DialError) {
        switch Syscalls.socket(transport, nonBlocking: nonBlocking) {
        case .success(let raw): self.raw = raw
        case .failure(let errno): throw DialError.from(.socket, errno)
        }
    }

    /// Hands the descriptor over without closing it.
    consuming func release() -> CInt {
        let raw = raw
        discard self
        return raw
    }

    func set(_ option: SocketOption, _ value: UInt32) throws(DialError) {
        if case .failure(let errno) = Syscalls.setOption(raw, option, value) { throw DialError.from(.setsockopt, errno) }
    }

    func localEndpoint() throws(DialError) -> Endpoint {
        switch Syscalls.localAddress(raw) {
        case .success(let (address, port)): return Endpoint(address, port)
        case .failure(let errno): throw DialError.from(.getsockname, errno)
        }
    }

    func cookie() throws(DialError) -> UInt64 {
        switch Syscalls.getOption(raw, .cookie, as: UInt64.self) {
        case .success(let cookie): return cookie
        case .failure(let errno): throw DialError.from(.getsockopt, errno)
        }
    }

    deinit { Syscalls.close(raw) }
}

/// A connected TCP or UDP socket whose local port lies in the slice it was opened from.
///
/// The socket owns its descriptor and closes it when it goes away. To hand it to SwiftNIO,
/// take the descriptor: `ClientBootstrap(group:).withConnectedSocket(socket.takeDescriptor())`
/// for TCP, `DatagramBootstrap(group:).withBoundSocket(socket.takeDescriptor())` for UDP (the
/// socket is already connected, so NIO's channel sends to its peer).
public struct ConnectedSocket: ~Copyable, Sendable {
    public let transport: Transport
    public let local: Endpoint
    public let remote: Endpoint
    /// The descriptor, still owned by this value.
    public private(set) var descriptor: CInt
    /// Where the dialer counts this flow's port as held, until this value goes.
    private var occupancy: PortOccupancy?

    init(_ owned: consuming OwnedDescriptor, transport: Transport, local: Endpoint, remote: Endpoint, occupancy: PortOccupancy? = nil) {
        descriptor = owned.release()
        self.transport = transport
        self.local = local
        self.remote = remote
        self.occupancy = occupancy
    }

    /// Gives up ownership: the caller must close the descriptor. The dialer stops counting
    /// the port as held (it cannot see the close), which costs at most a retried connect.
    public consuming func takeDescriptor() -> CInt {
        let taken = descriptor
        descriptor = -1  // deinit then closes nothing
        return taken
    }

    /// Gives up ownership but not the dialer's count of the port: the caller closes the
    /// descriptor and then ends `hold`. An owner that closes it out of sight (SwiftNIO) keeps
    /// the dialer's one-port hints working at high fill, which `takeDescriptor` gives up.
    public consuming func handOff() -> (descriptor: CInt, hold: PortHold) {
        let handed = (descriptor, PortHold(occupancy: occupancy, port: local.port, destination: remote))
        descriptor = -1
        occupancy = nil  // deinit then closes and releases nothing
        return handed
    }

    /// Makes the next close send a TCP reset and skip TIME_WAIT, so the 4-tuple is free at
    /// once (for load tests; a normal close is kinder to the peer).
    public func resetOnClose() throws(DialError) {
        if case .failure(let errno) = Syscalls.setResetOnClose(descriptor) { throw DialError.from(.setsockopt, errno) }
    }

    /// `protocol local -> remote`, the 4-tuple.
    public var tuple: String { "\(transport) \(local) -> \(remote)" }

    deinit {
        if descriptor >= 0 { Syscalls.close(descriptor) }
        occupancy?.release(local.port, towards: remote)
    }
}

/// A handed-off flow's port, still counted by its dialer as held towards the destination until
/// `end()` (called once the descriptor is closed) or until this value goes.
public final class PortHold: Sendable {
    private let occupancy: PortOccupancy?
    private let port: UInt16
    private let destination: Endpoint
    private let ended = Atomic<Bool>(false)

    init(occupancy: PortOccupancy?, port: UInt16, destination: Endpoint) {
        self.occupancy = occupancy
        self.port = port
        self.destination = destination
    }

    /// Stops counting the port; later calls do nothing.
    public func end() {
        guard !ended.exchange(true, ordering: .relaxed) else { return }
        occupancy?.release(port, towards: destination)
    }

    deinit { end() }
}
