import PortSliceCore
import SystemPackage

/// TCP from chosen IPv6 source addresses. IPv6 is not scarce, so it is not cut into port
/// slices: each client leaves from an address of its own inside a prefix routed to this host
/// (`ip -6 route add local PREFIX dev lo`, which makes the host answer for every address in
/// it). The socket binds its address with `IPV6_FREEBIND`, so nothing is configured per
/// address, and the kernel picks the port.
public enum IPv6Dial {
    /// Starts a non-blocking connect from `source` to `destination`: watch the descriptor for
    /// writability, then ask `failure(of:)`.
    public static func start(from source: IPv6Address, to destination: IPv6Address, port: UInt16) throws(DialError) -> CInt {
        let socket: OwnedDescriptor
        switch Syscalls.socketIPv6(.tcp) {
        case .success(let raw): socket = OwnedDescriptor(raw)
        case .failure(let errno): throw DialError.from(.socket, errno)
        }
        try socket.set(.ipv6FreeBind, 1)
        if case .failure(let errno) = Syscalls.bind(socket.raw, source, 0) { throw DialError.from(.bind, errno) }
        switch Syscalls.connect(socket.raw, destination, port) {
        case .success:
            break
        case .failure(let errno) where errno == .nowInProgress || errno == .interrupted:
            break
        case .failure(let errno):
            throw DialError.from(.connect, errno)
        }
        return socket.release()
    }

    /// Why the handshake on `descriptor` failed (`SO_ERROR`), or nil when it connected.
    public static func failure(of descriptor: CInt) -> DialError? {
        switch Syscalls.getOption(descriptor, .error, as: CInt.self) {
        case .success(0): nil
        case .success(let code): DialError.from(.connect, Errno(rawValue: code))
        case .failure(let errno): DialError.from(.getsockopt, errno)
        }
    }

    /// The address and port the connection left from.
    public static func local(of descriptor: CInt) -> (address: IPv6Address, port: UInt16)? {
        try? Syscalls.localIPv6Address(descriptor).get()
    }
}
