import Foundation
import PortSliceCore
import PortSliceLab
import PortSliceSockets
import PortSliceTestSupport
import Testing

/// Random and mutated bytes against the running proxy's three parsers (SOCKS5 with RFC 1929,
/// HTTP heads, PROXY v1 and v2), bounded in time: the proxy must neither crash nor keep
/// descriptors or memory once the clients are gone.
extension ProxyTests {
    /// Valid openings that the mutations start from.
    static func fuzzSeeds(target: Endpoint) -> [[UInt8]] {
        let (a, b, c, d) = target.address.octets
        let port = [UInt8(target.port >> 8), UInt8(target.port & 0xff)]
        let socksConnect: [UInt8] = [5, 1, 0, 1, a, b, c, d] + port
        let credentials: [UInt8] = [1, 5] + Array("alice".utf8) + [6] + Array("s3cret".utf8)
        return [
            [5, 1, 0] + socksConnect,
            [5, 2, 0, 2] + credentials + socksConnect,
            [5, 1, 0, 5, 3, 0, 1, 0, 0, 0, 0, 0, 0],  // UDP ASSOCIATE
            [5, 1, 0, 5, 1, 0, 3, 9] + Array("127.0.0.1".utf8) + port,
            Array("CONNECT \(target) HTTP/1.1\r\nHost: \(target)\r\nProxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n\r\n".utf8),
            Array("GET http://\(target)/path?q=1 HTTP/1.1\r\nHost: \(target)\r\nContent-Length: 4\r\n\r\nbody".utf8),
            Array("PROXY TCP4 127.0.0.5 127.0.0.1 50000 1080\r\n".utf8) + [5, 1, 0] + socksConnect,
            Array("PROXY TCP6 2001:db8::7 2001:db8::1 40000 1080\r\nCONNECT \(target) HTTP/1.1\r\n\r\n".utf8),
            [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21, 0x11, 0, 12,
             127, 0, 0, 5, 127, 0, 0, 1, 0xc3, 0x50, 0x04, 0x38, 5, 1, 0] + socksConnect,
        ]
    }

    /// One to four random edits of `seed` (flip, insert, delete, truncate, repeat a run, set a
    /// byte to 0 or 255, which hits length fields), or, one time in eight, random bytes.
    static func mutate(_ seed: [UInt8], with generator: inout SplitMix64) -> [UInt8] {
        if generator.next() % 8 == 0 {
            return (0..<Int(generator.next() % 200 + 1)).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
        }
        var bytes = seed
        for _ in 0...(generator.next() % 4) where !bytes.isEmpty {
            let at = Int(generator.next() % UInt64(bytes.count))
            switch generator.next() % 6 {
            case 0: bytes[at] ^= UInt8(truncatingIfNeeded: 1 << (generator.next() % 8))
            case 1: bytes.insert(UInt8(truncatingIfNeeded: generator.next()), at: at)
            case 2: bytes.remove(at: at)
            case 3: bytes = Array(bytes.prefix(at))
            case 4: bytes.insert(contentsOf: bytes[at..<min(bytes.count, at + Int(generator.next() % 16) + 1)], at: at)
            default: bytes[at] = generator.next() % 2 == 0 ? 0 : 255
            }
        }
        return bytes
    }

    /// Sends mutated openings to `proxy` from `seeds` until `deadline` (at most `limit`
    /// connections, at most `perSecond` a second), reading what comes back for a moment before
    /// closing. - Returns: how many. The pace keeps the machine free for the tests that run
    /// beside this one, some of which time their answers.
    func fuzz(_ proxy: Proxy, seeds: [[UInt8]], seed: UInt64, until deadline: ContinuousClock.Instant, limit: Int,
              perSecond: Int = 200) async throws -> Int {
        try await offThePool {
            var generator = SplitMix64(seed: seed)
            var sent = 0
            let started = ContinuousClock.now
            while sent < limit && ContinuousClock.now < deadline {
                let due = started + .milliseconds(sent * 1000 / perSecond)
                if due > ContinuousClock.now { Thread.sleep(forTimeInterval: Double((due - ContinuousClock.now).components.attoseconds) / 1e18) }
                let bytes = Self.mutate(seeds[Int(generator.next() % UInt64(seeds.count))], with: &generator)
                let connection = try UnslicedConnect.tcp(to: proxy.endpoint)
                try? connection.send(bytes, timeout: .seconds(1))
                _ = try? connection.receive(timeout: .milliseconds(20))
                try connection.resetOnClose()
                sent += 1
            }
            return sent
        }
    }

    @Test("30 s of random and mutated SOCKS5, HTTP and PROXY v1/v2 openings: no crash, and no descriptor or memory kept afterwards")
    func fuzzParsers() async throws {
        let server = try EchoServers(Endpoint(IPv4Address(127, 0, 0, 1), 0))
        // Names a mutation makes up are looked up: one quick try each, so none outlives the run.
        let quickResolver = ["RES_OPTIONS": "timeout:1 attempts:1"]
        let plain = try Proxy(extra: ["--allow", "127.0.0.1/32", "--connect-timeout", "1"], environment: quickResolver)
        let behindBalancer = try Proxy(extra: ["--allow", "127.0.0.1/32", "--connect-timeout", "1", "--trust-proxy-protocol", "--proxy-protocol-from", "127.0.0.1/32"],
                                       environment: quickResolver)
        let seeds = Self.fuzzSeeds(target: server.endpoint)
        let proxyHeaderSeeds = seeds.filter { $0.starts(with: Array("PROXY".utf8)) || $0.first == 0x0D }

        // A short warm-up first, so memory the process keeps for good (thread stacks, pools) is
        // counted before the baseline.
        _ = try await fuzz(plain, seeds: seeds, seed: 1, until: .now + .seconds(2), limit: 2_000)
        _ = try await fuzz(behindBalancer, seeds: proxyHeaderSeeds, seed: 2, until: .now + .seconds(2), limit: 2_000)
        let baseline = [plain, behindBalancer].map { ($0.openDescriptors, (try? residentKiB($0.process)) ?? 0) }

        let deadline = ContinuousClock.now + .seconds(30)
        async let plainRuns = fuzz(plain, seeds: seeds, seed: 3, until: deadline, limit: 200_000)
        async let balancerRuns = fuzz(behindBalancer, seeds: proxyHeaderSeeds, seed: 4, until: deadline, limit: 200_000)
        let (sentPlain, sentBehind) = try await (plainRuns, balancerRuns)
        #expect(sentPlain > 2_000 && sentBehind > 2_000, "only \(sentPlain) and \(sentBehind) connections in 30 s")

        for (proxy, (descriptors, memory)) in zip([plain, behindBalancer], baseline) {
            #expect(proxy.process.isRunning, "the proxy crashed: \(proxy.command.errors.suffix(2000))")
            // Flows to the echo server and lookups end within the 1 s connect timeout and the
            // resolver's one try; then everything is back.
            let settle = ContinuousClock.now + .seconds(10)
            while proxy.openDescriptors > descriptors && ContinuousClock.now < settle { try await Task.sleep(for: .milliseconds(100)) }
            #expect(proxy.openDescriptors <= descriptors, "the proxy holds \(proxy.openDescriptors) descriptors, \(descriptors) before")
            let after = try residentKiB(proxy.process)
            #expect(after - memory < 16 * 1024, "resident memory went from \(memory) KiB to \(after) KiB")
        }
        // And it still serves.
        let (status, body) = try await curl(["--socks5-hostname", "127.0.0.1:\(plain.port)", "http://127.0.0.1:\(server.endpoint.port)/"])
        #expect(status == 0)
        try expectLeftFromUSSlice(body)
    }
}
