import PortSliceCore

/// The SOCKS5 messages a server reads (RFC 1928, and RFC 1929's username and password) and the
/// replies it writes, as pure functions over bytes: the engine calls them on whatever has
/// arrived, and they say whether a whole message is there.
enum SOCKS5 {
    /// What a parser found at the start of the bytes.
    enum Parsed<Message> {
        /// Not a whole message yet.
        case needMore
        /// Not SOCKS5 as the RFC has it; `reply` is the code to answer a request with (nil
        /// before the request, where no reply exists).
        case invalid(String, reply: UInt8?)
        /// A whole message of `length` bytes.
        case message(Message, length: Int)
    }

    /// The methods a client offers (`VER NMETHODS METHODS`).
    struct Greeting: Equatable {
        var offersNoAuthentication = false
        var offersUsernamePassword = false
    }

    static let noAuthentication: UInt8 = 0
    static let usernamePassword: UInt8 = 2
    static let noAcceptableMethod: UInt8 = 0xff

    static func greeting<Bytes: RandomAccessCollection<UInt8>>(_ bytes: Bytes) -> Parsed<Greeting> where Bytes.Index == Int {
        let start = bytes.startIndex
        guard bytes.count >= 2 else { return bytes.first.map { $0 == 5 ? .needMore : .invalid("SOCKS version \($0), not 5", reply: nil) } ?? .needMore }
        guard bytes[start] == 5 else { return .invalid("SOCKS version \(bytes[start]), not 5", reply: nil) }
        let count = Int(bytes[start + 1])
        guard count > 0 else { return .invalid("a SOCKS greeting offering no method", reply: nil) }
        guard bytes.count >= 2 + count else { return .needMore }
        var greeting = Greeting()
        for method in bytes[(start + 2)..<(start + 2 + count)] {
            if method == noAuthentication { greeting.offersNoAuthentication = true }
            if method == usernamePassword { greeting.offersUsernamePassword = true }
        }
        return .message(greeting, length: 2 + count)
    }

    /// RFC 1929's request: `VER=1 ULEN UNAME PLEN PASSWD`, both fields 1 to 255 bytes.
    struct Credentials: Equatable {
        let user: [UInt8]
        let password: [UInt8]
    }

    static func credentials<Bytes: RandomAccessCollection<UInt8>>(_ bytes: Bytes) -> Parsed<Credentials> where Bytes.Index == Int {
        let start = bytes.startIndex
        guard let version = bytes.first else { return .needMore }
        guard version == 1 else { return .invalid("username/password version \(version), not 1", reply: nil) }
        guard bytes.count >= 2 else { return .needMore }
        let userLength = Int(bytes[start + 1])
        guard bytes.count >= 3 + userLength else { return .needMore }
        let passwordLength = Int(bytes[start + 2 + userLength])
        guard bytes.count >= 3 + userLength + passwordLength else { return .needMore }
        let user = Array(bytes[(start + 2)..<(start + 2 + userLength)])
        let password = Array(bytes[(start + 3 + userLength)..<(start + 3 + userLength + passwordLength)])
        return .message(Credentials(user: user, password: password), length: 3 + userLength + passwordLength)
    }

    enum Command: UInt8 {
        case connect = 1, bind = 2, udpAssociate = 3
    }

    /// Where a request goes: an address, or a name to look up (1 to 255 bytes).
    enum Destination: Equatable {
        case ipv4(IPv4Address)
        case ipv6(IPv6Address)
        case name(String)
    }

    struct Request: Equatable {
        let command: Command
        let destination: Destination
        let port: UInt16
    }

    /// `VER=5 CMD RSV=0 ATYP DST.ADDR DST.PORT`.
    static func request<Bytes: RandomAccessCollection<UInt8>>(_ bytes: Bytes) -> Parsed<Request> where Bytes.Index == Int {
        let start = bytes.startIndex
        guard bytes.count >= 5 else {
            if let version = bytes.first, version != 5 { return .invalid("SOCKS version \(version), not 5", reply: Reply.generalFailure) }
            return .needMore
        }
        guard bytes[start] == 5 else { return .invalid("SOCKS version \(bytes[start]), not 5", reply: Reply.generalFailure) }
        guard bytes[start + 2] == 0 else { return .invalid("a SOCKS request with a reserved byte set", reply: Reply.generalFailure) }
        let addressLength: Int
        switch bytes[start + 3] {
        case 1: addressLength = 4
        case 4: addressLength = 16
        case 3:
            addressLength = 1 + Int(bytes[start + 4])
            guard bytes[start + 4] > 0 else { return .invalid("a SOCKS request for an empty name", reply: Reply.addressUnsupported) }
        case let type: return .invalid("SOCKS address type \(type)", reply: Reply.addressUnsupported)
        }
        let length = 4 + addressLength + 2
        guard bytes.count >= length else { return .needMore }
        let address = start + 4
        let destination: Destination
        switch bytes[start + 3] {
        case 1:
            destination = .ipv4(IPv4Address(bytes[address], bytes[address + 1], bytes[address + 2], bytes[address + 3]))
        case 4:
            destination = .ipv6(IPv6Address(bits: bytes[address..<(address + 16)].reduce(UInt128(0)) { $0 << 8 | UInt128($1) }))
        default:
            destination = .name(String(decoding: bytes[(address + 1)..<(address + addressLength)], as: UTF8.self))
        }
        let port = UInt16(bytes[start + length - 2]) << 8 | UInt16(bytes[start + length - 1])
        guard let command = Command(rawValue: bytes[start + 1]) else {
            return .invalid("SOCKS command \(bytes[start + 1])", reply: Reply.commandUnsupported)
        }
        return .message(Request(command: command, destination: destination, port: port), length: length)
    }

    /// Reply codes (RFC 1928 section 6).
    enum Reply {
        static let succeeded: UInt8 = 0
        static let generalFailure: UInt8 = 1
        static let notAllowed: UInt8 = 2
        static let hostUnreachable: UInt8 = 4
        static let connectionRefused: UInt8 = 5
        static let ttlExpired: UInt8 = 6
        static let commandUnsupported: UInt8 = 7
        static let addressUnsupported: UInt8 = 8
    }

    /// A reply with an IPv4 bound address (0.0.0.0:0 for failures), 10 bytes.
    static func reply(_ code: UInt8, bound: Endpoint = Endpoint(IPv4Address(bits: 0), 0)) -> [UInt8] {
        let (a, b, c, d) = bound.address.octets
        return [5, code, 0, 1, a, b, c, d, UInt8(bound.port >> 8), UInt8(bound.port & 0xff)]
    }

    /// A reply with a bound address of either family: 10 bytes for IPv4, 22 for IPv6.
    static func reply(_ code: UInt8, bound: IPEndpoint) -> [UInt8] {
        switch bound.address {
        case .v4(let address):
            return reply(code, bound: Endpoint(address, bound.port))
        case .v6(let address):
            return [5, code, 0, 4] + (0..<16).map { UInt8(truncatingIfNeeded: address.bits >> (120 - 8 * $0)) }
                + [UInt8(bound.port >> 8), UInt8(bound.port & 0xff)]
        }
    }

    /// The reply code RFC 1928 gives for why a flow did not open.
    static func replyCode(for failure: OpenFailure) -> UInt8 {
        switch failure {
        case .refused: Reply.notAllowed
        case .unresolved: Reply.hostUnreachable
        case .connectionRefused: Reply.connectionRefused
        case .timedOut: Reply.ttlExpired
        case .exhausted, .failed: Reply.generalFailure
        case .noEgress: Reply.addressUnsupported
        }
    }
}
