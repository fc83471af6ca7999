import CPortSlice
import Glibc
import PortSliceCore
import SystemPackage

/// The one door to libc: every system call of this module goes through here.
///
/// Each wrapper is `@inline(never)` and reads `errno` right after the call, before any other
/// code (debug bookkeeping included) can change it. Results come back as `Result<_, Errno>`;
/// `EINTR` is retried except for `close` (the descriptor is gone either way), `connect` (the
/// attempt goes on in the kernel; the dialer waits for it instead) and `poll` (the caller
/// waits again for what is left of its deadline). `EBADF` and `EFAULT` trap: they are our bugs, not the
/// network's. Debug builds can inject errnos per call (`SyscallFaults`).
enum Syscalls {
    enum Call: String, Sendable, CaseIterable {
        case socket, setsockopt, getsockopt, bind, connect, getsockname, close, poll, send, recv
        case listen, accept, fcntl, setns, uname, getrlimit, setrlimit, getaddrinfo
        case shutdown, recvmmsg, recvfrom, sendto, getpeername, getifaddrs
        case epollCreate = "epoll_create1", epollCtl = "epoll_ctl", epollWait = "epoll_wait", eventfd, read, write
        case accept4, stat
        case schedGetaffinity = "sched_getaffinity", schedSetaffinity = "sched_setaffinity", prctl
    }

    // MARK: - Plumbing

    /// Reads errno for `call`, retrying `EINTR` when `body` may be repeated.
    @inline(__always)
    private static func perform<T>(
        _ call: Call, retryOnInterrupt: Bool = true, _ body: () -> T, failed: (T) -> Bool
    ) -> Result<T, Errno> {
        while true {
            #if DEBUG
            // A descriptor must really be closed, and an EINTR that is not retried stands for
            // work the kernel goes on with, which an injected fault cannot imitate.
            if call != .close, let injected = SyscallFaults.take(call) {
                precondition(injected != .interrupted || retryOnInterrupt, "EINTR can be injected only into calls that retry it")
                if injected == .interrupted { continue }
                return .failure(injected)
            }
            #endif
            let value = body()
            let error = failed(value) ? Errno(rawValue: Glibc.errno) : nil  // read before anything else runs
            #if DEBUG
            if call == .close || error == nil { SyscallFaults.record(call) }
            #endif
            guard let error else { return .success(value) }
            precondition(error != .badFileDescriptor && error != .badAddress, "\(call) failed with \(error): a bug in portslice")
            if error == .interrupted && retryOnInterrupt { continue }
            return .failure(error)
        }
    }

    @inline(__always)
    private static func performReturningInt32(_ call: Call, retryOnInterrupt: Bool = true, _ body: () -> CInt) -> Result<CInt, Errno> {
        perform(call, retryOnInterrupt: retryOnInterrupt, body) { $0 < 0 }
    }

    private static func socketAddress(_ address: IPv4Address, _ port: UInt16) -> sockaddr_in {
        var storage = sockaddr_in()
        storage.sin_family = sa_family_t(AF_INET)
        storage.sin_port = port.bigEndian
        storage.sin_addr = in_addr(s_addr: address.bits.bigEndian)
        return storage
    }

    private static func withSocketAddress<T>(_ address: IPv4Address, _ port: UInt16, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        var storage = socketAddress(address, port)
        return withUnsafePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }

    // MARK: - Sockets

    /// `socket(AF_INET, type | SOCK_CLOEXEC [| SOCK_NONBLOCK], 0)`.
    @inline(never)
    static func socket(_ transport: Transport, nonBlocking: Bool) -> Result<CInt, Errno> {
        let flags = CInt(SOCK_CLOEXEC.rawValue) | (nonBlocking ? CInt(SOCK_NONBLOCK.rawValue) : 0)
        let type = transport == .tcp ? CInt(SOCK_STREAM.rawValue) : CInt(SOCK_DGRAM.rawValue)
        return performReturningInt32(.socket) { Glibc.socket(AF_INET, type | flags, 0) }
    }

    /// `socket(AF_INET6, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)`.
    @inline(never)
    static func socketIPv6(_ transport: Transport) -> Result<CInt, Errno> {
        let type = transport == .tcp ? CInt(SOCK_STREAM.rawValue) : CInt(SOCK_DGRAM.rawValue)
        return performReturningInt32(.socket) { Glibc.socket(AF_INET6, type | CInt(SOCK_CLOEXEC.rawValue) | CInt(SOCK_NONBLOCK.rawValue), 0) }
    }

    /// `socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG)`.
    @inline(never)
    static func sockDiagSocket() -> Result<CInt, Errno> {
        performReturningInt32(.socket) {
            Glibc.socket(AF_NETLINK, CInt(SOCK_DGRAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue), NETLINK_SOCK_DIAG)
        }
    }

    /// `close(2)`; never retried, since the descriptor is released even when it reports EINTR.
    @inline(never)
    static func close(_ descriptor: CInt) {
        _ = performReturningInt32(.close, retryOnInterrupt: false) { Glibc.close(descriptor) }
    }

    /// `setsockopt(2)` with a 4-byte value.
    @inline(never)
    static func setOption(_ descriptor: CInt, _ option: SocketOption, _ value: UInt32) -> Result<Void, Errno> {
        var value = value
        return performReturningInt32(.setsockopt) {
            Glibc.setsockopt(descriptor, option.level, option.name, &value, socklen_t(MemoryLayout<UInt32>.size))
        }.map { _ in }
    }

    /// `setsockopt(SO_LINGER, {1, 0})`: close with a reset and leave no TIME_WAIT.
    @inline(never)
    static func setResetOnClose(_ descriptor: CInt) -> Result<Void, Errno> {
        var value = linger(l_onoff: 1, l_linger: 0)
        return performReturningInt32(.setsockopt) {
            Glibc.setsockopt(descriptor, SOL_SOCKET, SO_LINGER, &value, socklen_t(MemoryLayout<linger>.size))
        }.map { _ in }
    }

    /// `getsockopt(2)` of a fixed-size integer value.
    @inline(never)
    static func getOption<Value: FixedWidthInteger>(_ descriptor: CInt, _ option: SocketOption, as: Value.Type) -> Result<Value, Errno> {
        var value: Value = 0
        var length = socklen_t(MemoryLayout<Value>.size)
        return performReturningInt32(.getsockopt) {
            Glibc.getsockopt(descriptor, option.level, option.name, &value, &length)
        }.map { _ in value }
    }

    /// `bind(2)` to an IPv4 address and port (0 lets the kernel choose, now or at connect).
    @inline(never)
    static func bind(_ descriptor: CInt, _ address: IPv4Address, _ port: UInt16) -> Result<Void, Errno> {
        withSocketAddress(address, port) { pointer, length in
            performReturningInt32(.bind) { Glibc.bind(descriptor, pointer, length) }
        }.map { _ in }
    }

    /// `connect(2)`; `EINPROGRESS` and `EINTR` come back as failures for the caller to wait on.
    @inline(never)
    static func connect(_ descriptor: CInt, _ address: IPv4Address, _ port: UInt16) -> Result<Void, Errno> {
        withSocketAddress(address, port) { pointer, length in
            performReturningInt32(.connect, retryOnInterrupt: false) { Glibc.connect(descriptor, pointer, length) }
        }.map { _ in }
    }

    private static func withSocketAddress<T>(_ address: IPv6Address, _ port: UInt16, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        var storage = sockaddr_in6()
        storage.sin6_family = sa_family_t(AF_INET6)
        storage.sin6_port = port.bigEndian
        withUnsafeMutableBytes(of: &storage.sin6_addr) { bytes in
            for index in 0..<16 { bytes[index] = UInt8(truncatingIfNeeded: address.bits >> (120 - 8 * index)) }
        }
        return withUnsafePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in6>.size)) }
        }
    }

    /// `bind(2)` to an IPv6 address and port.
    @inline(never)
    static func bind(_ descriptor: CInt, _ address: IPv6Address, _ port: UInt16) -> Result<Void, Errno> {
        withSocketAddress(address, port) { pointer, length in
            performReturningInt32(.bind) { Glibc.bind(descriptor, pointer, length) }
        }.map { _ in }
    }

    /// `connect(2)` to an IPv6 address; as the IPv4 one, `EINPROGRESS` comes back as a failure.
    @inline(never)
    static func connect(_ descriptor: CInt, _ address: IPv6Address, _ port: UInt16) -> Result<Void, Errno> {
        withSocketAddress(address, port) { pointer, length in
            performReturningInt32(.connect, retryOnInterrupt: false) { Glibc.connect(descriptor, pointer, length) }
        }.map { _ in }
    }

    /// `getsockname(2)` of an IPv6 socket.
    @inline(never)
    static func localIPv6Address(_ descriptor: CInt) -> Result<(IPv6Address, UInt16), Errno> {
        var storage = sockaddr_in6()
        var length = socklen_t(MemoryLayout<sockaddr_in6>.size)
        return withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                performReturningInt32(.getsockname) { Glibc.getsockname(descriptor, raw, &length) }
            }
        }.map { _ in
            let bits = withUnsafeBytes(of: storage.sin6_addr) { bytes in bytes.reduce(UInt128(0)) { $0 << 8 | UInt128($1) } }
            return (IPv6Address(bits: bits), UInt16(bigEndian: storage.sin6_port))
        }
    }

    /// `getsockname(2)` of an IPv4 socket.
    @inline(never)
    static func localAddress(_ descriptor: CInt) -> Result<(IPv4Address, UInt16), Errno> {
        socketName(.getsockname) { Glibc.getsockname(descriptor, $0, $1) }
    }

    /// `getpeername(2)` of a connected IPv4 socket.
    @inline(never)
    static func peerAddress(_ descriptor: CInt) -> Result<(IPv4Address, UInt16), Errno> {
        socketName(.getpeername) { Glibc.getpeername(descriptor, $0, $1) }
    }

    /// Reads an IPv4 socket address through `call` (getsockname or getpeername).
    @inline(__always)
    private static func socketName(
        _ name: Call, _ call: (UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> CInt
    ) -> Result<(IPv4Address, UInt16), Errno> {
        var storage = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        return withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                performReturningInt32(name) { call(raw, &length) }
            }
        }.map { _ in (IPv4Address(bits: UInt32(bigEndian: storage.sin_addr.s_addr)), UInt16(bigEndian: storage.sin_port)) }
    }

    /// `poll(2)` on one descriptor; returns the revents, or 0 on timeout. EINTR comes back to
    /// the caller, which knows how much of its deadline is left.
    @inline(never)
    static func poll(_ descriptor: CInt, events: Int16, timeoutMilliseconds: CInt) -> Result<Int16, Errno> {
        var entry = pollfd(fd: descriptor, events: events, revents: 0)
        return performReturningInt32(.poll, retryOnInterrupt: false) { Glibc.poll(&entry, 1, timeoutMilliseconds) }
            .map { $0 == 0 ? 0 : entry.revents }
    }

    static let pollOut = Int16(POLLOUT)

    // MARK: - epoll

    /// `epoll_create1(EPOLL_CLOEXEC)`.
    @inline(never)
    static func epollCreate() -> Result<CInt, Errno> {
        performReturningInt32(.epollCreate) { CPortSlice.epoll_create1(CInt(EPOLL_CLOEXEC)) }
    }

    /// `epoll_ctl(EPOLL_CTL_DEL)`.
    @inline(never)
    static func epollRemove(_ epoll: CInt, _ descriptor: CInt) -> Result<Void, Errno> {
        performReturningInt32(.epollCtl) { CPortSlice.epoll_ctl(epoll, EPOLL_CTL_DEL, descriptor, nil) }.map { _ in }
    }

    /// `epoll_ctl(EPOLL_CTL_ADD)` for `events` (the C target's `cportslice_epoll_*` sets),
    /// `token` as the registration's data: the engine's connection slot, not the descriptor.
    @inline(never)
    static func epollWatch(_ epoll: CInt, _ descriptor: CInt, events: UInt32, token: UInt64) -> Result<Void, Errno> {
        var event = epoll_event(events: events, data: epoll_data_t(u64: token))
        return performReturningInt32(.epollCtl) { CPortSlice.epoll_ctl(epoll, EPOLL_CTL_ADD, descriptor, &event) }.map { _ in }
    }

    /// Room for `capacity` epoll events, for `epollWait(_:into:capacity:timeoutMilliseconds:_:)`
    /// to fill again and again without allocating.
    static func allocateEpollEvents(capacity: Int) -> UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(UnsafeMutablePointer<epoll_event>.allocate(capacity: capacity))
    }

    static func deallocateEpollEvents(_ events: UnsafeMutableRawPointer) {
        events.assumingMemoryBound(to: epoll_event.self).deallocate()
    }

    /// `epoll_wait(2)` into `events` (from `allocateEpollEvents`), then `handle(token, events)`
    /// for each ready registration. EINTR counts as no event. - Returns: how many there were.
    @inline(never)
    static func epollWait(_ epoll: CInt, into events: UnsafeMutableRawPointer, capacity: Int, timeoutMilliseconds: CInt,
                          _ handle: (UInt64, UInt32) -> Void) -> Result<Int, Errno> {
        let typed = events.assumingMemoryBound(to: epoll_event.self)
        switch performReturningInt32(.epollWait, retryOnInterrupt: false, { CPortSlice.epoll_wait(epoll, typed, CInt(capacity), timeoutMilliseconds) }) {
        case .success(let count):
            for index in 0..<Int(count) { handle(typed[index].data.u64, typed[index].events) }
            return .success(Int(count))
        case .failure(let errno) where errno == .interrupted: return .success(0)
        case .failure(let errno): return .failure(errno)
        }
    }

    /// `eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)`: a counter another thread's `epoll_wait` can
    /// be woken with.
    @inline(never)
    static func eventDescriptor() -> Result<CInt, Errno> {
        performReturningInt32(.eventfd) { CPortSlice.eventfd(0, CInt(EFD_CLOEXEC) | CInt(EFD_NONBLOCK)) }
    }

    /// Adds one to an eventfd's counter (it becomes readable).
    @inline(never)
    static func signalEvent(_ descriptor: CInt) {
        var one: UInt64 = 1
        _ = perform(.write, { Glibc.write(descriptor, &one, 8) }) { $0 < 0 }
    }

    /// The CPUs the calling thread may run on, in order.
    @inline(never)
    static func allowedCPUs() -> Result<[Int], Errno> {
        var capacity = 256
        while true {
            var cpus = [CInt](repeating: 0, count: capacity)
            let room = CInt(capacity)
            switch performReturningInt32(.schedGetaffinity, { cportslice_allowed_cpus(&cpus, room) }) {
            case .success(let count) where Int(count) > capacity: capacity = Int(count)
            case .success(let count): return .success(cpus.prefix(Int(count)).map(Int.init))
            case .failure(let errno): return .failure(errno)
            }
        }
    }

    /// Keeps the calling thread on `cpu` alone.
    @inline(never)
    static func pinCurrentThread(toCPU cpu: Int) -> Result<Void, Errno> {
        guard let cpu = CInt(exactly: cpu) else { return .failure(.invalidArgument) }
        return performReturningInt32(.schedSetaffinity) { cportslice_pin_current_thread(cpu) }.map { _ in }
    }

    /// Names the calling thread (the kernel keeps 15 bytes).
    @inline(never)
    static func nameCurrentThread(_ name: String) -> Result<Void, Errno> {
        performReturningInt32(.prctl) { cportslice_name_current_thread(name) }.map { _ in }
    }

    /// Reads an eventfd's counter back to zero.
    @inline(never)
    static func drainEvent(_ descriptor: CInt) {
        var count: UInt64 = 0
        _ = perform(.read, { Glibc.read(descriptor, &count, 8) }) { $0 < 0 }
    }
    static let pollIn = Int16(POLLIN)

    /// `fcntl(F_SETFL)` to set or clear `O_NONBLOCK`.
    @inline(never)
    static func setNonBlocking(_ descriptor: CInt, _ nonBlocking: Bool) -> Result<Void, Errno> {
        performReturningInt32(.fcntl) { Glibc.fcntl(descriptor, F_GETFL) }.flatMap { flags in
            let updated = nonBlocking ? flags | O_NONBLOCK : flags & ~O_NONBLOCK
            return performReturningInt32(.fcntl) { Glibc.fcntl(descriptor, F_SETFL, updated) }
        }.map { _ in }
    }

    /// `listen(2)`.
    @inline(never)
    static func listen(_ descriptor: CInt, backlog: CInt) -> Result<Void, Errno> {
        performReturningInt32(.listen) { Glibc.listen(descriptor, backlog) }.map { _ in }
    }

    /// `accept(2)`.
    @inline(never)
    static func accept(_ descriptor: CInt) -> Result<CInt, Errno> {
        performReturningInt32(.accept) { Glibc.accept(descriptor, nil, nil) }
    }

    /// `accept4(2)`, non-blocking and close-on-exec: the new descriptor and its IPv4 peer.
    @inline(never)
    static func acceptNonBlocking(_ listener: CInt) -> Result<(CInt, IPv4Address, UInt16), Errno> {
        var peer = sockaddr_in()
        return performReturningInt32(.accept4) { CPortSlice.cportslice_accept_nonblocking(listener, &peer) }
            .map { ($0, IPv4Address(bits: UInt32(bigEndian: peer.sin_addr.s_addr)), UInt16(bigEndian: peer.sin_port)) }
    }

    /// `send(2)` with `MSG_NOSIGNAL` on a connected socket: on a stream a peer that has gone is
    /// an `EPIPE`, not a signal that ends the process.
    @inline(never)
    static func sendStream(_ descriptor: CInt, _ bytes: UnsafeRawBufferPointer) -> Result<Int, Errno> {
        perform(.send, { Glibc.send(descriptor, bytes.baseAddress, bytes.count, CInt(MSG_NOSIGNAL)) }) { $0 < 0 }
    }

    /// `shutdown(SHUT_WR)`: the peer reads the end of the stream; reading goes on.
    @inline(never)
    static func shutdownWrite(_ descriptor: CInt) {
        _ = performReturningInt32(.shutdown) { Glibc.shutdown(descriptor, CInt(SHUT_WR)) }
    }

    /// `shutdown(SHUT_RDWR)`: wakes a thread blocked in `accept` or `recv` on the descriptor.
    @inline(never)
    static func shutdown(_ descriptor: CInt) {
        _ = performReturningInt32(.shutdown) { Glibc.shutdown(descriptor, CInt(SHUT_RDWR)) }
    }

    /// `send(2)` of a whole buffer on a datagram socket (netlink requests).
    @inline(never)
    static func send(_ descriptor: CInt, _ bytes: UnsafeRawBufferPointer) -> Result<Int, Errno> {
        perform(.send, { Glibc.send(descriptor, bytes.baseAddress, bytes.count, 0) }) { $0 < 0 }
    }

    /// `recv(2)` into a buffer; returns the byte count.
    @inline(never)
    static func receive(_ descriptor: CInt, _ buffer: UnsafeMutableRawBufferPointer) -> Result<Int, Errno> {
        perform(.recv, { Glibc.recv(descriptor, buffer.baseAddress, buffer.count, 0) }) { $0 < 0 }
    }

    /// `recvfrom(2)` on an IPv4 datagram socket: the byte count and the sender.
    @inline(never)
    static func receive(from descriptor: CInt, _ buffer: UnsafeMutableRawBufferPointer) -> Result<(Int, IPv4Address, UInt16), Errno> {
        var storage = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let count = withUnsafeMutablePointer(to: &storage) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                perform(.recvfrom, { Glibc.recvfrom(descriptor, buffer.baseAddress, buffer.count, 0, raw, &length) }) { $0 < 0 }
            }
        }
        return count.map { ($0, IPv4Address(bits: UInt32(bigEndian: storage.sin_addr.s_addr)), UInt16(bigEndian: storage.sin_port)) }
    }

    /// `sendto(2)` of one datagram to an IPv4 endpoint.
    @inline(never)
    static func send(_ descriptor: CInt, _ bytes: UnsafeRawBufferPointer, to address: IPv4Address, _ port: UInt16) -> Result<Int, Errno> {
        withSocketAddress(address, port) { raw, length in
            perform(.sendto, { Glibc.sendto(descriptor, bytes.baseAddress, bytes.count, 0, raw, length) }) { $0 < 0 }
        }
    }

    /// `recvmmsg(2)` without waiting: up to `lengths.count` datagrams into equal slots of
    /// `buffer`; returns how many arrived (`EAGAIN` when none had).
    @inline(never)
    static func receiveDatagrams(
        _ descriptor: CInt, _ buffer: UnsafeMutableRawBufferPointer, slotSize: Int, lengths: UnsafeMutableBufferPointer<UInt32>
    ) -> Result<Int, Errno> {
        performReturningInt32(.recvmmsg) {
            cportslice_receive_datagrams(descriptor, buffer.baseAddress, UInt32(slotSize), UInt32(lengths.count), lengths.baseAddress)
        }.map(Int.init)
    }

    /// `stat(2)`: modification time (nanoseconds), size, inode and device of a file.
    @inline(never)
    static func fileStamp(_ path: String) -> Result<FileStamp, Errno> {
        var info = Glibc.stat()
        // fstatat rather than stat: in Swift `stat` names the struct as well as the call.
        return performReturningInt32(.stat) { Glibc.fstatat(AT_FDCWD, path, &info, 0) }.map { _ in
            FileStamp(modified: Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec),
                      size: Int64(info.st_size), inode: UInt64(info.st_ino), device: UInt64(info.st_dev))
        }
    }

    // MARK: - Process and kernel

    /// `uname(2)`: the kernel release, such as `6.18.44`.
    @inline(never)
    static func kernelRelease() -> Result<String, Errno> {
        var names = utsname()
        return performReturningInt32(.uname) { Glibc.uname(&names) }.map { _ in
            withUnsafeBytes(of: names.release) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
        }
    }

    /// `setns(fd, CLONE_NEWNET)`: moves the calling thread into a network namespace.
    @inline(never)
    static func enterNetworkNamespace(_ descriptor: CInt) -> Result<Void, Errno> {
        performReturningInt32(.setns) { cportslice_enter_network_namespace(descriptor) }.map { _ in }
    }

    /// `getrlimit(RLIMIT_NOFILE)`: (soft, hard).
    @inline(never)
    static func openFileLimit() -> Result<(UInt64, UInt64), Errno> {
        var limit = rlimit()
        return performReturningInt32(.getrlimit) { Glibc.getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) }.map { _ in
            (UInt64(limit.rlim_cur), UInt64(limit.rlim_max))
        }
    }

    /// `setrlimit(RLIMIT_NOFILE)` for the soft limit.
    @inline(never)
    static func setOpenFileLimit(soft: UInt64, hard: UInt64) -> Result<Void, Errno> {
        var limit = rlimit(rlim_cur: rlim_t(soft), rlim_max: rlim_t(hard))
        return performReturningInt32(.setrlimit) { Glibc.setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) }.map { _ in }
    }

    /// `getaddrinfo(3)` for IPv4 addresses of a host name.
    @inline(never)
    static func resolveIPv4(_ host: String) -> Result<[IPv4Address], ResolveFailure> {
        var hints = addrinfo()
        hints.ai_family = AF_INET
        hints.ai_socktype = CInt(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>? = nil
        let status = Glibc.getaddrinfo(host, nil, &hints, &list)
        guard status == 0 else { return .failure(ResolveFailure(message: String(cString: gai_strerror(status)))) }
        defer { freeaddrinfo(list) }
        var addresses: [IPv4Address] = []
        var entry = list
        while let current = entry {
            if let address = current.pointee.ai_addr, current.pointee.ai_family == AF_INET {
                let ipv4 = address.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr }
                let parsed = IPv4Address(bits: UInt32(bigEndian: ipv4))
                if !addresses.contains(parsed) { addresses.append(parsed) }
            }
            entry = current.pointee.ai_next
        }
        return .success(addresses)
    }

    /// `getifaddrs(3)`: every IPv4 and IPv6 address on this host's interfaces (in this
    /// thread's network namespace), with the interface's name. Entries without an address
    /// (an interface's link-layer entry) are left out.
    @inline(never)
    static func interfaceAddresses() -> Result<[(interface: String, address: IPAddress)], Errno> {
        var list: UnsafeMutablePointer<ifaddrs>? = nil
        return performReturningInt32(.getifaddrs) { Glibc.getifaddrs(&list) }.map { _ in
            defer { freeifaddrs(list) }
            var addresses: [(interface: String, address: IPAddress)] = []
            var entry = list
            while let current = entry {
                entry = current.pointee.ifa_next
                guard let socketAddress = current.pointee.ifa_addr else { continue }
                let address: IPAddress
                switch CInt(socketAddress.pointee.sa_family) {
                case AF_INET:
                    let bits = socketAddress.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr }
                    address = .v4(IPv4Address(bits: UInt32(bigEndian: bits)))
                case AF_INET6:
                    let bytes = socketAddress.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { $0.pointee.sin6_addr }
                    let bits = withUnsafeBytes(of: bytes) { raw in raw.reduce(UInt128(0)) { $0 << 8 | UInt128($1) } }
                    address = .v6(IPv6Address(bits: bits))
                default:
                    continue
                }
                addresses.append((String(cString: current.pointee.ifa_name), address))
            }
            return addresses
        }
    }

    struct ResolveFailure: Error {
        let message: String
    }
}

/// A socket option: level and name, as `setsockopt` takes them.
public struct SocketOption: Sendable {
    let level: CInt
    let name: CInt

    static let reuseAddress = SocketOption(level: SOL_SOCKET, name: SO_REUSEADDR)
    /// `SO_REUSEPORT`'s number, for listeners set up through SwiftNIO (which does not name it):
    /// several sockets on one port, new connections spread among them by the kernel.
    public static let reusePortName = SO_REUSEPORT
    static let reusePort = SocketOption(level: SOL_SOCKET, name: SO_REUSEPORT)
    /// `TCP_NODELAY`: small writes leave at once instead of waiting for an acknowledgment (a
    /// relay forwards what it got; holding it back would add a round trip to each exchange).
    static let noDelay = SocketOption(level: CInt(IPPROTO_TCP), name: TCP_NODELAY)
    static let cookie = SocketOption(level: SOL_SOCKET, name: cportslice_so_cookie)
    static let error = SocketOption(level: SOL_SOCKET, name: SO_ERROR)
    /// `IPV6_FREEBIND` (linux/in6.h, 78): bind an address this host has no interface address
    /// for, such as one of a prefix routed to it as `local`.
    static let ipv6FreeBind = SocketOption(level: CInt(IPPROTO_IPV6), name: 78)
    static let bindAddressNoPort = SocketOption(level: CInt(IPPROTO_IP), name: cportslice_ip_bind_address_no_port)
    static let localPortRange = SocketOption(level: CInt(IPPROTO_IP), name: cportslice_ip_local_port_range)
    /// Path MTU discovery mode; `pathMTUDiscoveryDo` sets don't-fragment on every packet.
    static let pathMTUDiscovery = SocketOption(level: CInt(IPPROTO_IP), name: IP_MTU_DISCOVER)
    static let pathMTUDiscoveryDo = UInt32(IP_PMTUDISC_DO)
    /// The path MTU the kernel knows for a connected socket's destination.
    static let pathMTU = SocketOption(level: CInt(IPPROTO_IP), name: IP_MTU)
}
