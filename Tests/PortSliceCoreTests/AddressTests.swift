import Testing
@testable import PortSliceCore

@Suite("Addresses and prefixes")
struct AddressTests {
    @Test(arguments: [
        ("0.0.0.0", UInt32(0)), ("192.0.2.1", 0xC000_0201), ("255.255.255.255", 0xFFFF_FFFF), ("10.0.0.10", 0x0A00_000A),
    ])
    func parsesIPv4(text: String, bits: UInt32) throws {
        let address = try IPv4Address(parsing: text)
        #expect(address.bits == bits)
        #expect(address.description == text)
    }

    @Test(arguments: [
        ("192.168.001.1", AddressParseError.Reason.leadingZero(octet: "001")),
        ("01.2.3.4", .leadingZero(octet: "01")),
        ("256.1.1.1", .octetOutOfRange(octet: "256")),
        ("1.2.3.1000", .octetOutOfRange(octet: "1000")),
        ("1.2.3", .wrongOctetCount(3)),
        ("1.2.3.4.5", .wrongOctetCount(5)),
        ("1..3.4", .emptyOctet),
        ("1.2.3.", .emptyOctet),
        ("", .empty),
        ("1.2.3.x", .invalidCharacter("x")),
        (" 1.2.3.4", .invalidCharacter(" ")),
    ])
    func rejectsBadIPv4(text: String, reason: AddressParseError.Reason) {
        #expect(throws: AddressParseError(what: "IPv4 address", text: text, reason: reason)) {
            try IPv4Address(parsing: text)
        }
    }

    @Test func errorMessageQuotesTheText() {
        let error = AddressParseError(what: "IPv4 address", text: "192.168.001.1", reason: .leadingZero(octet: "001"))
        #expect(error.description == "invalid IPv4 address '192.168.001.1': octet '001' has a leading zero, which some tools read as octal; write '1'")
    }

    @Test(arguments: [
        ("::", "::"), ("::1", "::1"), ("2001:DB8::1", "2001:db8::1"),
        ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),  // RFC 5952 4.2.3: first of equal runs
        ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),  // RFC 5952 4.2.2: no '::' for one group
        ("::ffff:192.0.2.1", "::ffff:192.0.2.1"), ("64:ff9b::192.0.2.33", "64:ff9b::c000:221"),
        ("fe80::", "fe80::"), ("1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"),
    ])
    func parsesAndFormatsIPv6(text: String, canonical: String) throws {
        let address = try IPv6Address(parsing: text)
        #expect(address.description == canonical)
        #expect(try IPv6Address(parsing: canonical) == address)
    }

    @Test(arguments: [
        ("1::2::3", AddressParseError.Reason.multipleDoubleColons),
        ("1:2:3:4:5:6:7", .wrongGroupCount(7)),
        ("1:2:3:4:5:6:7:8:9", .wrongGroupCount(9)),
        ("1:2:3:4::5:6:7:8", .wrongGroupCount(8)),
        ("12345::", .groupTooLong(group: "12345")),
        ("1:2:3:4:5:6:7:", .emptyGroup),
        (":1::", .emptyGroup),
        ("fe80::1%eth0", .zoneNotAllowed),
        ("2001:db8::g", .invalidCharacter("g")),
        ("::1.2.3.04", .leadingZero(octet: "04")),
        ("::1.2.3.4:5", .invalidCharacter(".")),
    ])
    func rejectsBadIPv6(text: String, reason: AddressParseError.Reason) {
        #expect(throws: AddressParseError(what: "IPv6 address", text: text, reason: reason)) {
            try IPv6Address(parsing: text)
        }
    }

    @Test func ipv6RoundTripsRandomAddresses() throws {
        var random = SplitMix64(seed: 6)
        for _ in 0..<2_000 {
            // Sparse groups so zero runs of every length occur.
            var bits: UInt128 = 0
            for _ in 0..<8 { bits = bits << 16 | (Bool.random(using: &random) ? 0 : UInt128(UInt16.random(in: 0...UInt16.max, using: &random))) }
            let address = IPv6Address(bits: bits)
            #expect(try IPv6Address(parsing: address.description) == address)
        }
    }

    @Test func parsesPrefixes() throws {
        let v4 = try IPv4Prefix(parsing: "198.51.100.0/24")
        #expect(v4.first.description == "198.51.100.0")
        #expect(v4.last.description == "198.51.100.255")
        #expect(v4.contains(try IPv4Address(parsing: "198.51.100.77")))
        #expect(!v4.contains(try IPv4Address(parsing: "198.51.101.0")))
        #expect(try IPv4Prefix(parsing: "0.0.0.0/0").addressCount == 1 << 32)
        let v6 = try IPPrefix(parsing: "2001:db8::/32")
        #expect(v6 == .v6(try IPv6Prefix(parsing: "2001:0db8::/32")))
        #expect(try IPPrefix(parsing: "192.0.2.7/32").description == "192.0.2.7/32")
    }

    @Test func prefixOfEitherFamilyContainsOnlyItsOwnFamily() throws {
        let v6 = try IPPrefix(parsing: "2001:db8::/32")
        #expect(v6.contains(try IPAddress(parsing: "2001:db8::")))
        #expect(v6.contains(try IPAddress(parsing: "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")))
        #expect(!v6.contains(try IPAddress(parsing: "2001:db9::")))
        #expect(!v6.contains(try IPAddress(parsing: "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff")))
        let v4 = try IPPrefix(parsing: "10.0.0.0/8")
        #expect(v4.contains(try IPAddress(parsing: "10.255.255.255")))
        #expect(!v4.contains(try IPAddress(parsing: "11.0.0.0")))
        #expect(!v4.contains(try IPAddress(parsing: "::ffff:10.1.2.3")), "a mapped address is IPv6 to a prefix")
        #expect(!v6.contains(try IPAddress(parsing: "32.1.13.184")), "the IPv4 address with 2001:db8's first bits is not in it")
    }

    @Test(arguments: [
        ("192.0.2.1/24", AddressParseError.Reason.hostBitsSet(network: "192.0.2.0/24")),
        ("192.0.2.0/33", .badPrefixLength(length: "33", maximum: 32)),
        ("192.0.2.0/024", .badPrefixLength(length: "024", maximum: 32)),
        ("192.0.2.0/", .badPrefixLength(length: "", maximum: 32)),
        ("192.0.2.0/x", .badPrefixLength(length: "x", maximum: 32)),
        ("192.0.2.0", .missingPrefixLength),
        ("192.0.02.0/24", .leadingZero(octet: "02")),
        ("2001:db8::1/64", .hostBitsSet(network: "2001:db8::/64")),
        ("2001:db8::/129", .badPrefixLength(length: "129", maximum: 128)),
    ])
    func rejectsBadPrefixes(text: String, reason: AddressParseError.Reason) {
        #expect(throws: AddressParseError(what: "prefix", text: text, reason: reason)) {
            try IPPrefix(parsing: text)
        }
    }

    @Test func hostBitsMessageSuggestsTheNetwork() {
        #expect(throws: AddressParseError.self) { try IPv4Prefix(parsing: "10.1.2.3/8") }
        do {
            _ = try IPv4Prefix(parsing: "10.1.2.3/8")
        } catch {
            #expect(error.description == "invalid IPv4 prefix '10.1.2.3/8': bits are set beyond the prefix length; did you mean '10.0.0.0/8'?")
        }
    }

    @Test func clientAddressOfEitherFamily() throws {
        #expect(try IPAddress(parsing: "203.0.113.9") == .v4(IPv4Address(203, 0, 113, 9)))
        #expect(try IPAddress(parsing: "2001:db8::9") == .v6(try IPv6Address(parsing: "2001:db8::9")))
        #expect(throws: AddressParseError(what: "address", text: "2001:db8:::9", reason: .emptyGroup)) {
            try IPAddress(parsing: "2001:db8:::9")
        }
    }
}
