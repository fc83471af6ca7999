import CPortSlice
import Glibc
import PortSliceCore
import Synchronization
import SystemPackage

/// Exact socket lookups through netlink sock_diag: which socket the kernel would deliver a
/// packet of a given 4-tuple to. One netlink socket serves every caller; a lock keeps each
/// request and its answer together.
public final class SockDiag: Sendable {
    /// What the kernel reported about a socket.
    public struct Answer: Hashable, Sendable {
        /// The socket's kernel cookie (`SO_COOKIE`).
        public let cookie: UInt64
        /// TCP state number (1 = established; 7 = closed, which unconnected UDP sockets report).
        public let state: UInt8
        /// The socket's own local port.
        public let localPort: UInt16
    }

    private struct Channel: ~Copyable {
        let descriptor: OwnedDescriptor
        var sequence: UInt32 = 0
    }

    private let channel: Mutex<Channel>

    /// Opens the netlink socket and checks that UDP lookups work.
    ///
    /// The netlink family is always there, but without the udp_diag module every lookup
    /// answers "no such socket", which would make every port look free; so a socket of our own
    /// is looked up first, and must be found.
    /// - Throws: `DialError.sockDiagUnavailable` when lookups find nothing;
    ///   `.permissionDenied` or `.system` when the netlink socket cannot be opened (a seccomp
    ///   policy, or a kernel without netlink).
    public init() throws(DialError) {
        switch Syscalls.sockDiagSocket() {
        case .success(let raw): channel = Mutex(Channel(descriptor: OwnedDescriptor(raw)))
        case .failure(let errno): throw DialError.from(.socket, errno)
        }
        let probe = try OwnedDescriptor(.udp, nonBlocking: true)
        if case .failure(let errno) = Syscalls.bind(probe.raw, IPv4Address(bits: 0), 0) { throw DialError.from(.bind, errno) }
        let port = try probe.localEndpoint().port
        let answer = try lookup(.udp, local: Endpoint(IPv4Address(127, 0, 0, 1), port), remote: Endpoint(IPv4Address(127, 0, 0, 1), 9))
        guard answer?.cookie == (try probe.cookie()) else {
            throw .sockDiagUnavailable(reason: "a UDP socket of our own was not found")
        }
    }

    /// The socket that owns the 4-tuple `local` <-> `remote`, or nil when none does. For UDP
    /// an unconnected socket bound to `local` (or the wildcard) answers too.
    public func lookup(_ transport: Transport, local: Endpoint, remote: Endpoint) throws(DialError) -> Answer? {
        try lookup(transport, locals: [local], remote: remote)[0]
    }

    /// Most lookups one batch may carry.
    public static let batchLimit = 64

    /// Looks up several local ends towards one remote end at once: all requests go out in one
    /// `send` and the answers come back in one `recvmmsg`, so a search through a nearly full
    /// slice pays two system calls per batch instead of two per port.
    /// - Returns: one answer per element of `locals`, in order.
    public func lookup(_ transport: Transport, locals: [Endpoint], remote: Endpoint) throws(DialError) -> [Answer?] {
        precondition((1...Self.batchLimit).contains(locals.count), "between 1 and \(Self.batchLimit) lookups per batch")
        var requests = locals.map { local in Self.request(transport, local: local, remote: remote) }
        return try channel.withLock { (channel: inout Channel) throws(DialError) -> [Answer?] in
            let first = channel.sequence &+ 1
            for index in requests.indices { requests[index].header.nlmsg_seq = first &+ UInt32(index) }
            channel.sequence &+= UInt32(requests.count)
            let descriptor = channel.descriptor.raw
            if case .failure(let errno) = requests.withUnsafeBytes({ Syscalls.send(descriptor, $0) }) {
                throw DialError.from(.send, errno)
            }
            var answers = [Answer?](repeating: nil, count: requests.count)
            var answered = [Bool](repeating: false, count: requests.count)
            var pending = requests.count
            let slotSize = 256
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: slotSize * pending, alignment: 8)
            buffer.initializeMemory(as: UInt8.self, repeating: 0)
            defer { buffer.deallocate() }
            var lengths = [UInt32](repeating: 0, count: pending)
            while pending > 0 {
                let received = lengths.withUnsafeMutableBufferPointer { lengths in
                    Syscalls.receiveDatagrams(descriptor, buffer, slotSize: slotSize, lengths: UnsafeMutableBufferPointer(rebasing: lengths[..<pending]))
                }
                let count: Int
                switch received {
                case .success(let value): count = value
                case .failure(let errno) where errno == .resourceTemporarilyUnavailable:
                    // The kernel answers while handling the send, so this is rare; wait briefly.
                    if case .success(0) = Syscalls.poll(descriptor, events: Syscalls.pollIn, timeoutMilliseconds: 1000) {
                        throw DialError.system(call: "sock_diag (no answer within 1 s)", errno: .timedOut)
                    }
                    continue
                case .failure(let errno): throw DialError.from(.recvmmsg, errno)
                }
                for message in 0..<count {
                    let slot = UnsafeRawBufferPointer(rebasing: buffer[(message * slotSize)..<((message + 1) * slotSize)])
                    guard Int(lengths[message]) >= MemoryLayout<nlmsghdr>.size else { continue }
                    let header = slot.loadUnaligned(as: nlmsghdr.self)
                    // Only whole answers of the two expected kinds count; anything else (and an
                    // answer to an earlier, abandoned request) is skipped.
                    let needed = MemoryLayout<nlmsghdr>.size + (header.nlmsg_type == UInt16(NLMSG_ERROR)
                        ? MemoryLayout<Int32>.size : MemoryLayout<inet_diag_msg>.size)
                    guard header.nlmsg_type == UInt16(NLMSG_ERROR) || header.nlmsg_type == cportslice_sock_diag_by_family,
                          Int(lengths[message]) >= needed else { continue }
                    let index = Int(header.nlmsg_seq &- first)
                    guard index >= 0 && index < answers.count && !answered[index] else { continue }
                    answers[index] = try Self.decode(slot.loadUnaligned(as: cportslice_diag_answer.self))
                    answered[index] = true
                    pending -= 1
                }
            }
            return answers
        }
    }

    private static func request(_ transport: Transport, local: Endpoint, remote: Endpoint) -> cportslice_diag_request {
        var request = cportslice_diag_request()
        request.header.nlmsg_len = UInt32(MemoryLayout<cportslice_diag_request>.size)
        request.header.nlmsg_type = cportslice_sock_diag_by_family
        request.header.nlmsg_flags = UInt16(NLM_F_REQUEST)
        request.request.sdiag_family = UInt8(AF_INET)
        request.request.sdiag_protocol = UInt8(transport == .tcp ? IPPROTO_TCP : IPPROTO_UDP)
        request.request.idiag_states = transport == .tcp ? ~0 : 1 << 1  // UDP: TCP_ESTABLISHED
        // The kernel looks the tuple up as an arriving packet would be: for UDP the source is
        // the remote end; TCP's lookup takes the source as the socket's own end.
        let (source, destination) = transport == .udp ? (remote, local) : (local, remote)
        request.request.id.idiag_sport = source.port.bigEndian
        request.request.id.idiag_dport = destination.port.bigEndian
        request.request.id.idiag_src.0 = source.address.bits.bigEndian
        request.request.id.idiag_dst.0 = destination.address.bits.bigEndian
        request.request.id.idiag_cookie = (cportslice_inet_diag_nocookie, cportslice_inet_diag_nocookie)
        return request
    }

    /// nil for "no such socket" (ENOENT); any other error answer throws.
    private static func decode(_ answer: cportslice_diag_answer) throws(DialError) -> Answer? {
        if answer.header.nlmsg_type == UInt16(NLMSG_ERROR) {
            let errno = Errno(rawValue: -answer.body.error.error)
            if errno == .noSuchFileOrDirectory { return nil }
            if errno == .permissionDenied || errno == .notPermitted { throw .permissionDenied(call: "sock_diag", errno: errno) }
            throw .system(call: "sock_diag", errno: errno)
        }
        let message = answer.body.message
        return Answer(
            cookie: UInt64(message.id.idiag_cookie.1) << 32 | UInt64(message.id.idiag_cookie.0),
            state: message.idiag_state,
            localPort: UInt16(bigEndian: message.id.idiag_sport))
    }
}
