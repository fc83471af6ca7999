/// An IPv4 address. Text form is strict dotted decimal: four octets 0-255, no leading zeros.
public struct IPv4Address: IPAddressFamily {
    public static let familyName = "IPv4"
    public let bits: UInt32

    public init(bits: UInt32) { self.bits = bits }

    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        bits = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    public var octets: (UInt8, UInt8, UInt8, UInt8) {
        (UInt8(truncatingIfNeeded: bits >> 24), UInt8(truncatingIfNeeded: bits >> 16),
         UInt8(truncatingIfNeeded: bits >> 8), UInt8(truncatingIfNeeded: bits))
    }

    public var description: String {
        let (a, b, c, d) = octets
        return "\(a).\(b).\(c).\(d)"
    }

    public static func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> Result<IPv4Address, AddressParseError.Reason> {
        if bytes.isEmpty { return .failure(.empty) }
        var value: UInt32 = 0
        var completedOctets = 0
        var octet: UInt32 = 0
        var digits = 0
        var octetStart = 0
        func octetText(_ end: Int) -> String {
            String(decoding: UnsafeBufferPointer(rebasing: bytes[octetStart..<end]), as: UTF8.self)
        }
        for index in 0..<bytes.count {
            let byte = bytes[index]
            if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                if digits == 1 && octet == 0 {
                    var end = index
                    while end < bytes.count, bytes[end] != UInt8(ascii: ".") { end += 1 }
                    return .failure(.leadingZero(octet: octetText(end)))
                }
                octet = octet &* 10 &+ UInt32(byte &- UInt8(ascii: "0"))
                digits += 1
                if digits > 3 || octet > 255 {
                    var end = index
                    while end < bytes.count, bytes[end] != UInt8(ascii: ".") { end += 1 }
                    return .failure(.octetOutOfRange(octet: octetText(end)))
                }
            } else if byte == UInt8(ascii: ".") {
                if digits == 0 { return .failure(.emptyOctet) }
                completedOctets += 1
                if completedOctets > 3 { return .failure(.wrongOctetCount(countOctets(bytes))) }
                value = value << 8 | octet
                octet = 0
                digits = 0
                octetStart = index + 1
            } else {
                return .failure(invalidCharacter(in: bytes, at: index))
            }
        }
        if digits == 0 { return .failure(.emptyOctet) }
        if completedOctets != 3 { return .failure(.wrongOctetCount(completedOctets + 1)) }
        return .success(IPv4Address(bits: value << 8 | octet))
    }

    private static func countOctets(_ bytes: UnsafeBufferPointer<UInt8>) -> Int {
        bytes.reduce(1) { $1 == UInt8(ascii: ".") ? $0 + 1 : $0 }
    }
}

/// The character at `index`, decoded from UTF-8 for the message (a broken sequence shows as U+FFFD).
func invalidCharacter(in bytes: UnsafeBufferPointer<UInt8>, at index: Int) -> AddressParseError.Reason {
    let rest = String(decoding: UnsafeBufferPointer(rebasing: bytes[index...]), as: UTF8.self)
    return .invalidCharacter(rest.first ?? "\u{FFFD}")
}
