import Foundation
import PortSliceCore
import Synchronization

/// A TCP and a UDP echo server on one address and port, as a lab's "internet" side: TCP
/// echoes each read back, except that a request starting `GET ` gets an HTTP answer naming the
/// client's address and port; UDP echoes each datagram. Every peer seen is recorded, which is
/// what the far end of a path observes as the flow's source. As a `udpSink` it only counts
/// datagrams (for packet rates) and opens no TCP port; as a `tcpSink` it only counts the bytes
/// TCP clients send (for throughput) and opens no UDP port. Stops when released.
public final class EchoServers: Sendable {
    public enum Mode: Sendable { case echo, udpSink, tcpSink }

    public let endpoint: Endpoint
    private let servers: Servers

    /// Binds the servers (port 0 picks one, the same for both: the port the kernel gave TCP
    /// may be some other program's UDP port, so with port 0 a few pairs are tried).
    public init(_ endpoint: Endpoint, mode: Mode = .echo) throws(DialError) {
        var attempt = 0
        while true {
            attempt += 1
            do {
                let (bound, listener, datagrams) = try Self.bind(endpoint, mode: mode)
                self.endpoint = bound
                servers = Servers(listener: listener, datagrams: datagrams, mode: mode)
                return
            } catch .system(let call, let errno) where call == "bind" && errno == .addressInUse && endpoint.port == 0 && attempt < 20 {
                continue
            }
        }
    }

    private static func bind(_ endpoint: Endpoint, mode: Mode) throws(DialError) -> (Endpoint, CInt?, CInt?) {
        var bound = endpoint
        var listener: CInt?
        if mode != .udpSink {
            let stream = try OwnedDescriptor(.tcp, nonBlocking: false)
            try stream.set(.reuseAddress, 1)
            if case .failure(let errno) = Syscalls.bind(stream.raw, endpoint.address, endpoint.port) {
                throw errno == .addressNotAvailable ? .addressNotLocal(endpoint.address) : DialError.from(.bind, errno)
            }
            if case .failure(let errno) = Syscalls.listen(stream.raw, backlog: 4096) { throw DialError.from(.listen, errno) }
            bound = try stream.localEndpoint()
            listener = stream.release()
        }
        var datagrams: CInt?
        if mode != .tcpSink {
            let datagram = try OwnedDescriptor(.udp, nonBlocking: false)
            if case .failure(let errno) = Syscalls.bind(datagram.raw, bound.address, bound.port) {
                listener.map(Syscalls.close)
                throw errno == .addressNotAvailable ? .addressNotLocal(endpoint.address) : DialError.from(.bind, errno)
            }
            bound = try datagram.localEndpoint()
            datagrams = datagram.release()
        }
        return (bound, listener, datagrams)
    }

    /// Peers seen so far, per transport, in arrival order (a TCP peer once per connection, a
    /// UDP peer once per datagram; none as a sink).
    public var peers: [Transport: [Endpoint]] { servers.seen.withLock { $0 } }

    /// Datagrams received so far.
    public var datagramCount: Int { servers.receivedDatagrams.load(ordering: .relaxed) }

    /// TCP bytes received so far by a `tcpSink`.
    public var byteCount: Int { servers.receivedBytes.load(ordering: .relaxed) }

    deinit { servers.stop() }

    /// The sockets and their threads; kept apart from `EchoServers` so the threads do not keep
    /// the public value alive, whose release is what stops them.
    private final class Servers: Sendable {
        let listener: CInt?
        let datagrams: CInt?
        let mode: Mode
        let stopping = Atomic<Bool>(false)
        let running = DispatchGroup()
        let seen = Mutex<[Transport: [Endpoint]]>([:])
        let receivedDatagrams = Atomic<Int>(0)
        let receivedBytes = Atomic<Int>(0)

        init(listener: CInt?, datagrams: CInt?, mode: Mode) {
            self.listener = listener
            self.datagrams = datagrams
            self.mode = mode
            if let listener {
                running.enter()
                Thread { [self] in acceptLoop(listener) }.start()
            }
            if let datagrams {
                running.enter()
                Thread { [self] in echoDatagrams(datagrams) }.start()
            }
        }

        func stop() {
            stopping.store(true, ordering: .relaxed)
            running.wait()
            listener.map(Syscalls.close)
            datagrams.map(Syscalls.close)
        }

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

        private func acceptLoop(_ listener: CInt) {
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
                guard let bytes = try? Flow.receive(connection, upTo: 65536, timeout: .milliseconds(200), from: peer) else { continue }
                guard !bytes.isEmpty else { return }
                if mode == .tcpSink {
                    receivedBytes.add(bytes.count, ordering: .relaxed)
                    continue
                }
                if bytes.starts(with: Array("GET ".utf8)) {
                    let body = "\(peer)\n"
                    let answer = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
                    try? Flow.send(connection, Array(answer.utf8), to: peer)
                    return
                }
                guard (try? Flow.send(connection, bytes, to: peer)) != nil else { return }
            }
        }

        private func echoDatagrams(_ datagrams: CInt) {
            defer { running.leave() }
            var buffer = [UInt8](repeating: 0, count: 65536)
            while readable(datagrams) {
                let received = buffer.withUnsafeMutableBytes { Syscalls.receive(from: datagrams, $0) }
                guard case .success(let (count, address, port)) = received else { continue }
                receivedDatagrams.add(1, ordering: .relaxed)
                guard mode == .echo else { continue }
                record(.udp, address, port)
                _ = buffer.withUnsafeBytes { Syscalls.send(datagrams, UnsafeRawBufferPointer(rebasing: $0[..<count]), to: address, port) }
            }
        }
    }
}
