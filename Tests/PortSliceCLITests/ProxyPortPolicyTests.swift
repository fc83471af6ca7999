import Foundation
import PortSliceCore
import PortSliceLab
import PortSliceSockets
import PortSliceTestSupport
import Testing

/// The destination port policy through a running `portslice proxy`: 25 refused by default,
/// `--allow-port` and `--deny-port`, refusals counted by reason. Nothing needs to listen on a
/// refused port: the proxy refuses before it dials (or looks a name up).
extension ProxyTests {
    /// The whole answer the proxy sends to `request` on a new connection, until it closes
    /// (each read waits at most 5 s).
    func answer(from proxy: Proxy, to request: [UInt8], after greeting: [UInt8]? = nil) async throws -> [UInt8] {
        try await offThePool {
            let socket = try UnslicedConnect.tcp(to: proxy.endpoint)
            if let greeting {
                try socket.send(greeting)
                #expect(try socket.receive(timeout: .seconds(5)) == [5, 0])
            }
            try socket.send(request)
            var answer: [UInt8] = []
            while true {
                let bytes = try socket.receive(timeout: .seconds(5))
                if bytes.isEmpty { return answer }
                answer += bytes
            }
        }
    }

    /// The SOCKS5 reply to a CONNECT to the IPv4 literal or name `host` and `port`.
    func socksReply(_ proxy: Proxy, host: String, port: UInt16) async throws -> [UInt8] {
        let address: [UInt8] = if let literal = try? IPv4Address(parsing: host) {
            [1, literal.octets.0, literal.octets.1, literal.octets.2, literal.octets.3]
        } else {
            [3, UInt8(host.utf8.count)] + Array(host.utf8)
        }
        return try await answer(from: proxy, to: [5, 1, 0] + address + [UInt8(port >> 8), UInt8(port & 0xff)], after: [5, 1, 0])
    }

    /// The proxy's whole answer to an HTTP CONNECT to `authority`.
    func connectAnswer(_ proxy: Proxy, _ authority: String) async throws -> String {
        String(decoding: try await answer(from: proxy, to: Array("CONNECT \(authority) HTTP/1.1\r\nHost: \(authority)\r\n\r\n".utf8)), as: UTF8.self)
    }

    static func httpAnswer(_ status: String, _ body: String) -> String {
        "HTTP/1.1 \(status)\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count + 1)\r\nConnection: close\r\n\r\n\(body)\n"
    }

    /// The proxy's /metrics once every line of `expected` is in it (a line whole, value
    /// included), or as it is when the wait ends.
    func metrics(of proxy: Proxy, showing expected: [String]) async throws -> String {
        var text = ""
        try await waitUntil(checkingEvery: .milliseconds(50)) {
            text = try await curl([try proxy.adminURL("/metrics")]).body
            return expected.allSatisfy { text.contains($0 + "\n") }
        }
        return text
    }

    static let socksRefused: [UInt8] = [5, 2, 0, 1, 0, 0, 0, 0, 0, 0]
    static let smtpRefusal = "port 25 (SMTP) is refused by default, as egress providers refuse it; --allow-port 25 permits it"

    /// A UDP ASSOCIATE client: one datagram to 127.0.0.1:25 (argv 2 is the echo server's
    /// port), then one to the echo server, whose answer proves the relay served on.
    static let udpToPort25Client = ProxyTests.udpAssociation + #"""
        udp.sendto(b"\x00\x00\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack("!H", 25) + b"HELO", relay)
        header = b"\x00\x00\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack("!H", target_port)
        udp.sendto(header + b"after", relay)
        data, _ = udp.recvfrom(65535)
        assert data == header + b"after", data
        print("ok")
        """#

    @Test("port 25 is refused by default even where the address is allowed: SOCKS reply 2 (a literal, or a name not looked up), HTTP 403 naming --allow-port 25 for CONNECT and GET, a UDP datagram dropped; counted by reason")
    func port25RefusedByDefault() async throws {
        let server = try EchoServers(Endpoint(IPv4Address(127, 0, 0, 1), 0))
        let proxy = try Proxy(extra: ["--allow", "127.0.0.1/32"])
        #expect(try await socksReply(proxy, host: "127.0.0.1", port: 25) == Self.socksRefused)
        #expect(try await socksReply(proxy, host: "localhost", port: 25) == Self.socksRefused)
        #expect(try await connectAnswer(proxy, "127.0.0.1:25") == Self.httpAnswer("403 Forbidden", Self.smtpRefusal))
        let (_, forwarded) = try await curl(["-w", "\n%{http_code}", "-x", "http://127.0.0.1:\(proxy.port)", "http://127.0.0.1:25/"])
        #expect(forwarded == Self.smtpRefusal + "\n\n403")
        let (udpStatus, udpOutput) = try await python(Self.udpToPort25Client, "\(proxy.port)", "\(server.endpoint.port)")
        #expect(udpStatus == 0 && udpOutput == "ok\n", "\(udpOutput)")
        // Every other port of the same address is served.
        let (status, body) = try await curl(["--socks5-hostname", "127.0.0.1:\(proxy.port)", "http://127.0.0.1:\(server.endpoint.port)/"])
        #expect(status == 0, "\(body)")
        try expectLeftFromUSSlice(body)
        #expect(server.peers[.udp, default: []].count == 1, "only the datagram to the echo server left: \(server.peers)")

        let expected = [
            #"portslice_proxy_refusals_total{reason="port",protocol="socks"} 2"#,
            #"portslice_proxy_refusals_total{reason="port",protocol="http"} 2"#,
            #"portslice_proxy_refusals_total{reason="port",protocol="socks-udp"} 1"#,
            #"portslice_proxy_failures_total{reason="refused_by_policy",protocol="socks"} 2"#,
            #"portslice_proxy_failures_total{reason="refused_by_policy",protocol="http"} 2"#,
            #"portslice_proxy_failures_total{reason="refused_by_policy",protocol="socks-udp"} 1"#,
        ]
        let metrics = try await metrics(of: proxy, showing: expected)
        for line in expected { #expect(metrics.contains(line + "\n"), "\(line) in \(metrics)") }
        #expect(!metrics.contains(#"reason="special_purpose""#), "\(metrics)")
        let page = try await curl([try proxy.adminURL("/status")]).body
        #expect(page.hasPrefix("Destination ports: refused by default 25; every other port open\n"), "\(page)")
    }

    @Test("--allow-port 25 lets a request to port 25 through to the dial: connection refused (SOCKS reply 5, HTTP 502) where nothing listens, not refused by policy")
    func allowPort25() async throws {
        let proxy = try Proxy(extra: ["--allow", "127.0.0.1/32", "--allow-port", "25"])
        // Nothing is expected on port 25 here; should a mail server listen, the dial succeeds.
        let listening: Bool
        do {
            _ = try UnslicedConnect.tcp(to: Endpoint(IPv4Address(127, 0, 0, 1), 25), timeout: .seconds(2))
            listening = true
        } catch {
            listening = false
        }
        let destination = "127.0.0.1:25"
        if listening {
            #expect(try await socksReply(proxy, host: "127.0.0.1", port: 25).prefix(2) == [5, 0])
        } else {
            #expect(try await socksReply(proxy, host: "127.0.0.1", port: 25) == [5, 5, 0, 1, 0, 0, 0, 0, 0, 0])
            #expect(try await connectAnswer(proxy, destination) == Self.httpAnswer("502 Bad Gateway", "\(destination) refused the connection"))
            let expected = [
                #"portslice_proxy_failures_total{reason="connection_refused",protocol="socks"} 1"#,
                #"portslice_proxy_failures_total{reason="connection_refused",protocol="http"} 1"#,
            ]
            let metrics = try await metrics(of: proxy, showing: expected)
            for line in expected { #expect(metrics.contains(line + "\n"), "\(line) in \(metrics)") }
            #expect(!metrics.contains("portslice_proxy_refusals_total{"), "\(metrics)")
        }
        let page = try await curl([try proxy.adminURL("/status")]).body
        #expect(page.hasPrefix("Destination ports: opened 25 (--allow-port); refused by default 25; every other port open\n"), "\(page)")
    }

    @Test("--deny-port refuses a range to its edges and a live destination before dialing it; other ports are served")
    func denyPortRange() async throws {
        let denied = try EchoServers(Endpoint(IPv4Address(127, 0, 0, 1), 0))
        let served = try EchoServers(Endpoint(IPv4Address(127, 0, 0, 1), 0))
        let deniedPort = denied.endpoint.port
        let proxy = try Proxy(extra: ["--allow", "127.0.0.1/32", "--deny-port", "8000-8100", "--deny-port", "\(deniedPort)"])
        for port: UInt16 in [8000, 8080, 8100, deniedPort] {
            #expect(try await socksReply(proxy, host: "127.0.0.1", port: port) == Self.socksRefused, "port \(port)")
        }
        #expect(try await connectAnswer(proxy, "127.0.0.1:8080")
                == Self.httpAnswer("403 Forbidden", "port 8080 is in the port deny list (--deny-port 8000-8100)"))
        let (_, forwarded) = try await curl(["-w", "\n%{http_code}", "-x", "http://127.0.0.1:\(proxy.port)", "http://127.0.0.1:\(deniedPort)/"])
        let deniedBy = (8000...8100).contains(deniedPort) ? "8000-8100" : "\(deniedPort)"
        #expect(forwarded == "port \(deniedPort) is in the port deny list (--deny-port \(deniedBy))\n\n403")
        #expect(denied.peers[.tcp, default: []].isEmpty, "the denied destination was dialled: \(denied.peers)")
        let (status, body) = try await curl(["--socks5-hostname", "127.0.0.1:\(proxy.port)", "http://127.0.0.1:\(served.endpoint.port)/"])
        #expect(status == 0, "\(body)")
        try expectLeftFromUSSlice(body)
        let expected = [
            #"portslice_proxy_refusals_total{reason="port",protocol="socks"} 4"#,
            #"portslice_proxy_refusals_total{reason="port",protocol="http"} 2"#,
        ]
        let metrics = try await metrics(of: proxy, showing: expected)
        for line in expected { #expect(metrics.contains(line + "\n"), "\(line) in \(metrics)") }
    }

    @Test("bad --allow-port and --deny-port values stop the proxy at start with an error naming the option",
          arguments: [
            (["--deny-port", "70000"], "Error: --deny-port '70000' is not a port from 1 to 65535 or a range of them LOW-HIGH, such as 25 or 8000-8100"),
            (["--allow-port", "5-3"], "Error: --allow-port '5-3' runs backwards; write the range LOW-HIGH (3-5)"),
            (["--allow-port", "443"], "Error: --allow-port 443 opens nothing: only 25 is refused by default"),
            (["--allow-port", "25", "--deny-port", "1-1024"], "Error: --allow-port 25 opens nothing: the only ports of it refused by default (25) are refused by --deny-port 1-1024 too"),
          ])
    func badPortOptions(options: [String], message: String) async throws {
        let directory = try TemporaryDirectory()
        let pool = try directory.write("pool.csv", Proxy.twoCountries)
        let refused = try await CommandRunner.run(["proxy", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0", "--slice", Proxy.usSlice, "--pool", pool] + options)
        #expect(refused.status == 64, "exit status \(refused.status): \(refused.errorOutput)")
        #expect(refused.errorOutput.hasPrefix(message), "\(refused.errorOutput)")
    }
}
