import Foundation
import PortSliceCore
import Synchronization

/// A TCP and a UDP echo server on one address and port, as a lab's "internet" side: TCP
/// echoes each read back, except that a request starting `GET ` gets an HTTP answer naming the
/// client's address and port; UDP echoes each datagram. Every peer seen is recorded, which is
/// what the far end of a path observes as the flow's source. Stops when released.
public final class EchoServers: Sendable {
    public let endpoint: Endpoint
    private let listener: CInt
    private let datagrams: CInt
    private let stopping = Atomic<Bool>(false)
    private let running = DispatchGroup()
    private let seen = Mutex<[Transport: [Endpoint]]>([:])

    /// Binds both servers (port 0 picks one, the same for both when free).
    public init(_ endpoint: Endpoint) throws(DialError) {
        let stream = try OwnedDescriptor(.tcp, nonBlocking: false)
        try stream.set(.reuseAddress, 1)
        if case .failure(let errno) = Syscalls.bind(stream.raw, endpoint.address, endpoint.port) {
            throw errno == .addressNotAvailable ? .addressNotLocal(endpoint.address) : DialError.from(.bind, errno)
        }
        if case .failure(let errno) = Syscalls.listen(stream.raw, backlog: 4096) { throw DialError.from(.listen, errno) }
        let bound = try stream.localEndpoint()
        let datagram = try OwnedDescriptor(.udp, nonBlocking: false)
        if case .failure(let errno) = Syscalls.bind(datagram.raw, bound.address, bound.port) { throw DialError.from(.bind, errno) }
        self.endpoint = bound
        listener = stream.release()
        datagrams = datagram.release()
        Thread { [self] in acceptLoop() }.start()
        Thread { [self] in echoDatagrams() }.start()
        running.enter()
        running.enter()
    }

    /// Peers seen so far, per transport, in arrival order (a TCP peer once per connection, a
    /// UDP peer once per datagram).
    public var peers: [Transport: [Endpoint]] { seen.withLock { $0 } }

    private func record(_ transport: Transport, _ address: IPv4Address, _ port: UInt16) {
        seen.withLock { $0[transport, default: []].append(Endpoint(address, port)) }
    }

    /// Waits for `descriptor` to be readable, checking every 100 ms whether to stop.
    private func readable(_ descriptor: CInt) -> Bool {
        while !stopping.load(ordering: .relaxed) {
            if case .success(let events) = Syscalls.poll(descriptor, events: Syscalls.pollIn, timeoutMilliseconds: 100), events != 0 { return true }
        }
        return false
    }

    private func acceptLoop() {
        defer { running.leave() }
        while readable(listener) {
            guard case .success(let connection) = Syscalls.accept(listener) else { continue }
            guard case .success(let (address, port)) = Syscalls.peerAddress(connection) else { Syscalls.close(connection); continue }
            record(.tcp, address, port)
            running.enter()
            // A thread per connection: flows stay open and block their reader, which would
            // starve Dispatch's pool (it adds threads slowly) and stall new connections.
            Thread { [self] in
                defer { running.leave(); Syscalls.close(connection) }
                serve(connection, peer: Endpoint(address, port))
            }.start()
        }
    }

    private func serve(_ connection: CInt, peer: Endpoint) {
        while !stopping.load(ordering: .relaxed) {
            guard let bytes = try? Flow.receive(connection, upTo: 65536, timeout: .seconds(30), from: peer), !bytes.isEmpty else { return }
            if bytes.starts(with: Array("GET ".utf8)) {
                let body = "\(peer)\n"
                let answer = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
                try? Flow.send(connection, Array(answer.utf8))
                return
            }
            guard (try? Flow.send(connection, bytes)) != nil else { return }
        }
    }

    private func echoDatagrams() {
        defer { running.leave() }
        var buffer = [UInt8](repeating: 0, count: 65536)
        while readable(datagrams) {
            let received = buffer.withUnsafeMutableBytes { Syscalls.receive(from: datagrams, $0) }
            guard case .success(let (count, address, port)) = received else { continue }
            record(.udp, address, port)
            _ = buffer.withUnsafeBytes { Syscalls.send(datagrams, UnsafeRawBufferPointer(rebasing: $0[..<count]), to: address, port) }
        }
    }

    deinit {
        stopping.store(true, ordering: .relaxed)
        running.wait()
        Syscalls.close(listener)
        Syscalls.close(datagrams)
    }
}
