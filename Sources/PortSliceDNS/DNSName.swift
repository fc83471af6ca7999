/// A domain name in uncompressed wire form (RFC 1035 section 3.1): length-prefixed labels
/// ending in the root label. The case is kept as written, because a query may carry mixed case
/// on purpose, but equality and hashing ignore ASCII case as DNS does (RFC 4343).
public struct DNSName: Hashable, Sendable, CustomStringConvertible {
    /// RFC 1035 section 2.3.4: a label is at most 63 bytes, a name at most 255 in wire form.
    public static let maximumLabelLength = 63
    public static let maximumWireLength = 255

    /// The labels as `length, bytes...` ending with a zero byte.
    public let wire: [UInt8]

    /// The root name, `.`.
    public static let root = DNSName(validatedWire: [0])

    init(validatedWire: [UInt8]) { wire = validatedWire }

    /// Parses dotted text. A single trailing dot is accepted and changes nothing here: whether
    /// a name is absolute matters to the search list, which looks at the text itself.
    /// Labels are printable ASCII without spaces (internationalised names arrive as punycode),
    /// so nothing a user types can smuggle a dot or a control byte into a label.
    /// - Throws: `DNSNameError` naming the rule the text breaks.
    public init(parsing text: String) throws(DNSNameError) {
        if text == "." {
            self = .root
            return
        }
        if let bad = text.unicodeScalars.first(where: { $0.value <= 0x20 || $0.value >= 0x7F }) {
            throw .invalidCharacter(bad)
        }
        var bytes = Array(text.utf8)
        if bytes.last == UInt8(ascii: ".") { bytes.removeLast() }
        if bytes.isEmpty { throw .empty }
        var wire: [UInt8] = []
        wire.reserveCapacity(bytes.count + 2)
        var labelStart = 0
        for index in 0...bytes.count {
            if index < bytes.count && bytes[index] != UInt8(ascii: ".") { continue }
            let length = index - labelStart
            if length == 0 { throw .emptyLabel }
            if length > Self.maximumLabelLength {
                throw .labelTooLong(String(decoding: bytes[labelStart..<index], as: UTF8.self))
            }
            wire.append(UInt8(length))
            wire.append(contentsOf: bytes[labelStart..<index])
            labelStart = index + 1
        }
        wire.append(0)
        if wire.count > Self.maximumWireLength { throw .nameTooLong(wireLength: wire.count) }
        self.wire = wire
    }

    /// Labels other than the root: `www.example.com` has 3.
    public var labelCount: Int {
        var count = 0
        var position = 0
        while wire[position] != 0 {
            count += 1
            position += 1 + Int(wire[position])
        }
        return count
    }

    /// This name followed by `suffix`, as a search list builds candidates.
    /// - Throws: `DNSNameError.nameTooLong` when the two together exceed 255 bytes.
    public func appending(_ suffix: DNSName) throws(DNSNameError) -> DNSName {
        let length = wire.count - 1 + suffix.wire.count
        if length > Self.maximumWireLength { throw .nameTooLong(wireLength: length) }
        return DNSName(validatedWire: wire.dropLast() + suffix.wire)
    }

    /// The same name in lower case, the form caches key on.
    public func lowercased() -> DNSName {
        DNSName(validatedWire: wire.map(asciiLowercase))
    }

    /// Dotted text without the trailing dot (`.` for the root); bytes a typed name could not
    /// hold (dots inside a label, spaces, non-ASCII from a packet) are written as `\DDD`.
    public var description: String {
        if wire == [0] { return "." }
        var text = ""
        var position = 0
        while wire[position] != 0 {
            if !text.isEmpty { text += "." }
            let length = Int(wire[position])
            for byte in wire[(position + 1)...(position + length)] {
                if byte > 0x20 && byte < 0x7F && byte != UInt8(ascii: ".") && byte != UInt8(ascii: "\\") {
                    text.unicodeScalars.append(Unicode.Scalar(byte))
                } else {
                    let digits = String(byte)
                    text += "\\" + String(repeating: "0", count: 3 - digits.count) + digits
                }
            }
            position += 1 + length
        }
        return text
    }

    public static func == (lhs: DNSName, rhs: DNSName) -> Bool {
        lhs.wire.count == rhs.wire.count && lhs.wire.withUnsafeBufferPointer { left in
            rhs.wire.withUnsafeBufferPointer { right in equalIgnoringASCIICase(left, right) }
        }
    }

    /// Hashes eight case-folded bytes at a time: the cache hashes a name on every lookup.
    public func hash(into hasher: inout Hasher) {
        wire.withUnsafeBufferPointer { bytes in
            var word: UInt64 = 0
            for (index, byte) in bytes.enumerated() {
                word = word << 8 | UInt64(asciiLowercase(byte))
                if index & 7 == 7 {
                    hasher.combine(word)
                    word = 0
                }
            }
            hasher.combine(word)
            hasher.combine(bytes.count)
        }
    }
}

/// Why text is not a domain name.
public enum DNSNameError: Error, Hashable, Sendable, CustomStringConvertible {
    case empty
    /// Two dots in a row, or a leading dot.
    case emptyLabel
    case labelTooLong(String)
    case nameTooLong(wireLength: Int)
    case invalidCharacter(Unicode.Scalar)

    public var description: String {
        switch self {
        case .empty: "the name is empty"
        case .emptyLabel: "the name has an empty label (two dots in a row, or a leading dot)"
        case .labelTooLong(let label): "label '\(label)' is longer than 63 bytes"
        case .nameTooLong(let length): "the name takes \(length) bytes on the wire, more than 255"
        case .invalidCharacter(let scalar): "character U+\(String(scalar.value, radix: 16, uppercase: true)) is not allowed in a name"
        }
    }
}

@inline(__always)
func asciiLowercase(_ byte: UInt8) -> UInt8 {
    byte &- UInt8(ascii: "A") < 26 ? byte | 0x20 : byte
}

/// Same length assumed by the caller.
@inline(__always)
func equalIgnoringASCIICase(_ left: UnsafeBufferPointer<UInt8>, _ right: UnsafeBufferPointer<UInt8>) -> Bool {
    for index in 0..<left.count where asciiLowercase(left[index]) != asciiLowercase(right[index]) {
        return false
    }
    return true
}
