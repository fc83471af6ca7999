import CPortSlice
import PortSliceCore
import SystemPackage

/// One epoll set, owned by one thread: what the proxy engine's loops wait on. Registrations are
/// edge-triggered and made once per socket (readable, writable, peer closed), so a relay that
/// pauses for back-pressure costs no `epoll_ctl`; the owner keeps "still readable" and "still
/// writable" itself and reads or writes until the kernel says `wouldBlock`.
public final class EventPoller {
    private let epoll: CInt
    private let events: UnsafeMutableRawPointer
    /// Events taken from the kernel per wait.
    public let capacity: Int

    public init(capacity: Int = 256) throws(DialError) {
        switch Syscalls.epollCreate() {
        case .success(let descriptor): epoll = descriptor
        case .failure(let errno): throw DialError.from(.epollCreate, errno)
        }
        self.capacity = capacity
        events = Syscalls.allocateEpollEvents(capacity: capacity)
    }

    deinit {
        Syscalls.deallocateEpollEvents(events)
        Syscalls.close(epoll)
    }

    /// What a registration is told.
    public enum Interest: Sendable {
        /// A connected stream: readable, writable, the peer's half-close.
        case stream
        /// Readable only, reported once per change: a wake-up.
        case readable
        /// Readable, reported at every wait while it is: a listener, so that each wait takes
        /// one connection and none is spent on an empty queue.
        case listener

        var events: UInt32 {
            switch self {
            case .stream: cportslice_epoll_stream_events
            case .readable: cportslice_epoll_readable_edge
            case .listener: cportslice_epoll_readable_level
            }
        }
    }

    /// Watches `descriptor`; its events come back with `token`. Closing the descriptor ends the
    /// registration (the kernel drops it with the last reference).
    public func watch(_ descriptor: CInt, token: UInt64, for interest: Interest) throws(DialError) {
        if case .failure(let errno) = Syscalls.epollWatch(epoll, descriptor, events: interest.events, token: token) {
            throw DialError.from(.epollCtl, errno)
        }
    }

    /// Stops watching `descriptor` (before handing it to another owner).
    public func unwatch(_ descriptor: CInt) {
        _ = Syscalls.epollRemove(epoll, descriptor)
    }

    /// Waits up to `timeoutMilliseconds` (-1: no limit) and calls `handle` for each ready
    /// registration. - Returns: how many were ready.
    @discardableResult
    public func wait(timeoutMilliseconds: Int32, _ handle: (_ token: UInt64, _ readiness: Readiness) -> Void) throws(DialError) -> Int {
        switch Syscalls.epollWait(epoll, into: events, capacity: capacity, timeoutMilliseconds: timeoutMilliseconds, { token, raw in
            handle(token, Readiness(raw))
        }) {
        case .success(let count): return count
        case .failure(let errno): throw DialError.from(.epollWait, errno)
        }
    }
}

/// What a ready registration reports.
public struct Readiness: Sendable {
    public let readable: Bool
    public let writable: Bool
    /// The peer ended its sending side: reading reaches the end.
    public let peerClosed: Bool
    /// An error or a hang-up: a connect that failed, a reset, both directions gone.
    public let failed: Bool

    init(_ events: UInt32) {
        readable = events & cportslice_epoll_in != 0
        writable = events & cportslice_epoll_out != 0
        peerClosed = events & cportslice_epoll_peer_closed != 0
        failed = events & cportslice_epoll_error != 0
    }
}

/// Wakes a thread waiting in an `EventPoller` from any other thread (an eventfd).
public final class Wakeup: Sendable {
    public let descriptor: CInt

    public init() throws(DialError) {
        switch Syscalls.eventDescriptor() {
        case .success(let descriptor): self.descriptor = descriptor
        case .failure(let errno): throw DialError.from(.eventfd, errno)
        }
    }

    deinit { Syscalls.close(descriptor) }

    public func signal() { Syscalls.signalEvent(descriptor) }

    /// Called by the woken thread before it looks at what it was woken for.
    public func drain() { Syscalls.drainEvent(descriptor) }
}

/// What a read or write on a non-blocking stream did.
public enum StreamOutcome: Sendable, Equatable {
    case transferred(Int)
    /// Reading: the peer closed its sending side.
    case endOfStream
    /// Nothing now; the poller says when to try again.
    case wouldBlock
    case failed(Errno)
}

/// Non-blocking stream operations on descriptors the proxy engine owns.
public enum StreamIO {
    public static func read(_ descriptor: CInt, into buffer: UnsafeMutableRawBufferPointer) -> StreamOutcome {
        switch Syscalls.receive(descriptor, buffer) {
        case .success(0): .endOfStream
        case .success(let count): .transferred(count)
        case .failure(let errno) where errno == .resourceTemporarilyUnavailable: .wouldBlock
        case .failure(let errno): .failed(errno)
        }
    }

    public static func write(_ descriptor: CInt, from bytes: UnsafeRawBufferPointer) -> StreamOutcome {
        switch Syscalls.sendStream(descriptor, bytes) {
        case .success(let count): .transferred(count)
        case .failure(let errno) where errno == .resourceTemporarilyUnavailable: .wouldBlock
        case .failure(let errno): .failed(errno)
        }
    }

    /// Writes what it can of `bytes` now. - Returns: how many bytes went, or the failure.
    public static func writeSome(_ descriptor: CInt, _ bytes: UnsafeRawBufferPointer) -> Result<Int, Errno> {
        var written = 0
        while written < bytes.count {
            switch write(descriptor, from: UnsafeRawBufferPointer(rebasing: bytes[written...])) {
            case .transferred(let count): written += count
            case .wouldBlock, .endOfStream: return .success(written)
            case .failed(let errno): return .failure(errno)
            }
        }
        return .success(written)
    }

    /// Ends the sending side: the peer reads the end of the stream.
    public static func shutdownWrite(_ descriptor: CInt) { Syscalls.shutdownWrite(descriptor) }

    public static func close(_ descriptor: CInt) { Syscalls.close(descriptor) }

    /// `TCP_NODELAY` on an accepted or dialed stream (a relay forwards at once what it read).
    public static func sendImmediately(_ descriptor: CInt) { _ = Syscalls.setOption(descriptor, .noDelay, 1) }
}

/// Sockets to a name server, for a stub resolver on an event loop: non-blocking, close-on-exec,
/// connected, so the kernel picks a random ephemeral source port for each (RFC 5452's second
/// source of entropy beside the query ID) and a UDP socket takes datagrams from that server's
/// address and port only.
public enum NameServerSocket {
    /// A UDP socket connected to `server`.
    public static func udp(to server: Endpoint) -> Result<CInt, Errno> {
        connected(.udp, to: server)
    }

    /// A TCP connection to `server`, under way (`EINPROGRESS`): watch it for writability.
    public static func tcp(to server: Endpoint) -> Result<CInt, Errno> {
        connected(.tcp, to: server)
    }

    private static func connected(_ transport: Transport, to server: Endpoint) -> Result<CInt, Errno> {
        Syscalls.socket(transport, nonBlocking: true).flatMap { descriptor in
            switch Syscalls.connect(descriptor, server.address, server.port) {
            case .success:
                return .success(descriptor)
            case .failure(let errno) where errno == .nowInProgress:
                return .success(descriptor)
            case .failure(let errno):
                Syscalls.close(descriptor)
                return .failure(errno)
            }
        }
    }

    /// Sends one datagram (a UDP query) on a connected socket.
    public static func send(_ descriptor: CInt, _ bytes: UnsafeRawBufferPointer) -> Result<Int, Errno> {
        Syscalls.send(descriptor, bytes)
    }
}

/// A non-blocking TCP listener that shares its port with the other loops' listeners
/// (`SO_REUSEPORT`: the kernel spreads new connections over them). Its connections send
/// small writes at once (`TCP_NODELAY`).
public struct SharedPortListener: ~Copyable {
    public let descriptor: CInt
    public let endpoint: Endpoint

    /// Binds `endpoint` (port 0: a port is chosen; give that port to the next loop's listener).
    public init(_ endpoint: Endpoint, backlog: Int32 = 4096) throws(DialError) {
        let socket = try OwnedDescriptor(.tcp, nonBlocking: true)
        try socket.set(.reuseAddress, 1)
        try socket.set(.reusePort, 1)
        // Accepted connections inherit it: one system call per listener, not per connection.
        try socket.set(.noDelay, 1)
        if case .failure(let errno) = Syscalls.bind(socket.raw, endpoint.address, endpoint.port) {
            throw errno == .addressNotAvailable ? .addressNotLocal(endpoint.address) : DialError.from(.bind, errno)
        }
        if case .failure(let errno) = Syscalls.listen(socket.raw, backlog: backlog) { throw DialError.from(.listen, errno) }
        self.endpoint = try socket.localEndpoint()
        descriptor = socket.release()
    }

    /// What accepting one connection gave.
    public enum Accepted {
        case connection(CInt, peer: Endpoint)
        case none
        case failed(Errno)
    }

    public func accept() -> Accepted {
        switch Syscalls.acceptNonBlocking(descriptor) {
        case .success(let (connection, address, port)): .connection(connection, peer: Endpoint(address, port))
        case .failure(let errno) where errno == .resourceTemporarilyUnavailable: .none
        case .failure(let errno): .failed(errno)
        }
    }

    deinit { Syscalls.close(descriptor) }
}

/// What tells that a file changed without reading it: one `stat`, far cheaper than reading
/// (and than Foundation's attributes, which look up the owner's and group's names too).
public struct FileStamp: Hashable, Sendable {
    public let modified: Int64
    public let size: Int64
    public let inode: UInt64
    public let device: UInt64

    /// The file's stamp now; nil when it cannot be read (a missing file).
    public static func of(_ path: String) -> FileStamp? {
        try? Syscalls.fileStamp(path).get()
    }
}
