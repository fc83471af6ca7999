import Glibc
import PortSliceCore
import SystemPackage
import Testing
@testable import PortSliceSockets

/// Error paths, reached by injecting errnos into the syscall layer (debug builds). These run
/// without root, on loopback in the current namespace, with a slice inside its port range.
/// Every injection also checks that each socket opened under it was closed again. The shared
/// address is 127.0.0.3, which no other test binds, so their sockets cannot take our ports.
@Suite("Dialer error paths (injected errnos)")
struct FaultInjectionTests {
    static let loopback = IPv4Address(127, 0, 0, 3)

    /// A four-port slice inside this namespace's range and a listener to connect to.
    private func setUp() throws -> (SliceDialer, SliceDialer, Listener, Endpoint) {
        let settings = try HostNetwork.portSettings()
        let lower = settings.localPortRange.lower &+ UInt16.random(in: 100...2000)
        let slice = EgressSlice(address: Self.loopback, ports: PortSet(try PortRange(lower, lower + 3)))
        let listener = try Listener(Endpoint(Self.loopback, 0))
        let port = try Syscalls.localAddress(listener.descriptor).get().1
        return (
            try SliceDialer(slice: slice, strategy: .portSearch),
            try SliceDialer(slice: slice, strategy: HostNetwork.supportsLocalPortRange() ? .kernelRange : .portSearch),
            listener, Endpoint(Self.loopback, port))
    }

    /// Runs `body` with `faults` injected, then checks that every fault was reached and that
    /// every socket opened under them was closed.
    private func injecting<T>(_ faults: [Syscalls.Call: [Errno]], _ body: () throws -> T) throws -> T {
        let plan = FaultPlan(faults)
        defer {
            #expect(plan.remaining == 0, "every injected fault is reached")
            #expect(plan.succeeded(.socket) == plan.succeeded(.close), "every socket opened is closed")
        }
        return try SyscallFaults.$plan.withValue(plan) { try body() }
    }

    @Test func interruptedCallsAreRetried() throws {
        let (search, _, listener, destination) = try setUp()
        defer { withExtendedLifetime(listener) {} }
        try injecting([.bind: [.interrupted, .interrupted], .setsockopt: [.interrupted]]) {
            let socket = try search.connectUDP(to: destination)
            #expect(search.slice.ports.contains(socket.local.port))
        }
    }

    @Test func busyPortsAreSkipped() throws {
        let (search, _, listener, destination) = try setUp()
        defer { withExtendedLifetime(listener) {} }
        // The first three ports tried report EADDRINUSE at bind: the fourth serves.
        try injecting([.bind: [.addressInUse, .addressInUse, .addressInUse]]) {
            let socket = try search.connectTCP(to: destination, timeout: .seconds(5))
            #expect(search.slice.ports.contains(socket.local.port))
        }
    }

    @Test func clashesOnEveryPortExhaustTheSlice() throws {
        let (search, kernel, listener, destination) = try setUp()
        defer { withExtendedLifetime(listener) {} }
        #expect(throws: DialError.sliceExhausted(slice: search.slice.ports, destination: destination)) {
            try injecting([.connect: Array(repeating: .addressNotAvailable, count: 4)]) {
                _ = try search.connectTCP(to: destination)
            }
        }
        #expect(throws: DialError.sliceExhausted(slice: search.slice.ports, destination: destination)) {
            try injecting([.connect: [.resourceTemporarilyUnavailable]]) {
                _ = try kernel.connectTCP(to: destination)
            }
        }
        #expect(throws: DialError.sliceExhausted(slice: search.slice.ports, destination: destination)) {
            try injecting([.bind: Array(repeating: .addressInUse, count: 4)]) {
                _ = try search.connectUDP(to: destination)
            }
        }
    }

    @Test func bindFailuresAreNamed() throws {
        let (search, kernel, listener, destination) = try setUp()
        defer { withExtendedLifetime(listener) {} }
        #expect(throws: DialError.addressNotLocal(Self.loopback)) {
            try injecting([.bind: [.addressNotAvailable]]) { _ = try kernel.connectTCP(to: destination) }
        }
        #expect(throws: DialError.permissionDenied(call: "bind", errno: .permissionDenied)) {
            try injecting([.bind: [.permissionDenied]]) { _ = try search.connectUDP(to: destination) }
        }
        #expect(throws: DialError.system(call: "socket", errno: .tooManyOpenFiles)) {
            try injecting([.socket: [.tooManyOpenFiles]]) { _ = try search.connectTCP(to: destination) }
        }
    }

    @Test func explicitPortsConflictPerDestination() throws {
        let (search, _, listener, destination) = try setUp()
        defer { withExtendedLifetime(listener) {} }
        let port = search.slice.ports.runs[0].lower
        let first = try search.connectUDP(to: destination, localPort: port)
        #expect(first.local.port == port)
        #expect(throws: DialError.conflict(port: port, destination: destination)) {
            _ = try search.connectUDP(to: destination, localPort: port)
        }
        let elsewhere = try search.connectUDP(to: Endpoint(destination.address, destination.port &+ 1), localPort: port)
        #expect(elsewhere.local.port == port)
    }

    @Test func refusedConnectionsReportTheErrno() throws {
        let (search, _, listener, _) = try setUp()
        let closedPort = try Syscalls.localAddress(listener.descriptor).get().1
        let unused = Endpoint(Self.loopback, closedPort &+ 1)
        #expect(throws: DialError.system(call: "connect", errno: .connectionRefused)) {
            _ = try search.connectTCP(to: unused, timeout: .seconds(5))
        }
    }
}
