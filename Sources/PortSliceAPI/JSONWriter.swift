import PortSliceCore

/// An answer body written as JSON straight into bytes, without `JSONEncoder`.
///
/// For the answers sent most: every host renews each period and gets its leases back.
/// Foundation's `JSONEncoder` spent about 17 us on three leases, going through its
/// containers, boxes and key strings: 11% of an allocator's CPU in `bench alloc`'s renewal
/// round, the largest single part of it. The text is what `JSONEncoder` writes for the same
/// value (`/` escaped, absent optionals left out), members in declaration order where
/// `JSONEncoder` leaves their order to hashing, which a test checks; these types still
/// encode and decode through `Codable` everywhere else. Error answers (`ErrorBody`) are
/// written here too, so the allocator's renewals answered outside Hummingbird's router need
/// no encoder, and every error answer has one writer.
public protocol JSONWritable: Encodable {
    func write(to json: inout JSONWriter)
}

/// JSON text of nested objects and arrays, appended in order.
public struct JSONWriter {
    private var bytes: [UInt8] = []
    /// Whether the next member or element follows another in its object or array.
    private var followsAnother = false
    private static let hexDigits = Array("0123456789abcdef".utf8)

    private init() {
        bytes.reserveCapacity(512)
    }

    /// `value`'s JSON text.
    public static func encode(_ value: some JSONWritable) -> [UInt8] {
        var writer = JSONWriter()
        value.write(to: &writer)
        return writer.bytes
    }

    /// An object whose members `body` writes.
    public mutating func object(_ body: (inout JSONWriter) -> Void) {
        open(UInt8(ascii: "{"))
        body(&self)
        close(UInt8(ascii: "}"))
    }

    public mutating func member(_ name: StaticString, _ value: String) {
        key(name)
        string(value)
    }

    public mutating func member(_ name: StaticString, _ value: Int64) {
        key(name)
        bytes.append(contentsOf: String(value).utf8)
    }

    public mutating func member(_ name: StaticString, _ value: Int) {
        member(name, Int64(value))
    }

    /// A value that encodes as its text (`CodableAsText`, or an enum of strings).
    public mutating func member(_ name: StaticString, text value: some CustomStringConvertible) {
        member(name, value.description)
    }

    /// Left out when nil, as `encodeIfPresent` does.
    public mutating func member(_ name: StaticString, text value: (some CustomStringConvertible)?) {
        if let value { member(name, value.description) }
    }

    public mutating func member(_ name: StaticString, _ value: some JSONWritable) {
        key(name)
        value.write(to: &self)
    }

    /// Left out when nil, as `encodeIfPresent` does.
    public mutating func member(_ name: StaticString, _ value: (some JSONWritable)?) {
        if let value { member(name, value) }
    }

    public mutating func member(_ name: StaticString, _ elements: [some JSONWritable]) {
        key(name)
        open(UInt8(ascii: "["))
        for element in elements {
            separate()
            element.write(to: &self)
        }
        close(UInt8(ascii: "]"))
    }

    /// Left out when nil, as `encodeIfPresent` does.
    public mutating func member(_ name: StaticString, _ elements: [some JSONWritable]?) {
        if let elements { member(name, elements) }
    }

    public mutating func member(_ name: StaticString, _ strings: [String]) {
        key(name)
        open(UInt8(ascii: "["))
        for string in strings {
            separate()
            self.string(string)
        }
        close(UInt8(ascii: "]"))
    }

    private mutating func open(_ bracket: UInt8) {
        bytes.append(bracket)
        followsAnother = false
    }

    private mutating func close(_ bracket: UInt8) {
        bytes.append(bracket)
        followsAnother = true
    }

    private mutating func separate() {
        if followsAnother { bytes.append(UInt8(ascii: ",")) }
        followsAnother = true
    }

    private mutating func key(_ name: StaticString) {
        separate()
        bytes.append(UInt8(ascii: "\""))
        name.withUTF8Buffer { bytes.append(contentsOf: $0) }
        bytes.append(contentsOf: [UInt8(ascii: "\""), UInt8(ascii: ":")])
    }

    /// A string as `JSONEncoder` escapes it by default.
    private mutating func string(_ value: String) {
        bytes.append(UInt8(ascii: "\""))
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\""): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            case UInt8(ascii: "\\"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case UInt8(ascii: "/"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "/")])
            case 0x08: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "b")])
            case 0x0C: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "f")])
            case UInt8(ascii: "\n"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case UInt8(ascii: "\r"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
            case UInt8(ascii: "\t"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
            case 0x00..<0x20:
                bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"),
                                          Self.hexDigits[Int(byte >> 4)], Self.hexDigits[Int(byte & 0xF)]])
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}

extension Traits: JSONWritable {
    public func write(to json: inout JSONWriter) {
        json.object { json in
            json.member("country", text: country)
            json.member("region", text: region)
            if let city { json.member("city", city) }
            json.member("category", text: category)
            json.member("reputation", text: reputation)
            json.member("tags", tags)
        }
    }
}

extension LeaseBody: JSONWritable {
    public func write(to json: inout JSONWriter) {
        json.object { json in
            json.member("id", id)
            json.member("host", host)
            json.member("address", text: address)
            json.member("slice", slice)
            json.member("ports", text: ports)
            json.member("start", start)
            json.member("expires", expires)
            json.member("traits", traits)
        }
    }
}

extension PrefixLeaseBody: JSONWritable {
    public func write(to json: inout JSONWriter) {
        json.object { json in
            json.member("id", id)
            json.member("host", host)
            json.member("prefix", text: prefix)
            json.member("start", start)
            json.member("expires", expires)
            json.member("traits", traits)
        }
    }
}

extension LeaseList: JSONWritable {
    public func write(to json: inout JSONWriter) {
        json.object { json in
            json.member("leases", leases)
            json.member("prefixLeases", prefixLeases)
        }
    }
}

extension ErrorBody: JSONWritable {
    public func write(to json: inout JSONWriter) {
        json.object { json in
            json.member("error", error)
            json.member("field", text: field)
        }
    }
}
