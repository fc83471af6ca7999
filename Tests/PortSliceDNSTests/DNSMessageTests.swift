import PortSliceCore
import Testing
@testable import PortSliceDNS

/// Hand-built messages, byte by byte from RFC 1035 section 4.1, so the parser is checked
/// against the format and not against our own encoder.
enum Messages {
    /// www.example.com A: a CNAME to cdn.example.com and two A records, compressed, with OPT.
    static let cnameAnswer: [UInt8] = [
        0xBE, 0xEF, 0x81, 0x80, 0x00, 0x01, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01,
        // 12: question www.example.com A IN
        0x03, 0x77, 0x77, 0x77, 0x07, 0x65, 0x78, 0x61, 0x6D, 0x70, 0x6C, 0x65, 0x03, 0x63, 0x6F, 0x6D, 0x00,
        0x00, 0x01, 0x00, 0x01,
        // 33: www.example.com (pointer to 12) CNAME, TTL 3600, cdn + pointer to example.com (16)
        0xC0, 0x0C, 0x00, 0x05, 0x00, 0x01, 0x00, 0x00, 0x0E, 0x10, 0x00, 0x06,
        0x03, 0x63, 0x64, 0x6E, 0xC0, 0x10,
        // 51: cdn.example.com (pointer to 45) A, TTL 300, 198.51.100.10
        0xC0, 0x2D, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x01, 0x2C, 0x00, 0x04, 0xC6, 0x33, 0x64, 0x0A,
        // 67: cdn.example.com A, TTL 60, 198.51.100.11
        0xC0, 0x2D, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3C, 0x00, 0x04, 0xC6, 0x33, 0x64, 0x0B,
        // 83: OPT, payload 1232, no options
        0x00, 0x00, 0x29, 0x04, 0xD0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ]

    /// v6.example AAAA: two AAAA records, the second with an upper-case owner.
    static let aaaaAnswer: [UInt8] = [
        0x12, 0x34, 0x81, 0x80, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00,
        // 12: v6.example AAAA IN
        0x02, 0x76, 0x36, 0x07, 0x65, 0x78, 0x61, 0x6D, 0x70, 0x6C, 0x65, 0x00, 0x00, 0x1C, 0x00, 0x01,
        // 28: pointer to 12, AAAA, TTL 120, 2001:db8::1
        0xC0, 0x0C, 0x00, 0x1C, 0x00, 0x01, 0x00, 0x00, 0x00, 0x78, 0x00, 0x10,
        0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
        // 56: V6.EXAMPLE written out, AAAA, TTL 90, 2001:db8::2
        0x02, 0x56, 0x36, 0x07, 0x45, 0x58, 0x41, 0x4D, 0x50, 0x4C, 0x45, 0x00,
        0x00, 0x1C, 0x00, 0x01, 0x00, 0x00, 0x00, 0x5A, 0x00, 0x10,
        0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
    ]

    /// nope.example.com AAAA: NXDOMAIN with the zone's SOA (TTL 3600, MINIMUM 300).
    static func nxdomain(soaTTL: UInt8 = 0x0E, rcode: UInt8 = 0x83) -> [UInt8] {
        [
            0x00, 0x07, 0x81, rcode, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00,
            // 12: nope.example.com AAAA IN (example.com at 17)
            0x04, 0x6E, 0x6F, 0x70, 0x65, 0x07, 0x65, 0x78, 0x61, 0x6D, 0x70, 0x6C, 0x65, 0x03, 0x63, 0x6F, 0x6D, 0x00,
            0x00, 0x1C, 0x00, 0x01,
            // 34: example.com SOA, TTL soaTTL * 256, RDLENGTH 39
            0xC0, 0x11, 0x00, 0x06, 0x00, 0x01, 0x00, 0x00, soaTTL, 0x10, 0x00, 0x27,
            0x03, 0x6E, 0x73, 0x31, 0xC0, 0x11,  // ns1.example.com
            0x0A, 0x68, 0x6F, 0x73, 0x74, 0x6D, 0x61, 0x73, 0x74, 0x65, 0x72, 0xC0, 0x11,  // hostmaster.example.com
            0x78, 0x49, 0x96, 0x02,  // serial
            0x00, 0x00, 0x1C, 0x20, 0x00, 0x00, 0x0E, 0x10, 0x00, 0x12, 0x75, 0x00,  // refresh, retry, expire
            0x00, 0x00, 0x01, 0x2C,  // MINIMUM 300
        ]
    }

    /// The CNAME answer with an ECS option echoed: 198.51.100.0/24, scope `scope`.
    static func ecsAnswer(scope: UInt8) -> [UInt8] {
        var bytes = Array(cnameAnswer.dropLast(2))
        bytes += [0x00, 0x0B, 0x00, 0x08, 0x00, 0x07, 0x00, 0x01, 0x18, scope, 0xC6, 0x33, 0x64]
        return bytes
    }
}

@Suite("DNS messages")
struct DNSMessageTests {
    @Test func encodesAQueryWithClientSubnetExactly() throws {
        let subnet = ClientSubnet(.v4(IPv4Address(198, 51, 100, 7)))
        let query = DNSQuery(id: 0xBEEF, name: try DNSName(parsing: "www.example.com"), type: .a, clientSubnet: subnet)
        let expected: [UInt8] = [
            0xBE, 0xEF,  // ID
            0x01, 0x00,  // RD
            0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,  // one question, one additional (OPT)
            0x03, 0x77, 0x77, 0x77, 0x07, 0x65, 0x78, 0x61, 0x6D, 0x70, 0x6C, 0x65, 0x03, 0x63, 0x6F, 0x6D, 0x00,
            0x00, 0x01, 0x00, 0x01,  // A, IN
            0x00,  // OPT owner: root
            0x00, 0x29, 0x04, 0xD0,  // TYPE 41, CLASS = UDP payload 1232
            0x00, 0x00, 0x00, 0x00,  // extended RCODE 0, version 0, flags 0
            0x00, 0x0B,  // RDLENGTH 11
            0x00, 0x08, 0x00, 0x07,  // OPTION-CODE 8 (ECS), OPTION-LENGTH 7
            0x00, 0x01, 0x18, 0x00,  // FAMILY 1, SOURCE /24, SCOPE 0
            0xC6, 0x33, 0x64,  // 198.51.100, the host byte never leaves
        ]
        #expect(query.encoded() == expected)
        #expect(subnet.address == .v4(IPv4Address(198, 51, 100, 0)))
    }

    @Test func encodesAnAAAAQueryWithAnIPv6SubnetAndWithout() throws {
        let name = try DNSName(parsing: "Example.ORG.")
        let subnet = ClientSubnet(.v6(try IPv6Address(parsing: "2001:db8:1234:5678::1")))
        let query = DNSQuery(id: 1, name: name, type: .aaaa, clientSubnet: subnet).encoded()
        #expect(Array(query[12..<25]) == [0x07, 0x45, 0x78, 0x61, 0x6D, 0x70, 0x6C, 0x65, 0x03, 0x4F, 0x52, 0x47, 0x00])
        #expect(Array(query[25..<29]) == [0x00, 0x1C, 0x00, 0x01])
        #expect(Array(query[38...]) == [0x00, 0x0F, 0x00, 0x08, 0x00, 0x0B, 0x00, 0x02, 0x38, 0x00,
                                         0x20, 0x01, 0x0D, 0xB8, 0x12, 0x34, 0x56])
        let plain = DNSQuery(id: 1, name: name, type: .a).encoded()
        #expect(Array(plain[29...]) == [0x00, 0x00, 0x29, 0x04, 0xD0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00])
        #expect(throws: DNSEncodingError.prefixLengthTooLong(33, maximum: 32)) {
            try ClientSubnet(.v4(IPv4Address(192, 0, 2, 1)), sourcePrefixLength: 33)
        }
        let zero = try ClientSubnet(.v4(IPv4Address(192, 0, 2, 1)), sourcePrefixLength: 0)
        #expect(DNSQuery(id: 1, name: name, type: .a, clientSubnet: zero).encoded().suffix(8) == [0x00, 0x08, 0x00, 0x04, 0x00, 0x01, 0x00, 0x00])
    }

    @Test func framesForTCP() throws {
        let message: [UInt8] = [1, 2, 3]
        #expect(try DNSTCPFraming.frame(message) == [0, 3, 1, 2, 3])
        #expect(throws: DNSEncodingError.messageTooLongForTCP(65_536)) { try DNSTCPFraming.frame([UInt8](repeating: 0, count: 65_536)) }
        let stream: [UInt8] = [0, 3, 1, 2, 3, 0, 2, 9]
        stream.withUnsafeBytes { buffer in
            #expect(DNSTCPFraming.firstMessage(in: buffer)! == (2..<5, 5))
            #expect(DNSTCPFraming.firstMessage(in: UnsafeRawBufferPointer(rebasing: buffer[5...])) == nil)
            #expect(DNSTCPFraming.firstMessage(in: UnsafeRawBufferPointer(rebasing: buffer[..<1])) == nil)
        }
    }

    @Test(arguments: [
        ("www.example.com", 17), ("www.example.com.", 17), (".", 1), ("a", 3),
        (String(repeating: "a", count: 63) + ".b", 67),
    ])
    func parsesNames(text: String, wireLength: Int) throws {
        #expect(try DNSName(parsing: text).wire.count == wireLength)
    }

    @Test(arguments: [
        ("", DNSNameError.empty), ("a..b", .emptyLabel), (".a", .emptyLabel), ("a.b..", .emptyLabel),
        (String(repeating: "a", count: 64), .labelTooLong(String(repeating: "a", count: 64))),
        (Array(repeating: String(repeating: "a", count: 63), count: 4).joined(separator: "."), .nameTooLong(wireLength: 257)),
        ("a b", .invalidCharacter(" ")), ("bücher.example", .invalidCharacter("ü")),
    ])
    func rejectsBadNames(text: String, error: DNSNameError) {
        #expect(throws: error) { try DNSName(parsing: text) }
    }

    @Test func namesCompareIgnoringCase() throws {
        let upper = try DNSName(parsing: "WWW.Example.COM")
        let lower = try DNSName(parsing: "www.example.com.")
        #expect(upper == lower)
        #expect(upper.hashValue == lower.hashValue)
        #expect(upper.description == "WWW.Example.COM")
        #expect(upper.lowercased().description == "www.example.com")
        #expect(upper != (try DNSName(parsing: "www.example.co")))
        #expect(DNSName(validatedWire: [3, 0x61, 0x2E, 0x20, 0]).description == "a\\046\\032")
        // 253 characters is the longest text: 255 wire bytes.
        let longest = Array(repeating: String(repeating: "a", count: 63), count: 3).joined(separator: ".") + "." + String(repeating: "b", count: 61)
        #expect(try DNSName(parsing: longest).wire.count == 255)
    }

    @Test func parsesACNAMEChainWithCompression() throws {
        let response = try DNSResponse(parsing: Messages.cnameAnswer)
        #expect(response.header.id == 0xBEEF)
        #expect(response.header.isResponse && response.header.recursionDesired && response.header.recursionAvailable)
        #expect(!response.header.isAuthoritative && !response.header.isTruncated && response.header.opcode == 0)
        #expect(response.responseCode == .noError)
        #expect(response.question == DNSQuestion(name: try DNSName(parsing: "www.example.com"), type: .a, recordClass: 1))
        #expect(response.addresses == [.v4(IPv4Address(198, 51, 100, 10)), .v4(IPv4Address(198, 51, 100, 11))])
        #expect(response.ttl == 60)
        #expect(response.cnameCount == 1)
        #expect(response.canonicalName?.description == "cdn.example.com")
        #expect(response.negativeTTL == nil)
        #expect(response.udpPayloadSize == 1232)
        #expect(response.clientSubnet == nil)
    }

    @Test func parsesAAAARecordsWhoseOwnersDifferInCase() throws {
        let response = try DNSResponse(parsing: Messages.aaaaAnswer)
        #expect(response.addresses == [.v6(try IPv6Address(parsing: "2001:db8::1")), .v6(try IPv6Address(parsing: "2001:db8::2"))])
        #expect(response.ttl == 90)
        #expect(response.canonicalName == nil && response.cnameCount == 0)
        #expect(response.udpPayloadSize == nil)
    }

    @Test func nxdomainCarriesTheSOANegativeTTL() throws {
        let response = try DNSResponse(parsing: Messages.nxdomain())
        #expect(response.responseCode == .nameError)
        #expect(response.addresses.isEmpty && response.ttl == nil)
        #expect(response.negativeTTL == 300)  // min(3600, MINIMUM 300)
        let shortSOA = try DNSResponse(parsing: Messages.nxdomain(soaTTL: 0x00))
        #expect(shortSOA.negativeTTL == 16)  // min(16, 300)
        let noData = try DNSResponse(parsing: Messages.nxdomain(rcode: 0x80))
        #expect(noData.responseCode == .noError && noData.negativeTTL == 300)
        let failure = try DNSResponse(parsing: Messages.nxdomain(rcode: 0x82))
        #expect(failure.responseCode == .serverFailure && failure.negativeTTL == nil)
    }

    @Test func readsTheEchoedClientSubnetScope() throws {
        let response = try DNSResponse(parsing: Messages.ecsAnswer(scope: 20))
        #expect(response.clientSubnet?.address == .v4(IPv4Address(198, 51, 100, 0)))
        #expect(response.clientSubnet?.sourcePrefixLength == 24)
        #expect(response.clientSubnet?.scopePrefixLength == 20)
        let query = DNSQuery(
            id: 0xBEEF, name: try DNSName(parsing: "www.example.com"), type: .a,
            clientSubnet: ClientSubnet(.v4(IPv4Address(198, 51, 100, 77))))
        #expect(response.matches(query))
        var otherClient = query
        otherClient.clientSubnet = ClientSubnet(.v4(IPv4Address(198, 51, 101, 1)))
        #expect(!response.matches(otherClient))
        var noSubnet = query
        noSubnet.clientSubnet = nil
        #expect(!response.matches(noSubnet))
        // A server without ECS answers everyone.
        #expect(try DNSResponse(parsing: Messages.cnameAnswer).matches(query))
    }

    @Test func rejectsMalformedClientSubnets() {
        var wrongLength = Messages.ecsAnswer(scope: 0)
        wrongLength[wrongLength.count - 5] = 0x10  // /16 with three address bytes
        #expect(throws: DNSParseError.malformedClientSubnet(offset: 94)) { try DNSResponse(parsing: wrongLength) }
        var family = Messages.ecsAnswer(scope: 0)
        family[family.count - 6] = 0x03
        #expect(throws: DNSParseError.malformedClientSubnet(offset: 94)) { try DNSResponse(parsing: family) }
        var bitsBeyond = Messages.ecsAnswer(scope: 0)
        bitsBeyond[bitsBeyond.count - 5] = 0x17  // /23, and then
        bitsBeyond[bitsBeyond.count - 1] = 0x65  // the 24th bit set
        #expect(throws: DNSParseError.malformedClientSubnet(offset: 94)) { try DNSResponse(parsing: bitsBeyond) }
    }

    @Test func truncatedAnswersKeepOnlyHeaderAndQuestion() throws {
        // TC=1 with ANCOUNT 3 but the records cut off after the question.
        var bytes = Array(Messages.cnameAnswer[..<33])
        bytes[2] = 0x83
        let response = try DNSResponse(parsing: bytes)
        #expect(response.header.isTruncated)
        #expect(response.addresses.isEmpty && response.negativeTTL == nil)
        #expect(response.question.name.description == "www.example.com")
    }

    @Test func reportsMismatchedAnswers() throws {
        let response = try DNSResponse(parsing: Messages.cnameAnswer)
        let name = try DNSName(parsing: "WWW.EXAMPLE.COM")
        #expect(response.matches(DNSQuery(id: 0xBEEF, name: name, type: .a)))
        #expect(!response.matches(DNSQuery(id: 0xBEEE, name: name, type: .a)))
        #expect(!response.matches(DNSQuery(id: 0xBEEF, name: try DNSName(parsing: "www.example.net"), type: .a)))
        #expect(!response.matches(DNSQuery(id: 0xBEEF, name: name, type: .aaaa)))
        var wrongClass = Messages.cnameAnswer
        wrongClass[32] = 0x03  // CHAOS
        #expect(!(try DNSResponse(parsing: wrongClass)).matches(DNSQuery(id: 0xBEEF, name: name, type: .a)))
    }

    @Test func everyShorterBufferIsATypedError() {
        for message in [Messages.cnameAnswer, Messages.aaaaAnswer, Messages.nxdomain(), Messages.ecsAnswer(scope: 24)] {
            for length in 0..<message.count {
                #expect(throws: DNSParseError.self, "length \(length)") { try DNSResponse(parsing: Array(message[..<length])) }
            }
            #expect(throws: DNSParseError.trailingBytes(count: 1)) { try DNSResponse(parsing: message + [0]) }
        }
    }

    @Test func refusesPointerLoopsAndForwardPointers() {
        var selfLoop = Messages.cnameAnswer
        selfLoop[33] = 0xC0; selfLoop[34] = 0x21  // the CNAME owner points at itself
        #expect(throws: DNSParseError.pointerNotBackward(offset: 33)) { try DNSResponse(parsing: selfLoop) }
        // "cdn" then a pointer back to its own first label: backwards, yet a loop.
        var labelLoop = Messages.cnameAnswer
        labelLoop[49] = 0xC0; labelLoop[50] = 0x2D
        #expect(throws: DNSParseError.pointerNotBackward(offset: 49)) { try DNSResponse(parsing: labelLoop) }
        var forward = Messages.cnameAnswer
        forward[51] = 0xC0; forward[52] = 0x43  // owner of the first A points at the second A
        #expect(throws: DNSParseError.pointerNotBackward(offset: 51)) { try DNSResponse(parsing: forward) }
        var intoHeader = Messages.cnameAnswer
        intoHeader[34] = 0x02
        #expect(throws: DNSParseError.pointerNotBackward(offset: 33)) { try DNSResponse(parsing: intoHeader) }
        var reserved = Messages.cnameAnswer
        reserved[33] = 0x40
        #expect(throws: DNSParseError.reservedLabelType(offset: 33)) { try DNSResponse(parsing: reserved) }
    }

    @Test func refusesOversizedNamesAndBadRecordData() {
        // A name of 128 one-byte labels is 257 bytes on the wire.
        var long: [UInt8] = [0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0]
        for _ in 0..<128 { long += [1, 0x61] }
        long += [0, 0, 1, 0, 1]
        #expect(throws: DNSParseError.nameTooLong(offset: 12)) { try DNSResponse(parsing: long) }
        var badA = Messages.cnameAnswer
        badA[62] = 0x03  // RDLENGTH 3 for an A record, and one byte left over
        #expect(throws: DNSParseError.badRecordData(type: .a, offset: 51)) { try DNSResponse(parsing: badA) }
        var query = Messages.cnameAnswer
        query[2] = 0x01
        #expect(throws: DNSParseError.notAResponse) { try DNSResponse(parsing: query) }
        var twoQuestions = Messages.cnameAnswer
        twoQuestions[5] = 2
        #expect(throws: DNSParseError.questionCount(2)) { try DNSResponse(parsing: twoQuestions) }
        var twoOPT = Messages.cnameAnswer + Messages.cnameAnswer.suffix(11)
        twoOPT[11] = 2
        #expect(throws: DNSParseError.multipleOPT(offset: 94)) { try DNSResponse(parsing: twoOPT) }
    }

    @Test func refusesCNAMELoops() {
        // www -> cdn and cdn -> www (owner pointer to 45, data pointer to 12).
        var bytes = Array(Messages.cnameAnswer[..<51])
        bytes[7] = 2
        bytes[11] = 0
        bytes += [0xC0, 0x2D, 0x00, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3C, 0x00, 0x02, 0xC0, 0x0C]
        #expect(throws: DNSParseError.cnameChainTooLong) { try DNSResponse(parsing: bytes) }
    }

    @Test func followsALongChainInAnyOrderUpToTheCap() throws {
        // A chain n0 -> n1 -> ... -> nK written backwards, then an A for nK.
        func message(links: Int) -> [UInt8] {
            var bytes: [UInt8] = [0, 9, 0x81, 0x80, 0, 1, 0, UInt8(links + 1), 0, 0, 0, 0, 2, 0x6E, 0x30, 0, 0, 1, 0, 1]
            for link in (0..<links).reversed() {
                bytes += [2, 0x6E, UInt8(0x30 + link), 0, 0, 5, 0, 1, 0, 0, 0, UInt8(10 + link), 0, 4, 2, 0x6E, UInt8(0x31 + link), 0]
            }
            bytes += [2, 0x6E, UInt8(0x30 + links), 0, 0, 1, 0, 1, 0, 0, 0, 100, 0, 4, 192, 0, 2, 1]
            return bytes
        }
        let atCap = try DNSResponse(parsing: message(links: DNSResponse.maximumCNAMEChain))
        #expect(atCap.cnameCount == 16 && atCap.ttl == 10)
        #expect(atCap.addresses == [.v4(IPv4Address(192, 0, 2, 1))])
        #expect(atCap.canonicalName?.description == "n@")
        #expect(throws: DNSParseError.cnameChainTooLong) { try DNSResponse(parsing: message(links: 17)) }
    }
}
