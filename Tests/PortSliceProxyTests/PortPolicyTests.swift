import Logging
import NIOPosix
import Testing
import PortSliceCore
import PortSliceSockets
import PortSliceTestSupport
@testable import PortSliceProxy

@Suite("Port policy")
struct PortPolicyTests {
    static func range(_ text: String) -> PortRange { PortRange(text)! }

    static let smtp = "port 25 (SMTP) is refused by default, as egress providers refuse it; --allow-port 25 permits it"

    @Test("by default only 25 is refused, with a reason naming --allow-port; its neighbours and the ends of the port space are open")
    func defaultPolicy() {
        let policy = PortPolicy()
        #expect(policy.refusal(for: 25) == .refusedByDefault(25, Self.range("25")))
        #expect(policy.refusal(for: 25)?.description == Self.smtp)
        for port: UInt16 in [1, 24, 26, 80, 443, 465, 587, 2525, 65535] {
            #expect(policy.refusal(for: port) == nil, "port \(port)")
        }
        #expect(policy.description == "refused by default 25; every other port open")
    }

    @Test("--allow-port opens 25, alone or in a range; --deny-port refuses a range to its edges and wins over --allow-port")
    func precedence() throws {
        #expect(try PortPolicy(allowing: ["25"], denying: []).refusal(for: 25) == nil)
        let policy = try PortPolicy(allowing: ["20-30"], denying: ["22", "8000-8100"])
        #expect(policy.refusal(for: 25) == nil, "the allow range opens the default-refused port")
        #expect(policy.refusal(for: 22) == .denied(22, by: Self.range("22")), "--deny-port wins over an --allow-port range holding it")
        #expect(policy.refusal(for: 22)?.description == "port 22 is in the port deny list (--deny-port 22)")
        for port: UInt16 in [8000, 8050, 8100] {
            #expect(policy.refusal(for: port) == .denied(port, by: Self.range("8000-8100")), "port \(port)")
        }
        for port: UInt16 in [21, 23, 7999, 8101] {
            #expect(policy.refusal(for: port) == nil, "port \(port)")
        }
        #expect(policy.description == "refused 22, 8000-8100 (--deny-port); opened 20-30 (--allow-port); refused by default 25; every other port open")
        // Denying 25 explicitly names the option, not the default.
        #expect(try PortPolicy(allowing: [], denying: ["1-1024"]).refusal(for: 25) == .denied(25, by: Self.range("1-1024")))
    }

    /// Option values the policy refuses, the error and what it says.
    struct BadValues: Sendable, CustomTestStringConvertible {
        let allowing: [String]
        let denying: [String]
        let error: PortPolicyError
        let message: String

        init(allowing: [String] = [], denying: [String] = [], _ error: PortPolicyError, _ message: String) {
            (self.allowing, self.denying, self.error, self.message) = (allowing, denying, error, message)
        }

        var testDescription: String { "--allow-port \(allowing) --deny-port \(denying)" }
    }

    static let notAPort = "is not a port from 1 to 65535 or a range of them LOW-HIGH, such as 25 or 8000-8100"

    static let badValues: [BadValues] = [
        BadValues(denying: ["70000"], .notAPort(option: "deny-port", text: "70000"), "--deny-port '70000' \(notAPort)"),
        BadValues(allowing: ["5-3"], .reversed(option: "allow-port", text: "5-3"), "--allow-port '5-3' runs backwards; write the range LOW-HIGH (3-5)"),
        BadValues(denying: ["0"], .notAPort(option: "deny-port", text: "0"), "--deny-port '0' \(notAPort)"),
        BadValues(denying: ["0-100"], .notAPort(option: "deny-port", text: "0-100"), "--deny-port '0-100' \(notAPort)"),
        BadValues(allowing: ["smtp"], .notAPort(option: "allow-port", text: "smtp"), "--allow-port 'smtp' \(notAPort)"),
        BadValues(denying: ["8000-"], .notAPort(option: "deny-port", text: "8000-"), "--deny-port '8000-' \(notAPort)"),
        BadValues(denying: ["80", ""], .notAPort(option: "deny-port", text: ""), "--deny-port '' \(notAPort)"),
        BadValues(allowing: ["443"], .opensNothing(allow: range("443"), deniedBy: []),
                  "--allow-port 443 opens nothing: only 25 is refused by default and every other port is open; --allow-port does not make a list of the only ports allowed (to allow only some, refuse the others with --deny-port)"),
        BadValues(allowing: ["25"], denying: ["25"], .opensNothing(allow: range("25"), deniedBy: [range("25")]),
                  "--allow-port 25 opens nothing: the only ports of it refused by default (25) are refused by --deny-port 25 too, and --deny-port wins over --allow-port"),
        BadValues(allowing: ["20-30"], denying: ["22", "1-1024"], .opensNothing(allow: range("20-30"), deniedBy: [range("1-1024")]),
                  "--allow-port 20-30 opens nothing: the only ports of it refused by default (25) are refused by --deny-port 1-1024 too, and --deny-port wins over --allow-port"),
    ]

    @Test("bad --allow-port and --deny-port values fail naming the option and the value", arguments: PortPolicyTests.badValues)
    func refusesBadValues(_ bad: BadValues) {
        #expect(throws: bad.error) { try PortPolicy(allowing: bad.allowing, denying: bad.denying) }
        #expect(bad.error.description == bad.message)
    }

    @Test("the destination policy judges the port first, so a refused port is named even at a refused address; each refusal has its metrics reason")
    func destinationPolicy() throws {
        let policy = DestinationPolicy(hostAddresses: InterfaceAddressSnapshot(read: { [] }),
                                       ports: try PortPolicy(allowing: [], denying: ["8000-8100"]))
        let loopback = IPv4Address(127, 0, 0, 1), publicAddress = IPv4Address(8, 8, 8, 8)
        #expect(policy.refusal(for: loopback, port: 25) == .port(.refusedByDefault(25, Self.range("25"))))
        #expect(policy.refusal(for: publicAddress, port: 25)?.reason == "port")
        #expect(policy.refusal(for: publicAddress, port: 8080) == .port(.denied(8080, by: Self.range("8000-8100"))))
        #expect(policy.refusal(for: publicAddress, port: 443) == nil)
        #expect(policy.refusal(for: loopback, port: 443) == .specialPurpose(.v4(loopback), .ipv4Loopback))
        #expect(policy.refusal(for: loopback, port: 443)?.reason == "special_purpose")
        #expect(policy.refusal(for: publicAddress, port: 443, egressAddresses: [publicAddress])?.reason == "egress_address")
        let denying = DestinationPolicy(allow: [], deny: [try IPv4Prefix(parsing: "8.8.8.0/24")], hostAddresses: InterfaceAddressSnapshot(read: { [] }))
        #expect(denying.refusal(for: publicAddress, port: 443)?.reason == "address_denied")
    }

    /// A proxy on loopback without slices: a destination the policy lets through fails later,
    /// as exhausted (SOCKS reply 1, HTTP 503), so every reply 2 and 403 is the policy's.
    static func withProxy(ports: PortPolicy, _ body: (Endpoint, FlowOpener) async throws -> Void) async throws {
        try await InProcessProxy.serving({ pool in
            FlowOpener(slices: EgressSlices(), clientTraits: TraitIndex(feeds: []),
                       policy: DestinationPolicy(allowLoopback: true, hostAddresses: InterfaceAddressSnapshot(read: { [] }), ports: ports),
                       passwordChecks: pool)
        }, body)
    }

    /// The SOCKS5 reply to a CONNECT to `host` (an IPv4 literal or a name) and `port`.
    static func socksReply(_ proxy: Endpoint, host: String, port: UInt16) throws -> [UInt8] {
        let socket = try UnslicedConnect.tcp(to: proxy)
        try socket.send([5, 1, 0])
        #expect(try socket.receive(timeout: .seconds(5)) == [5, 0])
        let address: [UInt8] = if let literal = try? IPv4Address(parsing: host) {
            [1, literal.octets.0, literal.octets.1, literal.octets.2, literal.octets.3]
        } else {
            [3, UInt8(host.utf8.count)] + Array(host.utf8)
        }
        try socket.send([5, 1, 0] + address + [UInt8(port >> 8), UInt8(port & 0xff)])
        return try receiveAll(socket)
    }

    /// Everything the proxy sends until it closes (bounded: 5 s without a byte fails).
    static func receiveAll(_ socket: borrowing ConnectedSocket) throws -> [UInt8] {
        var answer: [UInt8] = []
        while true {
            let bytes = try socket.receive(timeout: .seconds(5))
            if bytes.isEmpty { return answer }
            answer += bytes
        }
    }

    /// The whole answer to an HTTP proxy request `head`.
    static func httpAnswer(_ proxy: Endpoint, _ head: String) throws -> String {
        let socket = try UnslicedConnect.tcp(to: proxy)
        try socket.send(Array(head.utf8))
        return String(decoding: try receiveAll(socket), as: UTF8.self)
    }

    static func forbidden(_ body: String) -> String {
        "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count + 1)\r\nConnection: close\r\n\r\n\(body)\n"
    }

    @Test("in process: SOCKS CONNECT to port 25 (literal or a name never looked up) gets reply 2, HTTP CONNECT and GET get 403 naming --allow-port, a UDP datagram is dropped; all counted by reason")
    func refusedThroughEngine() async throws {
        try await Self.withProxy(ports: PortPolicy()) { (proxy, opener) async throws in
            #expect(try Self.socksReply(proxy, host: "127.0.0.1", port: 25) == [5, 2, 0, 1, 0, 0, 0, 0, 0, 0])
            // A name that cannot resolve: refused for its port (2), not as unresolved (4).
            #expect(try Self.socksReply(proxy, host: "no-such-host.invalid", port: 25) == [5, 2, 0, 1, 0, 0, 0, 0, 0, 0])
            // Past the policy, the proxy without slices answers exhausted.
            #expect(try Self.socksReply(proxy, host: "127.0.0.1", port: 26) == [5, 1, 0, 1, 0, 0, 0, 0, 0, 0])
            #expect(try Self.httpAnswer(proxy, "CONNECT 127.0.0.1:25 HTTP/1.1\r\nHost: 127.0.0.1:25\r\n\r\n") == Self.forbidden(Self.smtp))
            #expect(try Self.httpAnswer(proxy, "GET http://no-such-host.invalid:25/ HTTP/1.1\r\nHost: no-such-host.invalid:25\r\n\r\n") == Self.forbidden(Self.smtp))

            // UDP ASSOCIATE: the relay's address comes in the reply; a datagram to port 25 is dropped.
            let control = try UnslicedConnect.tcp(to: proxy)
            try control.send([5, 1, 0])
            #expect(try control.receive(timeout: .seconds(5)) == [5, 0])
            try control.send([5, 3, 0, 1, 0, 0, 0, 0, 0, 0])
            let reply = try control.receive(timeout: .seconds(5))
            try #require(reply.count == 10 && Array(reply.prefix(2)) == [5, 0], "reply \(reply)")
            let relay = try UnslicedConnect.udp(to: Endpoint(IPv4Address(reply[4], reply[5], reply[6], reply[7]), UInt16(reply[8]) << 8 | UInt16(reply[9])))
            try relay.send([0, 0, 0, 1, 127, 0, 0, 1, 0, 25] + Array("HELO".utf8))
            let expected = [
                #"portslice_proxy_refusals_total{reason="port",protocol="socks"} 2"#,
                #"portslice_proxy_refusals_total{reason="port",protocol="http"} 2"#,
                #"portslice_proxy_refusals_total{reason="port",protocol="socks-udp"} 1"#,
                #"portslice_proxy_failures_total{reason="refused_by_policy",protocol="socks"} 2"#,
                #"portslice_proxy_failures_total{reason="refused_by_policy",protocol="http"} 2"#,
                #"portslice_proxy_failures_total{reason="refused_by_policy",protocol="socks-udp"} 1"#,
                #"portslice_proxy_failures_total{reason="exhausted",protocol="socks"} 1"#,
            ]
            // The datagram is judged on another thread: wait for its count.
            try await waitUntil { expected.allSatisfy(opener.metrics.text().contains) }
            let metrics = opener.metrics.text()
            for line in expected { #expect(metrics.contains(line + "\n"), "\(line) in \(metrics)") }
            #expect(!metrics.contains(#"reason="special_purpose""#), "\(metrics)")
        }
    }

    @Test("in process: --allow-port 25 lets port 25 through to the dial; --deny-port 8000-8100 refuses 8000, 8080 and 8100 but not 8101")
    func allowedAndDeniedThroughEngine() async throws {
        try await Self.withProxy(ports: try PortPolicy(allowing: ["25"], denying: [])) { (proxy, opener) async throws in
            #expect(try Self.socksReply(proxy, host: "127.0.0.1", port: 25) == [5, 1, 0, 1, 0, 0, 0, 0, 0, 0])
            #expect(!opener.metrics.text().contains("portslice_proxy_refusals_total"), "\(opener.metrics.text())")
        }
        try await Self.withProxy(ports: try PortPolicy(allowing: [], denying: ["8000-8100"])) { (proxy, opener) async throws in
            for port: UInt16 in [8000, 8080, 8100] {
                #expect(try Self.socksReply(proxy, host: "127.0.0.1", port: port) == [5, 2, 0, 1, 0, 0, 0, 0, 0, 0], "port \(port)")
            }
            #expect(try Self.socksReply(proxy, host: "127.0.0.1", port: 8101) == [5, 1, 0, 1, 0, 0, 0, 0, 0, 0])
            #expect(try Self.httpAnswer(proxy, "CONNECT 127.0.0.1:8080 HTTP/1.1\r\n\r\n")
                    == Self.forbidden("port 8080 is in the port deny list (--deny-port 8000-8100)"))
            let metrics = opener.metrics.text()
            #expect(metrics.contains(#"portslice_proxy_refusals_total{reason="port",protocol="socks"} 3"# + "\n"), "\(metrics)")
            #expect(metrics.contains(#"portslice_proxy_refusals_total{reason="port",protocol="http"} 1"# + "\n"), "\(metrics)")
        }
    }
}
