import Foundation
import Glibc
import PortSliceCore
import PortSliceSockets
import PortSliceTestSupport
import Testing

/// `portslice proxy` refuses every special-purpose IPv4 range however the destination is
/// asked for: as an IP literal, as `localhost`, and as a name that resolves into the range.
/// One proxy per test serves every range, so the file runs in about a second.
@Suite("portslice proxy: internal destinations by literal and by name")
struct DestinationNameTests {
    /// One address in each range of the IANA IPv4 special-purpose registry and multicast, with
    /// the range as refusals name it. 0.0.0.0 and 127.0.0.1 would reach the echo server if
    /// dialled; 169.254.169.254 is where clouds serve instance credentials.
    static let internalAddresses: [(address: String, range: String)] = [
        ("0.0.0.0", "0.0.0.0/8 (this network)"), ("10.1.2.3", "10.0.0.0/8 (private use)"),
        ("100.64.0.1", "100.64.0.0/10 (shared address space)"), ("127.0.0.1", "127.0.0.0/8 (loopback)"),
        ("169.254.169.254", "169.254.0.0/16 (link-local)"), ("172.16.0.1", "172.16.0.0/12 (private use)"),
        ("192.0.0.170", "192.0.0.0/24 (IETF protocol assignments)"), ("192.0.2.1", "192.0.2.0/24 (documentation, TEST-NET-1)"),
        ("192.31.196.1", "192.31.196.0/24 (AS112-v4)"), ("192.52.193.1", "192.52.193.0/24 (AMT)"),
        ("192.88.99.1", "192.88.99.0/24 (deprecated 6to4 relay anycast)"), ("192.168.1.1", "192.168.0.0/16 (private use)"),
        ("192.175.48.1", "192.175.48.0/24 (direct delegation AS112 service)"), ("198.18.0.1", "198.18.0.0/15 (benchmarking)"),
        ("198.51.100.7", "198.51.100.0/24 (documentation, TEST-NET-2)"), ("203.0.113.9", "203.0.113.0/24 (documentation, TEST-NET-3)"),
        ("224.0.0.1", "224.0.0.0/4 (multicast)"), ("240.0.0.1", "240.0.0.0/4 (reserved)"),
        ("255.255.255.255", "255.255.255.255/32 (limited broadcast)"),
    ]

    /// SOCKS5 reply 2, "connection not allowed by ruleset", with the unspecified bound address.
    static let notAllowed: [UInt8] = [5, 2, 0, 1, 0, 0, 0, 0, 0, 0]

    /// The reason the proxy gives, in its 403 body and its log, for `address` in `range`.
    static func refusal(_ address: String, _ range: String) -> String {
        "\(address) is in \(range), refused by default; add a prefix holding it to the allow list (--allow) to permit it"
    }

    /// The SOCKS5 reply to a CONNECT for `host` (an IPv4 literal or a name) and `port`.
    static func socksReply(via proxy: ProxyTests.Proxy, host: String, port: UInt16) throws -> [UInt8] {
        let socket = try UnslicedConnect.tcp(to: proxy.endpoint)
        try socket.send([5, 1, 0])
        #expect(try socket.receive(timeout: .seconds(5)) == [5, 0])
        let destination: [UInt8] = if let literal = try? IPv4Address(parsing: host) {
            [1, literal.octets.0, literal.octets.1, literal.octets.2, literal.octets.3]
        } else {
            [3, UInt8(host.utf8.count)] + Array(host.utf8)
        }
        try socket.send([5, 1, 0] + destination + [UInt8(port >> 8), UInt8(port & 0xff)])
        return try socket.receive(timeout: .seconds(5))
    }

    /// The proxy's whole answer to `CONNECT host:port`, up to its closing the connection:
    /// the status line and the body.
    static func connectAnswer(via proxy: ProxyTests.Proxy, host: String, port: UInt16) throws -> (status: String, body: String) {
        let socket = try UnslicedConnect.tcp(to: proxy.endpoint)
        try socket.send(Array("CONNECT \(host):\(port) HTTP/1.1\r\nHost: \(host):\(port)\r\n\r\n".utf8))
        var answer: [UInt8] = []
        while case let bytes = try socket.receive(timeout: .seconds(5)), !bytes.isEmpty { answer += bytes }
        let text = String(decoding: answer, as: UTF8.self)
        let head = text.components(separatedBy: "\r\n\r\n")
        return (head.first?.components(separatedBy: "\r\n").first ?? "", head.dropFirst().joined(separator: "\r\n\r\n"))
    }

    /// Asks `proxy` for `host` by SOCKS5 and by HTTP CONNECT, expecting `address` in `range` refused.
    static func expectRefused(via proxy: ProxyTests.Proxy, host: String, port: UInt16, address: String, range: String,
                              sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let (reply, answer) = try await offThePool {
            (try socksReply(via: proxy, host: host, port: port), try connectAnswer(via: proxy, host: host, port: port))
        }
        #expect(reply == notAllowed, "SOCKS5 \(host): \(reply)", sourceLocation: sourceLocation)
        #expect(answer.status == "HTTP/1.1 403 Forbidden", "CONNECT \(host)", sourceLocation: sourceLocation)
        #expect(answer.body == refusal(address, range) + "\n", "CONNECT \(host)", sourceLocation: sourceLocation)
    }

    /// curl forwarding `GET url` through `proxy`: its HTTP status and the body.
    static func forwarded(via proxy: ProxyTests.Proxy, _ url: String) async throws -> (status: String, body: String) {
        let (_, output) = try await CommandRunner.curl(["-x", "http://127.0.0.1:\(proxy.port)", "-w", "\n%{http_code}", url])
        guard let statusLine = output.lastIndex(of: "\n") else { return ("", output) }
        return (String(output[output.index(after: statusLine)...]), String(output[..<statusLine]))
    }

    @Test("every special-purpose IPv4 range asked for by IP literal, and localhost by name: SOCKS reply 2 and HTTP 403 naming the range, nothing dialled")
    func literalsAndLocalhost() async throws {
        let server = try EchoServers(Endpoint(IPv4Address(127, 0, 0, 1), 0))
        let port = server.endpoint.port
        let proxy = try ProxyTests.Proxy()
        for (address, range) in Self.internalAddresses {
            try await Self.expectRefused(via: proxy, host: address, port: port, address: address, range: range)
        }
        try await Self.expectRefused(via: proxy, host: "localhost", port: port, address: "127.0.0.1", range: "127.0.0.0/8 (loopback)")
        let byName = try await Self.forwarded(via: proxy, "http://localhost:\(port)/")
        #expect(byName.status == "403" && byName.body == Self.refusal("127.0.0.1", "127.0.0.0/8 (loopback)") + "\n", "\(byName)")
        let metadata = try await Self.forwarded(via: proxy, "http://169.254.169.254/latest/meta-data/")
        #expect(metadata.status == "403" && metadata.body == Self.refusal("169.254.169.254", "169.254.0.0/16 (link-local)") + "\n", "\(metadata)")
        #expect(server.peers[.tcp, default: []].isEmpty, "the echo server saw \(server.peers)")
    }

    /// Writing /etc/hosts needs root; CI runs the tests as root, elsewhere this test is skipped.
    @Test("names resolving into each range through /etc/hosts are refused by SOCKS5, HTTP CONNECT and HTTP forwarding, by the address they resolve to",
          .enabled(if: geteuid() == 0, "needs root to add names to /etc/hosts (CI runs as root)"))
    func namesFromTheHostsFile() async throws {
        let server = try EchoServers(Endpoint(IPv4Address(127, 0, 0, 1), 0))
        let port = server.endpoint.port
        let proxy = try ProxyTests.Proxy()
        // Unique names under .example (RFC 2606), so neither the real DNS nor a parallel run answers them.
        let names = Self.internalAddresses.indices.map { "ps-\($0)-\(getpid()).portslice-test.example" }
        try await HostsFile.withEntries(zip(names, Self.internalAddresses).map { (name: $0, address: $1.address) }) {
            for (name, (address, _)) in zip(names, Self.internalAddresses) {
                let resolved = try? HostNetwork.resolveIPv4(name)
                try #require(resolved == [try IPv4Address(parsing: address)],
                             "\(name) resolves to \(resolved.map { "\($0)" } ?? "nothing"), not \(address): this resolver does not read /etc/hosts (nsswitch.conf 'hosts:' needs 'files')")
            }
            for (name, (address, range)) in zip(names, Self.internalAddresses) {
                try await Self.expectRefused(via: proxy, host: name, port: port, address: address, range: range)
                let answer = try await Self.forwarded(via: proxy, "http://\(name):\(port)/")
                #expect(answer.status == "403" && answer.body == Self.refusal(address, range) + "\n", "GET http://\(name): \(answer)")
            }
        }
        #expect(server.peers[.tcp, default: []].isEmpty, "the echo server saw \(server.peers)")
    }
}

/// Temporary lines in /etc/hosts. They are appended and then cut off again, so the lines
/// already there (localhost, which parallel tests resolve) never leave the file meanwhile.
enum HostsFile {
    static let path = "/etc/hosts"

    /// Runs `body` with a line `address name` for each entry, then restores the file byte for
    /// byte, whether `body` returned or threw.
    static func withEntries<T>(_ entries: [(name: String, address: String)], _ body: () async throws -> T) async throws -> T {
        let file = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        defer { try? file.close() }
        let original = try file.readToEnd() ?? Data()
        let separator = original.isEmpty || original.last == UInt8(ascii: "\n") ? "" : "\n"
        try file.write(contentsOf: Data((separator + entries.map { "\($0.address) \($0.name)\n" }.joined()).utf8))
        defer {
            do {
                try file.truncate(atOffset: UInt64(original.count))
                try file.synchronize()
                let restored = try Data(contentsOf: URL(fileURLWithPath: path))
                if restored != original { Issue.record("\(path) differs from before the test: \(String(decoding: restored, as: UTF8.self))") }
            } catch {
                Issue.record("cannot restore \(path): \(error)")
            }
        }
        return try await body()
    }
}
