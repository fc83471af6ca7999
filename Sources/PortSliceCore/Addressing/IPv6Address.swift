/// An IPv6 address. Parsing follows RFC 4291 section 2.2 (hex groups, one `::`, a trailing
/// dotted IPv4 part); output is the RFC 5952 canonical form.
public struct IPv6Address: IPAddressFamily {
    public static let familyName = "IPv6"
    public let bits: UInt128

    public init(bits: UInt128) { self.bits = bits }

    /// The eight 16-bit groups, most significant first.
    public var groups: [UInt16] {
        (0..<8).map { UInt16(truncatingIfNeeded: bits >> (112 - 16 * $0)) }
    }

    /// The embedded address of an IPv4-mapped address (`::ffff:a.b.c.d`), else nil.
    public var ipv4Mapped: IPv4Address? {
        bits >> 32 == 0xffff ? IPv4Address(bits: UInt32(truncatingIfNeeded: bits)) : nil
    }

    public var description: String {
        if let mapped = ipv4Mapped { return "::ffff:\(mapped)" }
        let groups = self.groups
        // RFC 5952 4.2: compress the longest run of two or more zero groups, the first on a tie.
        var bestStart = -1, bestLength = 1
        var index = 0
        while index < 8 {
            guard groups[index] == 0 else { index += 1; continue }
            var end = index
            while end < 8 && groups[end] == 0 { end += 1 }
            if end - index > bestLength { bestStart = index; bestLength = end - index }
            index = end
        }
        func hex(_ range: Range<Int>) -> String {
            groups[range].map { String($0, radix: 16) }.joined(separator: ":")
        }
        if bestStart < 0 { return hex(0..<8) }
        return hex(0..<bestStart) + "::" + hex((bestStart + bestLength)..<8)
    }

    public static func parse(_ bytes: UnsafeBufferPointer<UInt8>) -> Result<IPv6Address, AddressParseError.Reason> {
        if bytes.isEmpty { return .failure(.empty) }
        if bytes.contains(UInt8(ascii: "%")) { return .failure(.zoneNotAllowed) }
        var doubleColon: Int? = nil
        var index = 0
        while index + 1 < bytes.count {
            if bytes[index] == UInt8(ascii: ":") && bytes[index + 1] == UInt8(ascii: ":") {
                if doubleColon != nil { return .failure(.multipleDoubleColons) }
                doubleColon = index
                index += 2
            } else {
                index += 1
            }
        }
        let head: [UInt16], tail: [UInt16]
        do {
            if let gap = doubleColon {
                head = try groups(in: UnsafeBufferPointer(rebasing: bytes[..<gap]), full: bytes, mayEndInIPv4: false)
                tail = try groups(in: UnsafeBufferPointer(rebasing: bytes[(gap + 2)...]), full: bytes, mayEndInIPv4: true)
                if head.count + tail.count > 7 { return .failure(.wrongGroupCount(head.count + tail.count)) }
            } else {
                head = try groups(in: bytes, full: bytes, mayEndInIPv4: true)
                tail = []
                if head.count != 8 { return .failure(.wrongGroupCount(head.count)) }
            }
        } catch {
            return .failure(error.reason)
        }
        var value: UInt128 = 0
        for group in head { value = value << 16 | UInt128(group) }
        value <<= 16 * UInt128(8 - head.count)
        for (offset, group) in tail.enumerated() {
            value |= UInt128(group) << (16 * UInt128(tail.count - 1 - offset))
        }
        return .success(IPv6Address(bits: value))
    }

    private struct GroupError: Error { let reason: AddressParseError.Reason }

    /// Colon-separated hex groups of one side of `::`; an empty side has no groups.
    private static func groups(
        in part: UnsafeBufferPointer<UInt8>, full: UnsafeBufferPointer<UInt8>, mayEndInIPv4: Bool
    ) throws(GroupError) -> [UInt16] {
        if part.isEmpty { return [] }
        var result: [UInt16] = []
        var start = 0
        while start <= part.count {
            var end = start
            while end < part.count && part[end] != UInt8(ascii: ":") { end += 1 }
            let piece = UnsafeBufferPointer(rebasing: part[start..<end])
            if piece.isEmpty { throw GroupError(reason: .emptyGroup) }
            if piece.contains(UInt8(ascii: ".")) {
                guard mayEndInIPv4 && end == part.count else {
                    throw GroupError(reason: .invalidCharacter("."))
                }
                switch IPv4Address.parse(piece) {
                case .success(let v4):
                    result.append(UInt16(truncatingIfNeeded: v4.bits >> 16))
                    result.append(UInt16(truncatingIfNeeded: v4.bits))
                case .failure(let reason):
                    throw GroupError(reason: reason)
                }
            } else {
                var group: UInt16 = 0
                for (offset, byte) in piece.enumerated() {
                    guard let digit = hexValue(byte) else {
                        throw GroupError(reason: invalidCharacter(in: piece, at: offset))
                    }
                    if offset >= 4 {
                        throw GroupError(reason: .groupTooLong(group: String(decoding: piece, as: UTF8.self)))
                    }
                    group = group << 4 | UInt16(digit)
                }
                result.append(group)
            }
            start = end + 1
        }
        return result
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
