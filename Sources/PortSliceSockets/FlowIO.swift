import PortSliceCore

/// Blocking reads and writes on a flow, for tools and labs that check a path end to end
/// (a proxy hands its flows to SwiftNIO instead).
extension ConnectedSocket {
    /// Sends all of `bytes` on TCP, or `bytes` as one datagram on UDP; on a non-blocking socket
    /// it waits for room as a blocking one would, for at most `timeout` without progress.
    /// - Throws: `DialError.timedOut` when the peer stopped taking data for that long.
    public func send(_ bytes: [UInt8], timeout: Duration = .seconds(30)) throws(DialError) {
        try Flow.send(descriptor, bytes, timeout: timeout, to: remote)
    }

    /// Waits up to `timeout` for data and returns what arrived: empty when a TCP peer closed.
    /// - Throws: `DialError.timedOut` when nothing came in time; a refused or unreachable UDP
    ///   destination (an ICMP error) comes back as the system error.
    public func receive(upTo limit: Int = 65536, timeout: Duration) throws(DialError) -> [UInt8] {
        try Flow.receive(descriptor, upTo: limit, timeout: timeout, from: remote)
    }

    /// Sets don't-fragment on every packet, so a smaller link on the path answers with ICMP
    /// "fragmentation needed" and the kernel learns the path MTU.
    public func forbidFragmentation() throws(DialError) {
        if case .failure(let errno) = Syscalls.setOption(descriptor, .pathMTUDiscovery, SocketOption.pathMTUDiscoveryDo) {
            throw DialError.from(.setsockopt, errno)
        }
    }

    /// The path MTU the kernel holds for this flow's destination.
    public func pathMTU() throws(DialError) -> Int {
        switch Syscalls.getOption(descriptor, .pathMTU, as: Int32.self) {
        case .success(let mtu): return Int(mtu)
        case .failure(let errno): throw DialError.from(.getsockopt, errno)
        }
    }
}

/// The loops behind `ConnectedSocket`'s I/O, shared with the echo servers.
enum Flow {
    static func send(_ descriptor: CInt, _ bytes: [UInt8], timeout: Duration = .seconds(30), to remote: Endpoint) throws(DialError) {
        var sent = 0
        var lastProgress = ContinuousClock.now
        while sent < bytes.count {
            // A TCP peer that has gone is `EPIPE` here, not SIGPIPE ending the process.
            let result = bytes.withUnsafeBytes { Syscalls.sendStream(descriptor, UnsafeRawBufferPointer(rebasing: $0[sent...])) }
            switch result {
            case .success(let count):
                sent += count
                lastProgress = ContinuousClock.now
            case .failure(let errno) where errno == .resourceTemporarilyUnavailable:
                // A non-blocking socket with a full send buffer: wait until it drains.
                guard ContinuousClock.now - lastProgress < timeout else { throw .timedOut(destination: remote) }
                _ = Syscalls.poll(descriptor, events: Syscalls.pollOut, timeoutMilliseconds: 100)
            case .failure(let errno) where errno == .interrupted: continue
            case .failure(let errno): throw DialError.from(.send, errno)
            }
        }
    }

    static func receive(_ descriptor: CInt, upTo limit: Int, timeout: Duration, from remote: Endpoint) throws(DialError) -> [UInt8] {
        try waitReadable(descriptor, timeout: timeout, from: remote)
        var buffer = [UInt8](repeating: 0, count: limit)
        let result = buffer.withUnsafeMutableBytes { Syscalls.receive(descriptor, $0) }
        switch result {
        case .success(let count): return Array(buffer.prefix(count))
        case .failure(let errno): throw DialError.from(.recv, errno)
        }
    }

    static func waitReadable(_ descriptor: CInt, timeout: Duration, from remote: Endpoint) throws(DialError) {
        let deadline = ContinuousClock.now + timeout
        while true {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { throw .timedOut(destination: remote) }
            let milliseconds = CInt(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
            switch Syscalls.poll(descriptor, events: Syscalls.pollIn, timeoutMilliseconds: milliseconds) {
            case .success(0): continue
            case .success: return
            case .failure(let errno) where errno == .interrupted: continue
            case .failure(let errno): throw DialError.from(.poll, errno)
            }
        }
    }
}
