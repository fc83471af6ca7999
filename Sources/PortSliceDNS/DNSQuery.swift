import PortSliceCore

/// An address query as a stub resolver sends it: one question, recursion desired, and an EDNS0
/// OPT record (RFC 6891) that may carry the client's subnet (RFC 7871).
public struct DNSQuery: Hashable, Sendable {
    /// The address types a stub asks for.
    public enum AddressType: Hashable, Sendable {
        case a, aaaa

        public var recordType: DNSRecordType {
            switch self {
            case .a: .a
            case .aaaa: .aaaa
            }
        }
    }

    /// The EDNS buffer size the DNS Flag Day 2020 settled on: answers up to 1232 bytes fit an
    /// IPv6 packet of minimum MTU without fragmentation; larger ones come truncated and go to TCP.
    public static let defaultUDPPayloadSize: UInt16 = 1232

    /// Random per query, from the caller's generator: with the source port it is what stops an
    /// off-path spoofer (RFC 5452).
    public var id: UInt16
    public var name: DNSName
    public var type: AddressType
    public var clientSubnet: ClientSubnet?
    public var udpPayloadSize: UInt16

    public init(
        id: UInt16, name: DNSName, type: AddressType, clientSubnet: ClientSubnet? = nil,
        udpPayloadSize: UInt16 = DNSQuery.defaultUDPPayloadSize
    ) {
        self.id = id
        self.name = name
        self.type = type
        self.clientSubnet = clientSubnet
        self.udpPayloadSize = udpPayloadSize
    }

    /// The message in wire form, for a UDP datagram (frame it with `DNSTCPFraming` for TCP).
    public func encoded() -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(12 + name.wire.count + 4 + 11 + 4 + 16 + 8)
        bytes.appendUInt16(id)
        bytes.appendUInt16(0x0100)  // QR=0, opcode QUERY, RD=1
        bytes.appendUInt16(1)  // QDCOUNT
        bytes.appendUInt16(0)  // ANCOUNT
        bytes.appendUInt16(0)  // NSCOUNT
        bytes.appendUInt16(1)  // ARCOUNT: the OPT record
        bytes.append(contentsOf: name.wire)
        bytes.appendUInt16(type.recordType.rawValue)
        bytes.appendUInt16(classInternet)
        // OPT (RFC 6891 section 6.1.2): root owner, CLASS is the payload size, TTL carries the
        // extended RCODE, version 0 and the flags, all zero.
        bytes.append(0)
        bytes.appendUInt16(DNSRecordType.opt.rawValue)
        bytes.appendUInt16(udpPayloadSize)
        bytes.appendUInt16(0)
        bytes.appendUInt16(0)
        guard let subnet = clientSubnet else {
            bytes.appendUInt16(0)
            return bytes
        }
        let addressLength = subnet.addressByteCount
        bytes.appendUInt16(UInt16(4 + 4 + addressLength))  // RDLENGTH: one option
        bytes.appendUInt16(DNSOptionCode.clientSubnet)
        bytes.appendUInt16(UInt16(4 + addressLength))
        bytes.appendUInt16(subnet.family)
        bytes.append(subnet.sourcePrefixLength)
        bytes.append(0)  // SCOPE PREFIX-LENGTH must be 0 in queries
        let bits = subnet.address.leftAlignedBits
        for index in 0..<addressLength {
            bytes.append(UInt8(truncatingIfNeeded: bits >> (120 - 8 * UInt128(index))))
        }
        return bytes
    }
}

/// EDNS option codes (IANA "DNS EDNS0 Option Codes").
enum DNSOptionCode {
    static let clientSubnet: UInt16 = 8
}

/// DNS over TCP puts a two-byte big-endian length before every message (RFC 1035 section
/// 4.2.2, RFC 7766 section 8).
public enum DNSTCPFraming {
    /// The message with its length prefix.
    /// - Throws: `DNSEncodingError.messageTooLongForTCP` above 65535 bytes.
    public static func frame(_ message: [UInt8]) throws(DNSEncodingError) -> [UInt8] {
        guard message.count <= Int(UInt16.max) else { throw .messageTooLongForTCP(message.count) }
        var framed: [UInt8] = []
        framed.reserveCapacity(2 + message.count)
        framed.appendUInt16(UInt16(message.count))
        framed.append(contentsOf: message)
        return framed
    }

    /// Where the first whole message in `buffer` (bytes read from a TCP stream) lies, and how
    /// many bytes to consume with it; nil while the length or the message is still incomplete.
    public static func firstMessage(in buffer: UnsafeRawBufferPointer) -> (message: Range<Int>, consumed: Int)? {
        guard buffer.count >= 2 else { return nil }
        let length = Int(buffer[0]) << 8 | Int(buffer[1])
        guard buffer.count >= 2 + length else { return nil }
        return (2..<(2 + length), 2 + length)
    }
}

extension [UInt8] {
    @inline(__always)
    mutating func appendUInt16(_ value: UInt16) {
        append(UInt8(truncatingIfNeeded: value >> 8))
        append(UInt8(truncatingIfNeeded: value))
    }
}
