import Foundation
import PortSliceCore
import Testing
@testable import PortSliceSockets

/// What the proxy engine runs on: an epoll set, a shared-port listener, non-blocking stream
/// reads and writes, and a wake-up.
@Suite("event poller")
struct EventPollerTests {
    /// The registrations ready within `milliseconds`, with what each reported.
    func ready(_ poller: EventPoller, within milliseconds: Int32 = 2000) throws -> [UInt64: Readiness] {
        var ready: [UInt64: Readiness] = [:]
        try poller.wait(timeoutMilliseconds: milliseconds) { token, readiness in ready[token] = readiness }
        return ready
    }

    @Test("a listener reports a waiting connection; a stream reports its bytes, then the peer's end; reads say wouldBlock and endOfStream")
    func streamLifecycle() throws {
        let poller = try EventPoller()
        let listener = try SharedPortListener(Endpoint(IPv4Address(127, 0, 0, 1), 0))
        try poller.watch(listener.descriptor, token: 1, for: .listener)
        #expect(try ready(poller, within: 0).isEmpty, "nothing waits yet")

        let client = try UnslicedConnect.tcp(to: listener.endpoint)
        #expect(try ready(poller)[1]?.readable == true)
        guard case .connection(let accepted, let peer) = listener.accept() else {
            Issue.record("no connection to accept")
            return
        }
        defer { StreamIO.close(accepted) }
        #expect(peer == client.local)
        guard case .none = listener.accept() else {
            Issue.record("a second connection where there was one")
            return
        }

        try poller.watch(accepted, token: 2, for: .stream)
        #expect(try ready(poller)[2]?.writable == true, "a new connection can be written to")
        try client.send(Array("hello".utf8))
        let afterBytes = try ready(poller)[2]
        #expect(afterBytes?.readable == true && afterBytes?.peerClosed == false)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 1)
        defer { buffer.deallocate() }
        #expect(StreamIO.read(accepted, into: buffer) == .transferred(5))
        #expect(Array(buffer.prefix(5)) == Array("hello".utf8))
        #expect(StreamIO.read(accepted, into: buffer) == .wouldBlock)

        let reply = Array("world".utf8)
        #expect(reply.withUnsafeBytes { StreamIO.writeSome(accepted, $0) } == .success(5))
        #expect(try client.receive(timeout: .seconds(5)) == reply)

        StreamIO.shutdownWrite(accepted)
        #expect(try client.receive(timeout: .seconds(5)).isEmpty, "the client reads the end of the stream")
        _ = consume client
        let afterClose = try ready(poller)[2]
        #expect(afterClose?.readable == true && afterClose?.peerClosed == true)
        #expect(StreamIO.read(accepted, into: buffer) == .endOfStream)
    }

    @Test("a wake-up signalled from another thread ends a wait, and draining it quiets it again")
    func wakeup() throws {
        let poller = try EventPoller()
        let wakeup = try Wakeup()
        try poller.watch(wakeup.descriptor, token: 9, for: .readable)
        Thread { wakeup.signal() }.start()
        #expect(try ready(poller, within: 5000)[9]?.readable == true)
        wakeup.drain()
        #expect(try ready(poller, within: 50).isEmpty)
    }

    @Test("two listeners share one port: the second binds the port the first was given")
    func sharedPort() throws {
        let first = try SharedPortListener(Endpoint(IPv4Address(127, 0, 0, 1), 0))
        let second = try SharedPortListener(first.endpoint)
        #expect(second.endpoint == first.endpoint)
    }
}
