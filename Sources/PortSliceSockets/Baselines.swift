import Foundation
import Synchronization
import PortSliceCore
import SystemPackage

/// Flows whose local port the kernel picks from the namespace's whole range: the plain
/// kernel behaviour that slicing is measured against, and the way to open a flow that needs
/// no slice.
public enum UnslicedConnect {
    /// `socket` + `connect`; the kernel binds the source address and port.
    public static func tcp(to destination: Endpoint, timeout: Duration = .seconds(10)) throws(DialError) -> ConnectedSocket {
        let socket = try OwnedDescriptor(.tcp, nonBlocking: true)
        switch Syscalls.connect(socket.raw, destination.address, destination.port) {
        case .success: break
        case .failure(let errno) where errno == .nowInProgress || errno == .interrupted: break
        case .failure(let errno) where errno == .addressNotAvailable || errno == .resourceTemporarilyUnavailable:
            throw .sliceExhausted(slice: .empty, destination: destination)
        case .failure(let errno): throw DialError.from(.connect, errno)
        }
        let local = try socket.localEndpoint()
        return try PendingConnection(socket, local: local, remote: destination).finish(timeout: timeout)
    }

    /// `socket` + `connect` for UDP: the kernel never shares the port it picks.
    public static func udp(to destination: Endpoint) throws(DialError) -> ConnectedSocket {
        let socket = try OwnedDescriptor(.udp, nonBlocking: false)
        if case .failure(let errno) = Syscalls.connect(socket.raw, destination.address, destination.port) {
            throw errno == .resourceTemporarilyUnavailable
                ? .sliceExhausted(slice: .empty, destination: destination) : DialError.from(.connect, errno)
        }
        let local = try socket.localEndpoint()
        return ConnectedSocket(socket, transport: .udp, local: local, remote: destination)
    }
}

/// A TCP listener whose thread accepts every connection, so the accept queue never fills, and
/// either closes it at once (the client's side keeps its 4-tuple until it closes too) or holds
/// it open until the listener goes, for counting live flows. A peer for benchmarks and tests.
public final class AcceptingListener: Sendable {
    public let endpoint: Endpoint
    private let descriptor: CInt
    private let stopped = DispatchSemaphore(value: 0)
    private let held = HeldDescriptors()

    /// Accepted descriptors kept open; a class so the accept thread can share it.
    private final class HeldDescriptors: Sendable {
        let list = Mutex<[CInt]>([])
    }

    /// Listens on `endpoint` (port 0 picks one) and starts accepting.
    public init(_ endpoint: Endpoint, holding: Bool = false) throws(DialError) {
        let socket = try OwnedDescriptor(.tcp, nonBlocking: false)
        try socket.set(.reuseAddress, 1)
        if case .failure(let errno) = Syscalls.bind(socket.raw, endpoint.address, endpoint.port) {
            throw errno == .addressNotAvailable ? .addressNotLocal(endpoint.address) : DialError.from(.bind, errno)
        }
        if case .failure(let errno) = Syscalls.listen(socket.raw, backlog: 4096) { throw DialError.from(.listen, errno) }
        self.endpoint = try socket.localEndpoint()
        descriptor = socket.release()
        let descriptor = descriptor, stopped = stopped, held = held
        Thread {
            // Accept until `shutdown` (EINVAL); out of descriptors or buffers is waited out.
            while true {
                switch Syscalls.accept(descriptor) {
                case .success(let accepted) where holding: held.list.withLock { $0.append(accepted) }
                case .success(let accepted): Syscalls.close(accepted)
                case .failure(let errno) where errno == .invalidArgument: stopped.signal(); return
                case .failure: Thread.sleep(forTimeInterval: 0.001)
                }
            }
        }.start()
    }

    /// Connections held open now (always 0 for a closing listener).
    public var heldCount: Int { held.list.withLock { $0.count } }

    deinit {
        Syscalls.shutdown(descriptor)  // wakes the accept loop, which then ends
        stopped.wait()
        Syscalls.close(descriptor)
        held.list.withLock { $0.forEach(Syscalls.close) }
    }
}
