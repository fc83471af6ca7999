import Testing
import PortSliceCore
@testable import PortSliceProxy

@Suite("PROXY protocol header")
struct ProxyProtocolTests {
    static let v2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

    @Test("v1 names the client; UNKNOWN leaves the TCP peer; the rest of the stream is not read")
    func versionOne() throws {
        let header = Array("PROXY TCP4 198.51.100.7 203.0.113.1 40000 1080\r\n".utf8)
        #expect(ProxyProtocolHeader.parse(header + [5, 1, 0]) == .header(client: .v4(IPv4Address(198, 51, 100, 7)), length: header.count))
        let v6 = Array("PROXY TCP6 2001:db8::7 2001:db8::1 40000 1080\r\n".utf8)
        #expect(ProxyProtocolHeader.parse(v6) == .header(client: try IPAddress(parsing: "2001:db8::7"), length: v6.count))
        #expect(ProxyProtocolHeader.parse(Array("PROXY UNKNOWN\r\n".utf8)) == .header(client: nil, length: 15))
    }

    @Test("v2 PROXY over IPv4 and IPv6, and LOCAL")
    func versionTwo() throws {
        let ipv4 = Self.v2Signature + [0x21, 0x11, 0, 12, 192, 0, 2, 9, 203, 0, 113, 1, 0x9c, 0x40, 0x04, 0x38]
        #expect(ProxyProtocolHeader.parse(ipv4 + [5]) == .header(client: .v4(IPv4Address(192, 0, 2, 9)), length: 28))
        let source: [UInt8] = [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [7]
        let ipv6 = Self.v2Signature + [0x21, 0x21, 0, 36] + source + [UInt8](repeating: 0, count: 16) + [0, 1, 0, 2]
        #expect(ProxyProtocolHeader.parse(ipv6) == .header(client: try IPAddress(parsing: "2001:db8::7"), length: 52))
        let local = Self.v2Signature + [0x20, 0x00, 0, 0]
        #expect(ProxyProtocolHeader.parse(local) == .header(client: nil, length: 16))
        // TLVs after the addresses belong to the header and are skipped.
        let withTLV = Self.v2Signature + [0x21, 0x11, 0, 15, 192, 0, 2, 9, 203, 0, 113, 1, 0, 1, 0, 2, 0x04, 0, 0]
        #expect(ProxyProtocolHeader.parse(withTLV) == .header(client: .v4(IPv4Address(192, 0, 2, 9)), length: 31))
    }

    @Test("incomplete headers wait for more bytes")
    func partial() {
        #expect(ProxyProtocolHeader.parse([]) == .needMore)
        #expect(ProxyProtocolHeader.parse(Array("PROX".utf8)) == .needMore)
        #expect(ProxyProtocolHeader.parse(Array("PROXY TCP4 192.0.2.1".utf8)) == .needMore)
        #expect(ProxyProtocolHeader.parse(Array(Self.v2Signature.prefix(7))) == .needMore)
        #expect(ProxyProtocolHeader.parse(Self.v2Signature + [0x21, 0x11, 0, 12, 192, 0]) == .needMore)
    }

    @Test("malformed headers are refused with a reason", arguments: [
        Array("GET / HTTP/1.1\r\n\r\n".utf8),
        Array("PROXY TCP4 192.0.2.1 192.0.2.2 1 2\n".utf8),
        Array("PROXY TCP4 192.0.2.300 192.0.2.2 1 2\r\n".utf8),
        Array("PROXY TCP4 192.0.2.1 192.0.2.2 1 99999\r\n".utf8),
        Array("PROXY UDP4 192.0.2.1 192.0.2.2 1 2\r\n".utf8),
        Array("PROXY TCP4 ".utf8) + [UInt8](repeating: 0x31, count: 120),
        [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0B, 0x21, 0x11, 0, 0],
        v2Signature + [0x31, 0x11, 0, 0],
        v2Signature + [0x22, 0x11, 0, 0],
        v2Signature + [0x21, 0x11, 0, 4, 1, 2, 3, 4],
    ])
    func malformed(bytes: [UInt8]) {
        guard case .invalid(let reason) = ProxyProtocolHeader.parse(bytes) else {
            Issue.record("accepted \(bytes)")
            return
        }
        #expect(!reason.isEmpty)
    }

    @Test("HTTP proxy requests: CONNECT tunnels, absolute URIs are rewritten to origin form with the proxy's headers dropped")
    func httpRequests() throws {
        #expect(try HTTPProxyRequest.parse(head: "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n").get() == .tunnel(host: "example.com", port: 443))
        let forwarded = "GET /a?b=1 HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        #expect(try HTTPProxyRequest.parse(head: "GET http://example.com:8080/a?b=1 HTTP/1.1\r\nHost: example.com:8080\r\nProxy-Authorization: Basic eDp5\r\nProxy-Connection: keep-alive\r\nAccept: */*\r\n\r\n").get()
                == .forward(host: "example.com", port: 8080, head: forwarded))
        #expect(try HTTPProxyRequest.parse(head: "GET http://example.com HTTP/1.0\r\n\r\n").get() == .forward(host: "example.com", port: 80, head: "GET / HTTP/1.0\r\nConnection: close\r\n\r\n"))
        // IPv6 literals in brackets (RFC 3986), with or without a port.
        #expect(try HTTPProxyRequest.parse(head: "CONNECT [2001:db8::1]:443 HTTP/1.1\r\n\r\n").get() == .tunnel(host: "2001:db8::1", port: 443))
        #expect(try HTTPProxyRequest.parse(head: "GET http://[2001:db8::1]/ HTTP/1.0\r\n\r\n").get()
                == .forward(host: "2001:db8::1", port: 80, head: "GET / HTTP/1.0\r\nConnection: close\r\n\r\n"))
        for (head, status) in [("GET /x HTTP/1.1\r\n\r\n", 400), ("CONNECT example.com HTTP/1.1\r\n\r\n", 400), ("CONNECT [2001:db8::1 HTTP/1.1\r\n\r\n", 400),
                               ("CONNECT [2001:db8::1]443 HTTP/1.1\r\n\r\n", 400), ("CONNECT [example.com]:443 HTTP/1.1\r\n\r\n", 400),
                               ("CONNECT a:0 HTTP/1.1\r\n\r\n", 400), ("BREW /pot HTCPCP/1.0\r\n\r\n", 400), ("GET https://example.com/ HTTP/1.1\r\n\r\n", 400)] {
            #expect(HTTPProxyRequest.parse(head: head).failure?.status == status, "\(head)")
        }
    }
}

extension Result {
    var failure: Failure? { if case .failure(let failure) = self { failure } else { nil } }
}
