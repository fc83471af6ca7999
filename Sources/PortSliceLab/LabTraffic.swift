import PortSliceCore
import PortSliceSockets

/// One flow's fate in a lab run.
public struct FlowOutcome: Sendable {
    public let transport: Transport
    public let local: Endpoint?
    /// Nil when the flow worked both ways; else what went wrong.
    public let failure: String?
}

/// A TCP flow kept open after its first exchange, to be used again later (say, across an edge
/// restart). The socket is closed when the value goes.
public final class OpenFlow: Sendable {
    public let socket: ConnectedSocket
    public init(_ socket: consuming ConnectedSocket) { self.socket = socket }

    /// Sends `message` and checks that the echo comes back whole.
    public func echo(_ message: String, timeout: Duration = .seconds(5)) -> String? {
        LabTraffic.echo(socket, message, timeout: timeout)
    }
}

/// Traffic from a lab host's slices, opened inside the host's namespace through the data
/// plane's dialer.
public enum LabTraffic {
    /// Opens `count` TCP and `count` UDP flows from `slices` (round robin), all open at once,
    /// and exchanges one message on each with the echo `server`: half the TCP flows ask it over
    /// HTTP who they are, and the answer must be their own source. Returns each flow's outcome
    /// and the TCP echo flows that worked, still open.
    public static func exchange(inNamespace namespace: String, slices: [EgressSlice], server: Endpoint, count: Int) throws -> (outcomes: [FlowOutcome], open: [OpenFlow]) {
        try NetworkNamespace.run(at: NetworkNamespace.path(named: namespace)) {
            let dialers = try slices.map { try SliceDialer(slice: $0) }
            var outcomes: [FlowOutcome] = []
            var open: [OpenFlow] = []
            var udpFlows: [OpenFlow] = []
            for number in 0..<count {
                let dialer = dialers[number % dialers.count]
                do {
                    let flow = OpenFlow(try dialer.connectTCP(to: server, timeout: .seconds(5)))
                    // The server closes an HTTP flow after its answer; echo flows stay open.
                    let asksWho = number.isMultiple(of: 2)
                    let failure = asksWho ? askWho(flow.socket) : flow.echo("\(namespace) tcp \(number)")
                    outcomes.append(FlowOutcome(transport: .tcp, local: flow.socket.local, failure: failure))
                    if failure == nil && !asksWho { open.append(flow) }
                } catch {
                    outcomes.append(FlowOutcome(transport: .tcp, local: nil, failure: "\(error)"))
                }
                do {
                    let flow = OpenFlow(try dialer.connectUDP(to: server))
                    outcomes.append(FlowOutcome(transport: .udp, local: flow.socket.local, failure: flow.echo("\(namespace) udp \(number)")))
                    udpFlows.append(flow)
                } catch {
                    outcomes.append(FlowOutcome(transport: .udp, local: nil, failure: "\(error)"))
                }
            }
            return (outcomes, open)
        }
    }

    /// Sends one datagram too large for the far link, with don't-fragment set, and waits for
    /// the path MTU the kernel learns from the ICMP "fragmentation needed" that comes back.
    /// - Returns: the learned MTU, or nil when no ICMP error reached this host in time.
    public static func learnPathMTU(inNamespace namespace: String, slice: EgressSlice, towards destination: Endpoint, datagramSize: Int) throws -> (local: Endpoint, mtu: Int?) {
        try NetworkNamespace.run(at: NetworkNamespace.path(named: namespace)) {
            let socket = try SliceDialer(slice: slice).connectUDP(to: destination)
            try socket.forbidFragmentation()
            let initial = try socket.pathMTU()
            try socket.send([UInt8](repeating: 0x50, count: datagramSize))
            let deadline = ContinuousClock.now + .seconds(3)
            while ContinuousClock.now < deadline {
                let mtu = try socket.pathMTU()
                if mtu < initial { return (socket.local, mtu) }
                _ = try? socket.receive(timeout: .milliseconds(50))
            }
            return (socket.local, nil)
        }
    }

    /// Sends a datagram to a closed port; the ICMP "port unreachable" must come back to this
    /// host, where the connected socket reports the refusal.
    public static func refusedByClosedPort(inNamespace namespace: String, slice: EgressSlice, destination: Endpoint) throws -> (local: Endpoint, refused: Bool) {
        try NetworkNamespace.run(at: NetworkNamespace.path(named: namespace)) {
            let socket = try SliceDialer(slice: slice).connectUDP(to: destination)
            try socket.send(Array("anyone there?".utf8))
            do {
                _ = try socket.receive(timeout: .seconds(3))
                return (socket.local, false)
            } catch DialError.system(_, let errno) where errno == .connectionRefused {
                return (socket.local, true)
            } catch {
                return (socket.local, false)
            }
        }
    }

    /// Opens TCP from `source` (an address of a prefix routed to this host, bound with
    /// IPV6_FREEBIND as the proxy binds) to a closed port: the reset that answers must come back
    /// to this host, where the connect reports the refusal. No server is needed on the far side.
    /// - Returns: nil when refused (the answer came back here), else what happened instead.
    public static func refusedFromPrefix(inNamespace namespace: String, source: IPv6Address, destination: IPv6Address, port: UInt16,
                                         timeout: Duration) throws -> String? {
        try NetworkNamespace.run(at: NetworkNamespace.path(named: namespace)) {
            let descriptor = try IPv6Dial.start(from: source, to: destination, port: port)
            defer { StreamIO.close(descriptor) }
            let poller = try EventPoller(capacity: 1)
            try poller.watch(descriptor, token: 1, for: .stream)
            let milliseconds = Int32(timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)
            guard try poller.wait(timeoutMilliseconds: milliseconds, { _, _ in }) > 0 else { return "no answer within \(timeout)" }
            switch IPv6Dial.failure(of: descriptor) {
            case nil: return "connected: something listens on port \(port)"
            case .system(_, let errno)? where errno == .connectionRefused: return nil
            case let error?: return "\(error)"
            }
        }
    }

    static func echo(_ socket: borrowing ConnectedSocket, _ message: String, timeout: Duration) -> String? {
        do {
            try socket.send(Array(message.utf8))
            var received: [UInt8] = []
            while received.count < message.utf8.count {
                let bytes = try socket.receive(timeout: timeout)
                guard !bytes.isEmpty else { return "the server closed the flow after \(received.count) bytes" }
                received += bytes
            }
            return received == Array(message.utf8) ? nil : "the echo came back different"
        } catch {
            return "\(error)"
        }
    }

    /// Asks the server over HTTP which address and port it saw; they must be ours.
    static func askWho(_ socket: borrowing ConnectedSocket) -> String? {
        do {
            try socket.send(Array("GET /whoami HTTP/1.0\r\n\r\n".utf8))
            var answer: [UInt8] = []
            while true {
                let bytes = try socket.receive(timeout: .seconds(5))
                if bytes.isEmpty { break }
                answer += bytes
            }
            let text = String(decoding: answer, as: UTF8.self)
            guard text.hasPrefix("HTTP/1.0 200") else { return "unexpected HTTP answer: \(text.prefix(80))" }
            return text.hasSuffix("\r\n\r\n\(socket.local)\n") ? nil : "the server saw another source than \(socket.local): \(text.split(separator: "\n").last ?? "")"
        } catch {
            return "\(error)"
        }
    }
}
