import Foundation
import PortSliceCore
import Synchronization
import Testing
@testable import PortSliceSockets

@Suite("handshakes waited for on one thread")
struct HandshakeWaiterTests {
    /// A listener whose accept queue is full (backlog 0, one connection never accepted): the
    /// kernel drops further SYNs, so handshakes to it stay under way until given up.
    final class FullListener {
        let endpoint: Endpoint
        private let listening: OwnedDescriptor
        private let filler: ConnectedSocket

        init() throws {
            listening = try OwnedDescriptor(.tcp, nonBlocking: false)
            try Syscalls.bind(listening.raw, IPv4Address(127, 0, 0, 1), 0).get()
            try Syscalls.listen(listening.raw, backlog: 0).get()
            endpoint = try listening.localEndpoint()
            filler = try UnslicedConnect.tcp(to: endpoint)
        }
    }

    /// A pending connection the test can keep in an array and finish later.
    final class Pending: @unchecked Sendable {
        var connection: PendingConnection?
        let descriptor: CInt
        init(_ connection: consuming PendingConnection) {
            descriptor = connection.pollableDescriptor
            self.connection = consume connection
        }
    }

    @Test("300 handshakes that never end wait at once, each called back at its deadline and finishing as timed out, and a live one among them ends at once")
    func manyWaitOnOneThread() throws {
        let full = try FullListener()
        let live = try AcceptingListener(Endpoint(IPv4Address(127, 0, 0, 1), 0), holding: true)
        // Ports no other test uses: 300 explicitly bound ports would keep the kernel from
        // choosing them for another test's fast-path slice (on any address) while they wait.
        let dialer = try SliceDialer(slice: EgressSlice(address: IPv4Address(127, 0, 0, 1), ports: PortSet(PortRange(43000, 43399))), strategy: .portSearch)
        let waiter = try HandshakeWaiter()
        defer { waiter.stop() }

        let started = ContinuousClock.now
        let deadline = started + .milliseconds(1500)
        let endedAt = Mutex<[CInt: ContinuousClock.Instant]>([:])
        var hanging: [Pending] = []
        for _ in 0..<300 {
            let pending = Pending(try dialer.startTCP(to: full.endpoint))
            hanging.append(pending)
            waiter.whenWritable(pending.descriptor, deadline: deadline) { [descriptor = pending.descriptor] failure in
                if failure == nil { endedAt.withLock { $0[descriptor] = .now } }
            }
        }
        #expect(waiter.count == 300, "every handshake to the full listener is still under way")

        let alive = Pending(try dialer.startTCP(to: live.endpoint))
        let liveStarted = ContinuousClock.now
        waiter.whenWritable(alive.descriptor, deadline: liveStarted + .seconds(10)) { [descriptor = alive.descriptor] failure in
            if failure == nil { endedAt.withLock { $0[descriptor] = .now } }
        }
        while endedAt.withLock({ $0[alive.descriptor] }) == nil && ContinuousClock.now - liveStarted < .seconds(5) { Thread.sleep(forTimeInterval: 0.005) }
        let liveEnded = try #require(endedAt.withLock { $0[alive.descriptor] }, "the live handshake was never called back")
        #expect(liveEnded - liveStarted < .milliseconds(500), "the live handshake waited \(liveEnded - liveStarted) behind the hanging ones")
        let socket = try alive.connection.take()!.finish(timeout: .zero)
        #expect(socket.remote == live.endpoint)

        while endedAt.withLock({ $0.count }) < 301 && ContinuousClock.now - started < .seconds(10) { Thread.sleep(forTimeInterval: 0.01) }
        let ends = endedAt.withLock { $0 }
        #expect(ends.count == 301, "\(301 - ends.count) handshakes were never called back")
        for pending in hanging {
            guard let end = ends[pending.descriptor] else { continue }
            #expect(end >= deadline && end - deadline < .milliseconds(500), "called back \(end - started) after the start, deadline at 1.5 s")
            #expect(throws: DialError.timedOut(destination: full.endpoint)) { _ = try pending.connection.take()!.finish(timeout: .zero) }
        }
        #expect(waiter.count == 0)
    }

    @Test("a refused handshake is called back at once and finishes as refused; after stop, waits end at once")
    func refusedAndStopped() throws {
        // A port bound a moment ago and closed without listening: a SYN to it is answered by a reset.
        let port = try {
            let socket = try OwnedDescriptor(.tcp, nonBlocking: false)
            try Syscalls.bind(socket.raw, IPv4Address(127, 0, 0, 1), 0).get()
            return try socket.localEndpoint().port
        }()
        let dialer = try SliceDialer(slice: EgressSlice(address: IPv4Address(127, 0, 0, 1), ports: PortSet(PortRange(43500, 43599))), strategy: .portSearch)
        let waiter = try HandshakeWaiter()
        let called = DispatchSemaphore(value: 0)
        let pending = Pending(try dialer.startTCP(to: Endpoint(IPv4Address(127, 0, 0, 1), port)))
        waiter.whenWritable(pending.descriptor, deadline: .now + .seconds(10)) { failure in if failure == nil { called.signal() } }
        #expect(called.wait(timeout: .now() + 2) == .success, "a refused handshake waited for its deadline")
        #expect(throws: DialError.system(call: "connect", errno: .connectionRefused)) { _ = try pending.connection.take()!.finish(timeout: .zero) }

        waiter.stop()
        let afterStop = DispatchSemaphore(value: 0)
        waiter.whenWritable(0, deadline: .now + .seconds(10)) { failure in if failure != nil { afterStop.signal() } }
        #expect(afterStop.wait(timeout: .now() + 1) == .success)
    }
}
