import Foundation
import PortSliceCore
import PortSliceLab
import PortSliceSockets
import PortSliceTestSupport
import Testing

/// What an attacker tries on the proxy: PROXY headers from peers that are not the balancer,
/// the admin pages through a rebound name, and buffers filled before the relay starts.
extension ProxyTests {
    /// Connects from `source`, sends a PROXY v1 header naming the Berlin client and a SOCKS5
    /// CONNECT to `port`, and prints the echo server's answer, or `closed` when the proxy hangs
    /// up without a byte.
    static let proxyHeaderClient = #"""
        import socket, struct, sys
        source, proxy_port, target_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
        s = socket.socket(); s.settimeout(5); s.bind((source, 0)); s.connect(("127.0.0.1", proxy_port))
        try:
            s.sendall(b"PROXY TCP4 127.0.0.5 127.0.0.1 50000 1080\r\n\x05\x01\x00")
            greeting = s.recv(2)
        except ConnectionResetError:
            greeting = b""
        if greeting != b"\x05\x00":
            print("closed" if greeting == b"" else "answered %r" % greeting); sys.exit(0)
        s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack("!H", target_port))
        assert s.recv(10)[:2] == b"\x05\x00"
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        answer = b""
        while True:
            chunk = s.recv(4096)
            if not chunk: break
            answer += chunk
        print(answer.decode().split("\r\n\r\n")[-1].strip())
        """#

    @Test("a PROXY header is believed only from --proxy-protocol-from; any other peer is closed before a byte is read")
    func proxyProtocolOnlyFromBalancers() async throws {
        let server = try EchoServers(Endpoint(IPv4Address(127, 0, 0, 1), 0))
        let proxy = try Proxy(extra: ["--allow", "127.0.0.1/32", "--trust-proxy-protocol", "--proxy-protocol-from", "127.0.0.9/32"])
        let (status, stranger) = try await python(Self.proxyHeaderClient, "127.0.0.1", "\(proxy.port)", "\(server.endpoint.port)")
        #expect(status == 0 && stranger.trimmingCharacters(in: .whitespacesAndNewlines) == "closed", "\(stranger)")
        #expect(server.peers[.tcp, default: []].isEmpty, "no flow opened for a stranger's header")
        #expect(proxy.command.errors.contains("closed a connection from 127.0.0.1: not among --proxy-protocol-from"), "\(proxy.command.errors)")

        // The balancer's header names a Berlin client, who leaves from the German slice.
        let (balancerStatus, answer) = try await python(Self.proxyHeaderClient, "127.0.0.9", "\(proxy.port)", "\(server.endpoint.port)")
        #expect(balancerStatus == 0, "\(answer)")
        let source = try seenSource(answer)
        let berlin = try EgressSlice(parsing: Proxy.deSlice)
        #expect(source.address == berlin.address && berlin.ports.contains(source.port), "left from \(source)")

        let unbelieved = try await CommandRunner.run(["proxy", "--slice", Proxy.usSlice, "--pool", "/dev/null", "--trust-proxy-protocol"])
        #expect(unbelieved.status != 0 && unbelieved.errorOutput.contains("--trust-proxy-protocol needs --proxy-protocol-from"), "\(unbelieved.errorOutput)")
    }

    @Test("the status page and metrics are on the admin listener only, for a Host that is an IP literal or localhost")
    func adminListener() async throws {
        let proxy = try Proxy(extra: ["--allow", "127.0.0.1/32"])
        let admin = try proxy.adminPort
        for host in ["127.0.0.1:\(admin)", "localhost:\(admin)", "LOCALHOST", "[::1]:\(admin)"] {
            let (status, body) = try await curl(["-H", "Host: \(host)", "-w", "\n%{http_code}", try proxy.adminURL("/status.json")])
            #expect(status == 0 && body.hasSuffix("\n200") && body.contains("\"recentFlows\""), "Host \(host): \(body)")
        }
        for host in ["evil.example", "evil.example:\(admin)", "127.0.0.1.evil.example", "[::1]x"] {
            let (status, body) = try await curl(["-H", "Host: \(host)", "-w", "\n%{http_code}", try proxy.adminURL("/status.json")])
            #expect(status == 0 && body.hasSuffix("\n403") && body.contains("only requests for an IP address or localhost"), "Host \(host): \(body)")
            #expect(!body.contains("recentFlows"))
        }
        let metrics = try await curl(["-H", "Host: evil.example", "-w", "\n%{http_code}", try proxy.adminURL("/metrics")]).body
        #expect(metrics.hasSuffix("\n403"), "\(metrics)")
        // HTTP/1.0 without any Host is refused too.
        let hostless = try await curl(["--http1.0", "-H", "Host:", "-w", "\n%{http_code}", try proxy.adminURL("/status")]).body
        #expect(hostless.hasSuffix("\n403"), "\(hostless)")
        // The proxy port serves proxy requests only, from loopback too.
        for path in ["/", "/status.json", "/metrics"] {
            let (_, body) = try await curl(["-w", "\n%{http_code}", "http://127.0.0.1:\(proxy.port)\(path)"])
            #expect(body.hasSuffix("\n400") && body.contains("admin listener"), "\(path): \(body)")
        }
        let refused = try await CommandRunner.run(["proxy", "--slice", Proxy.usSlice, "--pool", "/dev/null", "--admin-listen", "0.0.0.0:1081"])
        #expect(refused.status != 0 && refused.errorOutput.contains("--admin-listen 0.0.0.0:1081 is beyond loopback"), "\(refused.errorOutput)")
    }

    /// Resident memory of `process`, in KiB.
    func residentKiB(_ process: Process) throws -> Int {
        let status = try String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8)
        let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") })
        return try #require(Int(line.split(separator: " ", omittingEmptySubsequences: true)[1]))
    }

    /// Sends `prefix`, then `total` bytes of `filler` in 16 KiB writes (stopping when the proxy
    /// hangs up), and returns all the proxy answered.
    func overflow(_ proxy: Proxy, prefix: [UInt8], filler: UInt8, total: Int) async throws -> [UInt8] {
        try await offThePool {
            let socket = try UnslicedConnect.tcp(to: proxy.endpoint)
            try socket.send(prefix)
            let chunk = [UInt8](repeating: filler, count: 16 * 1024)
            var sent = 0
            while sent < total {
                do { try socket.send(chunk) } catch { break }
                sent += chunk.count
            }
            var answer: [UInt8] = []
            while true {
                guard let bytes = try? socket.receive(timeout: .seconds(5)), !bytes.isEmpty else { break }
                answer += bytes
            }
            return answer
        }
    }

    @Test("more than 64 KiB before the relay starts (head, or bytes while the destination answers) is answered with the protocol's error and closed; memory stays flat")
    func preRelayCap() async throws {
        let (blackhole, stopListener) = try await startFullListener()
        defer { stopListener() }
        let proxy = try Proxy(extra: ["--allow", "127.0.0.1/32", "--connect-timeout", "30"])
        let endless = Array("GET http://127.0.0.1:9/ HTTP/1.1\r\nX-Padding: ".utf8)
        let head = try await overflow(proxy, prefix: endless, filler: UInt8(ascii: "a"), total: 256 * 1024)
        #expect(String(decoding: head, as: UTF8.self).hasPrefix("HTTP/1.1 431 Request Header Fields Too Large"), "\(String(decoding: head.prefix(200), as: UTF8.self))")

        // CONNECT to a destination that never answers, then 1 MiB before the 200.
        let connect = Array("CONNECT 127.0.0.1:\(blackhole) HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        let early = try await overflow(proxy, prefix: connect, filler: 0x16, total: 1024 * 1024)
        #expect(String(decoding: early, as: UTF8.self).hasPrefix("HTTP/1.1 413 Content Too Large"), "\(String(decoding: early.prefix(200), as: UTF8.self))")

        // SOCKS: greeting, CONNECT to the same destination, then 1 MiB before the reply: reply 1
        // (general failure) once 64 KiB are held.
        let port = [UInt8(blackhole >> 8), UInt8(blackhole & 0xff)]
        let socksAnswer = try await offThePool {
            let socket = try UnslicedConnect.tcp(to: proxy.endpoint)
            try socket.send([5, 1, 0])
            #expect(try socket.receive(timeout: .seconds(5)) == [5, 0])
            try socket.send([5, 1, 0, 1, 127, 0, 0, 1] + port)
            let chunk = [UInt8](repeating: 0x16, count: 16 * 1024)
            for _ in 0..<64 { do { try socket.send(chunk) } catch { break } }
            return (try? socket.receive(timeout: .seconds(5))) ?? []
        }
        #expect(socksAnswer == [5, 1, 0, 1, 0, 0, 0, 0, 0, 0], "\(socksAnswer.prefix(10))")

        // Memory: 40 more clients each sending 1 MiB of head leave the proxy where it was.
        let before = try residentKiB(proxy.process)
        for _ in 0..<40 {
            let answer = try await overflow(proxy, prefix: endless, filler: UInt8(ascii: "a"), total: 1024 * 1024)
            #expect(String(decoding: answer.prefix(12), as: UTF8.self) == "HTTP/1.1 431")
        }
        let after = try residentKiB(proxy.process)
        // Without the cap each client would have left 1 MiB behind while it sent (40 MiB).
        #expect(after - before < 8 * 1024, "resident memory grew from \(before) KiB to \(after) KiB")
    }
}
