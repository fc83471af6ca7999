import Foundation
import Testing
import PortSliceCore
import PortSliceLab
import PortSliceSockets

/// Ten thousand client connections held open on the proxy at once, and new clients served
/// meanwhile.
extension ProxyTests {
    /// Resident memory of `process` in KiB and its open descriptors.
    func footprint(_ proxy: Proxy) throws -> (kib: Int, descriptors: Int) { (try residentKiB(proxy.process), proxy.openDescriptors) }

    @Test("10,000 client connections held (8,000 that never finish their greeting, 2,000 idle relays; fewer where the open-file limit is lower), and new clients are still served")
    func tenThousandHeld() async throws {
        // This process holds every client and the relays' far ends: 12,000 descriptors of the
        // 20,000 a process may have here; the proxy holds as many (a relay takes two).
        // Where the limit is lower, as many as fit are held (and the output says how many).
        let limit = Int(HostNetwork.raiseOpenFileLimit(to: 20_000))
        try #require(limit >= 3_000, "the open-file limit is \(limit); this test needs at least 3,000")
        let scale = min(1.0, Double(limit - 2_000) / 12_000)
        let slowCount = Int(8_000 * scale), relayCount = Int(2_000 * scale)
        let destination = try AcceptingListener(Endpoint(IPv4Address(127, 0, 0, 1), 0), holding: true)
        let echo = try EchoServers(Endpoint(IPv4Address(127, 0, 0, 1), 0))
        // A slice of its own, larger than the relays, away from the other tests' slices.
        let slice = "127.0.0.2:43000-46999"
        let proxy = try Proxy(extra: ["--allow", "127.0.0.1/32", "--connections-per-client", "100000"], slices: [slice, Proxy.deSlice])
        let fresh = try footprint(proxy)

        let (slow, relays) = try await CommandRunner.offThePool { [self] () throws -> ([OpenFlow], [OpenFlow]) in
            let deadline = ContinuousClock.now + .seconds(60)
            var slow: [OpenFlow] = []
            slow.reserveCapacity(slowCount)
            while slow.count < slowCount && ContinuousClock.now < deadline {
                let client = try UnslicedConnect.tcp(to: proxy.endpoint)
                // Half send the first byte of a greeting and stop there; half send nothing.
                if slow.count.isMultiple(of: 2) { try client.send([5]) }
                slow.append(OpenFlow(client))
            }
            var relays: [OpenFlow] = []
            relays.reserveCapacity(relayCount)
            while relays.count < relayCount && ContinuousClock.now < deadline {
                relays.append(OpenFlow(try socksConnect(via: proxy, to: destination.endpoint)))
            }
            return (slow, relays)
        }
        #expect(slow.count == slowCount && relays.count == relayCount)
        let settle = ContinuousClock.now + .seconds(10)
        while destination.heldCount < relayCount && ContinuousClock.now < settle { try await Task.sleep(for: .milliseconds(50)) }
        #expect(destination.heldCount == relayCount, "the destination holds \(destination.heldCount) relays")
        let holding = try footprint(proxy)
        #expect(holding.descriptors - fresh.descriptors == slowCount + 2 * relayCount,
                "the proxy holds \(holding.descriptors) descriptors, \(fresh.descriptors) before")

        // New clients while all of that is held: every one served, and each one timed.
        let latencies = try await CommandRunner.offThePool { [self] () throws -> [Duration] in
            try (0..<200).map { _ in
                let started = ContinuousClock.now
                let flow = try socksConnect(via: proxy, to: echo.endpoint)
                try flow.send(Array("GET / HTTP/1.0\r\n\r\n".utf8))
                _ = try flow.receive(timeout: .seconds(5))
                return ContinuousClock.now - started
            }
        }.sorted()
        #expect(latencies.count == 200)
        let perConnection = Double(holding.kib - fresh.kib) / Double(slowCount + relayCount)
        print("""
            held \(slowCount) slow clients and \(relayCount) relays: proxy RSS \(fresh.kib) KiB -> \(holding.kib) KiB \
            (\(String(format: "%.2f", perConnection)) KiB per held connection); 200 new clients meanwhile: \
            p50 \(latencies[100]), p99 \(latencies[197]), max \(latencies[199])
            """)
        withExtendedLifetime((slow, relays)) {}
    }

    /// A SOCKS5 CONNECT through `proxy` to `target`, answered with success.
    func socksConnect(via proxy: Proxy, to target: Endpoint) throws -> ConnectedSocket {
        let socket = try UnslicedConnect.tcp(to: proxy.endpoint)
        try socket.send([5, 1, 0])
        guard try socket.receive(timeout: .seconds(5)) == [5, 0] else { throw CommandRunner.RunnerError("no SOCKS greeting answer") }
        let (a, b, c, d) = target.address.octets
        try socket.send([5, 1, 0, 1, a, b, c, d, UInt8(target.port >> 8), UInt8(target.port & 0xff)])
        let reply = try socket.receive(timeout: .seconds(5))
        guard reply.prefix(2) == [5, 0] else { throw CommandRunner.RunnerError("SOCKS reply \(reply)") }
        return socket
    }
}
