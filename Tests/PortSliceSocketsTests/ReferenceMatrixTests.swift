import Foundation
import Glibc
import PortSliceCore
import SystemPackage
import Testing
@testable import PortSliceSockets

/// Flows opened inside a namespace thread: descriptors taken from their sockets so they can
/// live in an array, closed together when the value goes away.
final class OpenFlows: @unchecked Sendable {
    private(set) var flows: [(descriptor: CInt, local: Endpoint, remote: Endpoint)] = []

    func keep(_ socket: consuming ConnectedSocket) {
        let local = socket.local, remote = socket.remote
        flows.append((socket.takeDescriptor(), local, remote))
    }

    /// Closes one flow with a reset (no TIME_WAIT, so its 4-tuple is free at once) and
    /// returns its local end.
    func close(at index: Int) -> Endpoint {
        let flow = flows.remove(at: index)
        _ = Syscalls.setResetOnClose(flow.descriptor)
        Syscalls.close(flow.descriptor)
        return flow.local
    }

    func closeAll() {
        for flow in flows { Syscalls.close(flow.descriptor) }
        flows = []
    }

    var ports: [UInt16] { flows.map(\.local.port) }

    deinit { closeAll() }
}

/// What one attempt to open a flow gave: the local port, or the error.
enum Attempt: Equatable, Sendable, CustomStringConvertible {
    case opened(UInt16)
    case failed(DialError)

    var description: String {
        switch self {
        case .opened(let port): "opened from port \(port)"
        case .failed(let error): "failed: \(error)"
        }
    }

    var isExhausted: Bool { if case .failed(.sliceExhausted) = self { true } else { false } }
}

extension [Attempt] {
    /// The local ports of the attempts that opened a flow, in order.
    var openedPorts: [UInt16] { compactMap { if case .opened(let port) = $0 { port } else { nil } } }
}

extension SliceDialer {
    /// Opens one flow and keeps it in `flows`.
    func open(_ transport: Transport, to destination: Endpoint, localPort: UInt16? = nil, keepingIn flows: OpenFlows) -> Attempt {
        do {
            let socket = transport == .tcp
                ? try connectTCP(to: destination, localPort: localPort, timeout: .seconds(5))
                : try connectUDP(to: destination, localPort: localPort)
            let port = socket.local.port
            flows.keep(socket)
            return .opened(port)
        } catch {
            return .failed(error)
        }
    }
}

/// The reference behaviour in DOMAIN.md ("Cloudflare's connectx test matrix"), through our
/// API, for TCP with both strategies and for connected UDP.
@Suite("Reference matrix (root, network namespace)", .enabled(if: TestNamespace.isRoot, TestNamespace.skipReason))
struct ReferenceMatrixTests {
    static let shared = IPv4Address(203, 0, 113, 10)
    static let destinationA = Endpoint(IPv4Address(198, 51, 100, 1), 7000)
    static let destinationB = Endpoint(IPv4Address(198, 51, 100, 2), 7000)
    static let addresses = ["203.0.113.10", "198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.9"]

    static let cases: [(Transport, DialStrategy)] = [(.tcp, .kernelRange), (.tcp, .portSearch), (.udp, .automatic)]

    static func slice(_ lower: UInt16, _ upper: UInt16) -> EgressSlice {
        EgressSlice(address: shared, ports: PortSet(try! PortRange(lower, upper)))
    }

    @Test(arguments: cases)
    func samePortTwiceToOneDestinationFailsButServesAnother(transport: Transport, strategy: DialStrategy) throws {
        let namespace = try TestNamespace(addresses: Self.addresses)
        let attempts = try namespace.run {
            let listeners = [try Listener(Self.destinationA), try Listener(Self.destinationB)]
            defer { withExtendedLifetime(listeners) {} }
            let dialer = try SliceDialer(slice: Self.slice(40000, 40003), strategy: strategy)
            let flows = OpenFlows()
            return [
                dialer.open(transport, to: Self.destinationA, localPort: 40001, keepingIn: flows),
                dialer.open(transport, to: Self.destinationA, localPort: 40001, keepingIn: flows),
                dialer.open(transport, to: Self.destinationB, localPort: 40001, keepingIn: flows),
            ]
        }
        let expected: [Attempt] = [.opened(40001), .failed(.conflict(port: 40001, destination: Self.destinationA)), .opened(40001)]
        #expect(attempts == expected)
    }

    /// A port the kernel chose for one destination can be asked for explicitly towards another.
    @Test func kernelChosenPortsServeExplicitRequestsElsewhere() throws {
        let namespace = try TestNamespace(addresses: Self.addresses)
        let attempts = try namespace.run {
            let listeners = [try Listener(Self.destinationA), try Listener(Self.destinationB)]
            defer { withExtendedLifetime(listeners) {} }
            let dialer = try SliceDialer(slice: Self.slice(40000, 40003), strategy: .kernelRange)
            let flows = OpenFlows()
            let first = dialer.open(.tcp, to: Self.destinationA, keepingIn: flows)
            guard case .opened(let port) = first else { return [first] }
            return [first, dialer.open(.tcp, to: Self.destinationB, localPort: port, keepingIn: flows)]
        }
        #expect(attempts.count == 2 && attempts[0] == attempts[1], "\(attempts)")
    }

    /// A slice of N ports carries exactly N flows per destination and N x D over D
    /// destinations; the next attempt to any of them is refused as exhausted.
    @Test(arguments: cases)
    func exactCapacityPerDestination(transport: Transport, strategy: DialStrategy) throws {
        let destinations = [Self.destinationA, Self.destinationB, Endpoint(IPv4Address(198, 51, 100, 3), 7000)]
        for size in [1, 4, 8] {
            let namespace = try TestNamespace(addresses: Self.addresses)
            let (opened, next) = try namespace.run {
                let listeners = try destinations.map { try Listener($0) }
                defer { withExtendedLifetime(listeners) {} }
                let dialer = try SliceDialer(slice: Self.slice(40000, 40000 + UInt16(size - 1)), strategy: strategy)
                let flows = OpenFlows()
                var opened: [Endpoint: [Attempt]] = [:]
                for destination in destinations {
                    opened[destination] = (0..<size).map { _ in dialer.open(transport, to: destination, keepingIn: flows) }
                }
                let next = destinations.map { dialer.open(transport, to: $0, keepingIn: flows) }
                return (opened, next)
            }
            for destination in destinations {
                let ports = opened[destination]!.openedPorts
                #expect(ports.sorted() == Array(40000..<(40000 + UInt16(size))), "\(transport) \(strategy) size \(size) to \(destination): \(opened[destination]!)")
            }
            #expect(next.allSatisfy { $0.isExhausted }, "\(next)")
        }
    }

    /// Reserved ports inside the slice are never handed out.
    @Test(arguments: cases)
    func reservedPortsAreSkipped(transport: Transport, strategy: DialStrategy) throws {
        let namespace = try TestNamespace(addresses: Self.addresses, reservedPorts: "40002")
        let attempts = try namespace.run {
            let listener = try Listener(Self.destinationA)
            defer { withExtendedLifetime(listener) {} }
            let dialer = try SliceDialer(slice: Self.slice(40000, 40003), strategy: strategy)
            let flows = OpenFlows()
            return (0..<4).map { _ in dialer.open(transport, to: Self.destinationA, keepingIn: flows) }
        }
        let ports = attempts.openedPorts
        #expect(ports.sorted() == [40000, 40001, 40003], "\(attempts)")
        #expect(attempts.last?.isExhausted == true)
    }

    /// A port held by an unconnected bound socket is not handed out: a wildcard bind blocks
    /// every local address; a bind to another specific address blocks nothing for our own
    /// port search. The kernel's connect-time choice (TCP fast path) is stricter: it skips any
    /// port some socket bound explicitly, whatever the address (observed on 6.18), which
    /// costs that port's capacity but never correctness.
    @Test(arguments: cases)
    func boundSocketsHoldTheirPort(transport: Transport, strategy: DialStrategy) throws {
        let kernelChooses = transport == .tcp && strategy == .kernelRange
        let specificHolderPorts: [UInt16] = kernelChooses ? [40000, 40002, 40003] : [40000, 40001, 40002, 40003]
        for (holder, expectedPorts) in [("0.0.0.0", [40000, 40002, 40003]), ("198.51.100.9", specificHolderPorts)] as [(String, [UInt16])] {
            let namespace = try TestNamespace(addresses: Self.addresses)
            let attempts = try namespace.run {
                let listener = try Listener(Self.destinationA)
                defer { withExtendedLifetime(listener) {} }
                let blocker = try OwnedDescriptor(transport, nonBlocking: true)
                try Syscalls.bind(blocker.raw, try IPv4Address(parsing: holder), 40001).get()
                let dialer = try SliceDialer(slice: Self.slice(40000, 40003), strategy: strategy)
                let flows = OpenFlows()
                return (0..<5).map { _ in dialer.open(transport, to: Self.destinationA, keepingIn: flows) }
            }
            let ports = attempts.openedPorts
            #expect(ports.sorted() == expectedPorts, "holder \(holder): \(attempts)")
            #expect(attempts.last?.isExhausted == true)
        }
    }

    /// A UDP socket that shares the port (SO_REUSEADDR) but is unconnected and bound to the
    /// wildcard would receive the flow's packets; the sock_diag check sees it and skips the port.
    @Test func udpWildcardListenerWithReuseIsSeenByTheCheck() throws {
        let namespace = try TestNamespace(addresses: Self.addresses)
        let attempts = try namespace.run {
            let blocker = try OwnedDescriptor(.udp, nonBlocking: true)
            try blocker.set(.reuseAddress, 1)
            try Syscalls.bind(blocker.raw, IPv4Address(bits: 0), 40001).get()
            let dialer = try SliceDialer(slice: Self.slice(40000, 40003))
            let flows = OpenFlows()
            return (0..<4).map { _ in dialer.open(.udp, to: Self.destinationA, keepingIn: flows) }
                + [dialer.open(.udp, to: Self.destinationB, localPort: 40001, keepingIn: flows)]
        }
        let ports = Array(attempts.dropLast()).openedPorts
        #expect(ports.sorted() == [40000, 40002, 40003], "\(attempts)")
        #expect(attempts.last == .failed(.conflict(port: 40001, destination: Self.destinationB)), "an explicit port is screened too")
    }

    /// The search remembers ports reported busy for a second; a port freed meanwhile is still
    /// found at once, since the slice is only called exhausted after asking about every port.
    @Test(arguments: [Transport.tcp, .udp])
    func aFreedPortIsFoundDespiteTheBusyMemory(transport: Transport) throws {
        let namespace = try TestNamespace(addresses: Self.addresses)
        let (full, afterClose) = try namespace.run {
            let listener = try Listener(Self.destinationA)
            defer { withExtendedLifetime(listener) {} }
            let dialer = try SliceDialer(slice: Self.slice(40000, 40003), strategy: .portSearch)
            let flows = OpenFlows()
            let full = (0..<5).map { _ in dialer.open(transport, to: Self.destinationA, keepingIn: flows) }
            let freed = flows.close(at: 2)
            // Under load the kernel can take a moment to tear the reset TCP socket down, so
            // the port is asked for again for up to half a second (well within the memory).
            var next = dialer.open(transport, to: Self.destinationA, keepingIn: flows)
            let deadline = ContinuousClock.now + .milliseconds(500)
            while next.isExhausted && ContinuousClock.now < deadline {
                Thread.sleep(forTimeInterval: 0.02)
                next = dialer.open(transport, to: Self.destinationA, keepingIn: flows)
            }
            return (full, [next, Attempt.opened(freed.port)])
        }
        #expect(full.last?.isExhausted == true, "\(full)")
        #expect(afterClose[0] == afterClose[1], "the freed port \(afterClose[1]) must serve the next flow: \(afterClose[0])")
    }

    /// Ports are chosen from the slice but not in order: the search starts at a keyed hash of
    /// the destination (RFC 6056), so two destinations do not start at the same port.
    @Test func portSearchStartsAtAHashedOffsetPerDestination() throws {
        let namespace = try TestNamespace(addresses: Self.addresses)
        let firstPorts = try namespace.run {
            let dialer = try SliceDialer(slice: Self.slice(40000, 41023), strategy: .portSearch)
            let flows = OpenFlows()
            return (1...40).map { port in dialer.open(.udp, to: Endpoint(Self.destinationA.address, UInt16(port)), keepingIn: flows) }
        }
        let ports = Set(firstPorts.openedPorts)
        #expect(ports.count >= 35, "40 destinations should start at spread-out ports: \(ports.sorted())")
    }
}
