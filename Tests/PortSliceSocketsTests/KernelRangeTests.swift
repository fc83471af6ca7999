import Glibc
import PortSliceCore
import SystemPackage
import Testing
@testable import PortSliceSockets

/// The kernel selftest behaviours of IP_LOCAL_PORT_RANGE
/// (tools/testing/selftests/net/ip_local_port_range.c), as seen through our API.
@Suite("IP_LOCAL_PORT_RANGE behaviour (root, network namespace)", .enabled(if: TestNamespace.isRoot, TestNamespace.skipReason))
struct KernelRangeTests {
    static let shared = IPv4Address(203, 0, 113, 10)
    static let destination = Endpoint(IPv4Address(198, 51, 100, 1), 7000)
    static let addresses = ["203.0.113.10", "198.51.100.1"]

    @Test func invalidValuesAreRejectedAndTheRangeReadsBack() throws {
        let namespace = try TestNamespace(addresses: Self.addresses)
        let (reversed, readBack, reset) = try namespace.run {
            let socket = try OwnedDescriptor(.tcp, nonBlocking: true)
            let reversed = Syscalls.setOption(socket.raw, .localPortRange, UInt32(40000) << 16 | 40010)
            try socket.set(.localPortRange, UInt32(40010) << 16 | 40000)
            let readBack = try Syscalls.getOption(socket.raw, .localPortRange, as: UInt32.self).get()
            try socket.set(.localPortRange, 0)
            let reset = try Syscalls.getOption(socket.raw, .localPortRange, as: UInt32.self).get()
            return (reversed, readBack, reset)
        }
        #expect(throws: Errno.invalidArgument) { try reversed.get() }
        #expect(readBack == UInt32(40010) << 16 | 40000)
        #expect(reset == 0)
    }

    /// A slice reaching outside the netns range would be silently clipped: forcing the fast
    /// path refuses it with the sysctl that fixes it, and the automatic choice falls back to
    /// the port search, which binds explicitly and is not clipped.
    @Test func slicesOutsideTheNetnsRangeAreRefusedOrServedBySearch() throws {
        let namespace = try TestNamespace(addresses: Self.addresses, portRange: "40002 60000")
        let slice = EgressSlice(address: Self.shared, ports: PortSet(try PortRange(40000, 40003)))
        let (forced, strategy, ports) = try namespace.run {
            let forced = Result { () throws(DialError) in _ = try SliceDialer(slice: slice, strategy: .kernelRange) }
            let dialer = try SliceDialer(slice: slice)
            let flows = OpenFlows()
            let attempts = (0..<4).map { _ in dialer.open(.udp, to: Self.destination, keepingIn: flows) }
            return (forced, dialer.tcpStrategy, attempts)
        }
        #expect(throws: DialError.rangeIgnored(slice: slice.ports, netnsRange: try PortRange(40002, 60000), chosenPort: nil)) {
            try forced.get()
        }
        if case .failure(let error) = forced {
            #expect(error.description.contains("sysctl -w net.ipv4.ip_local_port_range=\"40000 60000\""))
        }
        #expect(strategy == .portSearch)
        #expect(ports.openedPorts.sorted() == [40000, 40001, 40002, 40003])
    }

    /// A flow kept as a `ConnectedSocket` (not as a bare descriptor), so the dialer keeps
    /// counting its port as held until the box lets it go.
    final class KeptFlow: @unchecked Sendable {
        private var socket: ConnectedSocket?
        private let descriptor: CInt
        let port: UInt16

        init(_ socket: consuming ConnectedSocket) {
            descriptor = socket.descriptor
            port = socket.local.port
            self.socket = consume socket
        }

        /// Closes with a reset, so the 4-tuple is free at once.
        func close() {
            _ = Syscalls.setResetOnClose(descriptor)
            socket = nil
        }
    }

    /// With most of the slice held by its own flows, the fast path offers the kernel one port
    /// it believes free. A port held by someone else (another dialer here) makes it retry the
    /// whole slice: still exactly N flows, then exhaustion, and a closed flow's port is found.
    @Test func oneFreePortHintsNeverCostAFlow() throws {
        let namespace = try TestNamespace(addresses: Self.addresses)
        let slice = EgressSlice(address: Self.shared, ports: PortSet(try PortRange(40000, 40007)))
        let (ours, foreign, exhausted, reopened, closedPort, again) = try namespace.run {
            let listener = try Listener(Self.destination)
            defer { withExtendedLifetime(listener) {} }
            let dialer = try SliceDialer(slice: slice, strategy: .kernelRange)
            let stranger = try SliceDialer(slice: slice, strategy: .kernelRange)
            var kept = try (0..<7).map { _ in KeptFlow(try dialer.connectTCP(to: Self.destination)) }
            let ours = kept.map(\.port)
            let foreign = KeptFlow(try stranger.connectTCP(to: Self.destination))
            let exhausted = Result { () throws(DialError) in _ = try dialer.connectTCP(to: Self.destination) }
            let closed = kept.removeLast()
            closed.close()
            let reopened = KeptFlow(try dialer.connectTCP(to: Self.destination))
            let again = Result { () throws(DialError) in _ = try dialer.connectTCP(to: Self.destination) }
            let result = (ours, foreign.port, exhausted, reopened.port, closed.port, again)
            withExtendedLifetime((kept, foreign, reopened)) {}
            return result
        }
        #expect(Set(ours + [foreign]) == Set(40000...40007), "seven of ours and one of the stranger's fill the slice")
        #expect(throws: DialError.sliceExhausted(slice: slice.ports, destination: Self.destination)) { try exhausted.get() }
        #expect(reopened == closedPort)
        #expect(throws: DialError.sliceExhausted(slice: slice.ports, destination: Self.destination)) { try again.get() }
    }

    /// Late bind: the port is 0 after bind and chosen at connect, inside the range; an 8-port
    /// range gives exactly 8 connections to one destination; a single-port range gives one.
    @Test func lateBindAndExactCounts() throws {
        let namespace = try TestNamespace(addresses: Self.addresses)
        let (portAfterBind, eight, single) = try namespace.run {
            let listener = try Listener(Self.destination)
            defer { withExtendedLifetime(listener) {} }
            let socket = try OwnedDescriptor(.tcp, nonBlocking: true)
            try socket.set(.bindAddressNoPort, 1)
            try socket.set(.localPortRange, UInt32(40007) << 16 | 40000)
            try Syscalls.bind(socket.raw, Self.shared, 0).get()
            let portAfterBind = try socket.localEndpoint().port

            let flows = OpenFlows()
            let eightPorts = try SliceDialer(slice: EgressSlice(address: Self.shared, ports: PortSet(try PortRange(40000, 40007))), strategy: .kernelRange)
            let eight = (0..<9).map { _ in eightPorts.open(.tcp, to: Self.destination, keepingIn: flows) }
            let onePort = try SliceDialer(slice: EgressSlice(address: Self.shared, ports: PortSet(PortRange(port: 40100))), strategy: .kernelRange)
            let single = (0..<2).map { _ in onePort.open(.tcp, to: Self.destination, keepingIn: flows) }
            return (portAfterBind, eight, single)
        }
        #expect(portAfterBind == 0)
        #expect(eight.openedPorts.sorted() == Array(40000...40007))
        #expect(eight.last?.isExhausted == true)
        #expect(single.first == .opened(40100))
        #expect(single.last?.isExhausted == true)
    }

    /// RFC 7597 port sets are not contiguous: the dialer uses the port search for them and
    /// every flow leaves from a port of the set.
    @Test func portSetsUseTheSearch() throws {
        let namespace = try TestNamespace(addresses: Self.addresses)
        let set = try PortSetID(offsetBits: 6, psidLength: 8, psid: 0x34).ports
        let (strategy, attempts) = try namespace.run {
            let listener = try Listener(Self.destination)
            defer { withExtendedLifetime(listener) {} }
            let dialer = try SliceDialer(slice: EgressSlice(address: Self.shared, ports: set))
            let flows = OpenFlows()
            let attempts = (0..<20).map { index in dialer.open(index % 2 == 0 ? .tcp : .udp, to: Self.destination, keepingIn: flows) }
            return (dialer.tcpStrategy, attempts)
        }
        #expect(strategy == .portSearch)
        #expect(attempts.allSatisfy { if case .opened(let port) = $0 { set.contains(port) } else { false } }, "\(attempts)")
    }
}
