import PortSliceCore
import Testing
@testable import PortSliceProxy

/// The engine's parsers, pure functions over bytes: SOCKS5 greeting, RFC 1929 credentials,
/// requests and replies, and the end of an HTTP head.
@Suite("handshake parsers")
struct HandshakeParserTests {
    @Test("a greeting is whole once its methods are in, and says which methods were offered")
    func greeting() {
        #expect(Self.message(SOCKS5.greeting([5, 2, 0, 2, 9])) == Whole(SOCKS5.Greeting(offersNoAuthentication: true, offersUsernamePassword: true), 4))
        #expect(Self.message(SOCKS5.greeting([5, 1, 2])) == Whole(SOCKS5.Greeting(offersNoAuthentication: false, offersUsernamePassword: true), 3))
        #expect(Self.needsMore(SOCKS5.greeting([5])))
        #expect(Self.needsMore(SOCKS5.greeting([5, 3, 0, 1])))
        #expect(Self.invalid(SOCKS5.greeting([4, 1, 0])) == "SOCKS version 4, not 5")
        #expect(Self.invalid(SOCKS5.greeting([5, 0])) == "a SOCKS greeting offering no method")
    }

    @Test("username and password (RFC 1929): both fields as sent, bytes counted exactly")
    func credentials() {
        let bytes: [UInt8] = [1, 5] + Array("alice".utf8) + [3] + Array("pw!".utf8) + [5]
        #expect(Self.message(SOCKS5.credentials(bytes)) == Whole(SOCKS5.Credentials(user: Array("alice".utf8), password: Array("pw!".utf8)), 11))
        #expect(Self.needsMore(SOCKS5.credentials([1, 5, 97, 108])))
        #expect(Self.needsMore(SOCKS5.credentials(Array(bytes.prefix(10)))))
        #expect(Self.message(SOCKS5.credentials([1, 0, 0])) == Whole(SOCKS5.Credentials(user: [], password: []), 3))
        #expect(Self.invalid(SOCKS5.credentials([5, 1, 0])) == "username/password version 5, not 1")
    }

    @Test("requests: IPv4, IPv6 and names with their ports; commands; the reply code for what is wrong")
    func requests() throws {
        #expect(Self.message(SOCKS5.request([5, 1, 0, 1, 192, 0, 2, 7, 0x1f, 0x90, 99]))
                == Whole(SOCKS5.Request(command: .connect, destination: .ipv4(IPv4Address(192, 0, 2, 7)), port: 8080), 10))
        let name: [UInt8] = [5, 1, 0, 3, 11] + Array("example.com".utf8) + [1, 187]
        #expect(Self.message(SOCKS5.request(name)) == Whole(SOCKS5.Request(command: .connect, destination: .name("example.com"), port: 443), 18))
        let v6: [UInt8] = [5, 3, 0, 4, 0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 11) + [1, 0, 53]
        #expect(Self.message(SOCKS5.request(v6)) == Whole(SOCKS5.Request(command: .udpAssociate, destination: .ipv6(try IPv6Address(parsing: "2001:db8::1")), port: 53), 22))
        #expect(Self.message(SOCKS5.request([5, 2, 0, 1, 127, 0, 0, 1, 0, 80]))?.message.command == .bind)
        #expect(Self.needsMore(SOCKS5.request([5, 1, 0, 1, 192, 0, 2])))
        #expect(Self.needsMore(SOCKS5.request(Array(name.prefix(17)))))
        #expect(Self.invalidReply(SOCKS5.request([5, 9, 0, 1, 127, 0, 0, 1, 0, 80])) == SOCKS5.Reply.commandUnsupported)
        #expect(Self.invalidReply(SOCKS5.request([5, 1, 0, 7, 1, 2, 3, 4, 5, 6])) == SOCKS5.Reply.addressUnsupported)
        #expect(Self.invalidReply(SOCKS5.request([5, 1, 0, 3, 0, 0, 80])) == SOCKS5.Reply.addressUnsupported)
        #expect(Self.invalidReply(SOCKS5.request([5, 1, 1, 1, 127, 0, 0, 1, 0, 80])) == SOCKS5.Reply.generalFailure)
        #expect(Self.invalidReply(SOCKS5.request([4, 1])) == SOCKS5.Reply.generalFailure)
    }

    @Test("replies carry the code and the bound address; each open failure has RFC 1928's code")
    func replies() {
        #expect(SOCKS5.reply(0, bound: Endpoint(IPv4Address(127, 0, 0, 2), 40001)) == [5, 0, 0, 1, 127, 0, 0, 2, 0x9c, 0x41])
        #expect(SOCKS5.reply(SOCKS5.Reply.generalFailure) == [5, 1, 0, 1, 0, 0, 0, 0, 0, 0])
        let destination = IPEndpoint(.v4(IPv4Address(192, 0, 2, 1)), 80)
        #expect(SOCKS5.replyCode(for: .refused(.port(.refusedByDefault(25, PortRange(port: 25))))) == 2)
        #expect(SOCKS5.replyCode(for: .unresolved("x", .noSuchName)) == 4)
        #expect(SOCKS5.replyCode(for: .connectionRefused(destination)) == 5)
        #expect(SOCKS5.replyCode(for: .timedOut(destination)) == 6)
        #expect(SOCKS5.replyCode(for: .exhausted(destination)) == 1)
        #expect(SOCKS5.replyCode(for: .noEgress(IPEndpoint(.v6(try! IPv6Address(parsing: "2001:db8::1")), 80))) == 8)
        // An IPv6 bound address: ATYP 4, sixteen bytes, the port.
        #expect(SOCKS5.reply(0, bound: IPEndpoint(.v6(try! IPv6Address(parsing: "2001:db8::7")), 443))
                == [5, 0, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0x01, 0xbb])
    }

    @Test("an HTTP head ends at its first blank line")
    func headLength() {
        #expect(HTTPProxyRequest.headLength(in: Array("GET / HTTP/1.1\r\nHost: a\r\n\r\nbody".utf8)) == 27)
        #expect(HTTPProxyRequest.headLength(in: Array("GET / HTTP/1.1\r\nHost: a\r\n\r".utf8)) == nil)
        #expect(HTTPProxyRequest.headLength(in: Array("\r\n\r\n".utf8)) == 4)
        #expect(HTTPProxyRequest.headLength(in: Array("GET / HTTP/1.1\n\n".utf8)) == nil, "bare line feeds do not end a head here")
        let bytes = Array("xxGET / HTTP/1.1\r\n\r\nrest".utf8)
        #expect(bytes.withUnsafeBytes { HTTPProxyRequest.headLength(in: UnsafeRawBufferPointer(rebasing: $0[2...])) } == 18)
    }

    @Test("200,000 random and mutated inputs through every parser: none traps, and every length it reports lies within the input")
    func noInputTraps() {
        var generator = SplitMix64(seed: 12)
        let seeds: [[UInt8]] = [
            [5, 2, 0, 2], [1, 5] + Array("alice".utf8) + [3] + Array("pw!".utf8), [5, 1, 0, 3, 11] + Array("example.com".utf8) + [1, 187],
            [5, 3, 0, 4] + [UInt8](repeating: 7, count: 16) + [0, 53], Array("CONNECT a:1 HTTP/1.1\r\n\r\n".utf8),
            Array("PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n".utf8),
        ]
        for _ in 0..<200_000 {
            var bytes = seeds[Int(generator.next() % UInt64(seeds.count))]
            for _ in 0...(generator.next() % 4) where !bytes.isEmpty {
                let at = Int(generator.next() % UInt64(bytes.count))
                switch generator.next() % 3 {
                case 0: bytes[at] = UInt8(truncatingIfNeeded: generator.next())
                case 1: bytes.removeSubrange(at...)
                default: bytes.insert(UInt8(truncatingIfNeeded: generator.next()), at: at)
                }
            }
            for length in [Self.length(SOCKS5.greeting(bytes)), Self.length(SOCKS5.credentials(bytes)), Self.length(SOCKS5.request(bytes)),
                           HTTPProxyRequest.headLength(in: bytes)].compactMap({ $0 }) where !(1...bytes.count).contains(length) {
                Issue.record("length \(length) for \(bytes.count) bytes: \(bytes)")
            }
            if case .header(_, let length) = ProxyProtocolHeader.parse(bytes), !(1...bytes.count).contains(length) {
                Issue.record("PROXY header of \(length) in \(bytes.count) bytes")
            }
        }
    }

    /// A whole message and its length, as a parser reports them.
    struct Whole<Message: Equatable>: Equatable {
        let message: Message
        let length: Int

        init(_ message: Message, _ length: Int) {
            self.message = message
            self.length = length
        }
    }

    static func message<Message: Equatable>(_ parsed: SOCKS5.Parsed<Message>) -> Whole<Message>? {
        if case .message(let message, let length) = parsed { Whole(message, length) } else { nil }
    }

    static func length<Message: Equatable>(_ parsed: SOCKS5.Parsed<Message>) -> Int? { message(parsed)?.length }

    static func needsMore<Message>(_ parsed: SOCKS5.Parsed<Message>) -> Bool {
        if case .needMore = parsed { true } else { false }
    }

    static func invalid<Message>(_ parsed: SOCKS5.Parsed<Message>) -> String? {
        if case .invalid(let reason, _) = parsed { reason } else { nil }
    }

    static func invalidReply<Message>(_ parsed: SOCKS5.Parsed<Message>) -> UInt8? {
        if case .invalid(_, let reply) = parsed { reply } else { nil }
    }
}
