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

    /// Opens the netlink socket.
    /// - Throws: `DialError.system` when sock_diag is unavailable (a kernel without
    ///   `CONFIG_INET_DIAG`, or a seccomp policy that forbids netlink).
    public init() throws(DialError) {
        switch Syscalls.sockDiagSocket() {
        case .success(let raw): channel = Mutex(Channel(descriptor: OwnedDescriptor(raw)))
        case .failure(let errno): throw DialError.from(.socket, errno)
        }
    }

    /// The socket that owns the 4-tuple `local` <-> `remote`, or nil when none does. For UDP
    /// an unconnected socket bound to `local` (or the wildcard) answers too.
    public func lookup(_ transport: Transport, local: Endpoint, remote: Endpoint) throws(DialError) -> Answer? {
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

        return try channel.withLock { (channel: inout Channel) throws(DialError) -> Answer? in
            channel.sequence &+= 1
            request.header.nlmsg_seq = channel.sequence
            let descriptor = channel.descriptor.raw
            let sent = withUnsafeBytes(of: &request) { Syscalls.send(descriptor, $0) }
            if case .failure(let errno) = sent { throw DialError.from(.send, errno) }
            var answer = cportslice_diag_answer()
            while true {
                let received = withUnsafeMutableBytes(of: &answer) { Syscalls.receive(descriptor, $0) }
                let count: Int
                switch received {
                case .success(let value): count = value
                case .failure(let errno): throw DialError.from(.recv, errno)
                }
                guard count >= MemoryLayout<nlmsghdr>.size else {
                    throw DialError.system(call: "sock_diag", errno: .ioError)
                }
                // A late answer to an earlier request cannot arrive while the lock is held,
                // but an answer with another sequence number is skipped all the same.
                guard answer.header.nlmsg_seq == channel.sequence else { continue }
                if answer.header.nlmsg_type == UInt16(NLMSG_ERROR) {
                    let errno = Errno(rawValue: -answer.body.error.error)
                    if errno == .noSuchFileOrDirectory { return nil }
                    throw DialError.from(.recv, errno)
                }
                let message = answer.body.message
                return Answer(
                    cookie: UInt64(message.id.idiag_cookie.1) << 32 | UInt64(message.id.idiag_cookie.0),
                    state: message.idiag_state,
                    localPort: UInt16(bigEndian: message.id.idiag_sport))
            }
        }
    }
}
