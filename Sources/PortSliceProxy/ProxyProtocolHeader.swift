import PortSliceCore

/// The PROXY protocol header (HAProxy, versions 1 and 2) that a load balancer or VPN
/// concentrator in front of the proxy sends first, naming the true client. Only read on
/// listeners configured to trust it: anyone else could claim any address.
public enum ProxyProtocolHeader {
    public enum Parsed: Equatable, Sendable {
        /// Not enough bytes yet.
        case needMore
        /// A complete header of `length` bytes; `client` is nil for v2 LOCAL and v1 UNKNOWN
        /// (health checks), where the TCP peer stands for itself.
        case header(client: IPAddress?, length: Int)
        case invalid(String)
    }

    /// The most bytes a header may take before the connection is closed (v1 is at most 107;
    /// v2 may carry TLVs, but never this much from an honest balancer).
    static let limit = 4096

    static let v2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]
    static let v1Limit = 107

    public static func parse(_ bytes: some Collection<UInt8>) -> Parsed {
        let bytes = Array(bytes)
        guard let first = bytes.first else { return .needMore }
        if first == 0x0D {
            guard bytes.starts(with: v2Signature.prefix(min(bytes.count, v2Signature.count))) else { return .invalid("PROXY v2 signature is wrong") }
            return bytes.count < 16 ? .needMore : parseVersion2(bytes)
        }
        let v1Prefix = Array("PROXY ".utf8)
        guard bytes.starts(with: v1Prefix.prefix(min(bytes.count, v1Prefix.count))) else {
            return .invalid("the connection does not start with a PROXY protocol header")
        }
        return parseVersion1(bytes)
    }

    static func parseVersion1(_ bytes: [UInt8]) -> Parsed {
        guard let lineFeed = bytes.prefix(v1Limit).firstIndex(of: 0x0A) else {
            return bytes.count >= v1Limit ? .invalid("PROXY v1 header longer than \(v1Limit) bytes") : .needMore
        }
        guard lineFeed > 0, bytes[lineFeed - 1] == 0x0D else { return .invalid("PROXY v1 header does not end with CRLF") }
        let line = String(decoding: bytes[..<(lineFeed - 1)], as: UTF8.self)
        let fields = line.split(separator: " ", omittingEmptySubsequences: false)
        if fields.count >= 2 && fields[1] == "UNKNOWN" { return .header(client: nil, length: lineFeed + 1) }
        guard fields.count == 6, fields[1] == "TCP4" || fields[1] == "TCP6" else {
            return .invalid("PROXY v1 header is not 'PROXY TCP4|TCP6 SOURCE DESTINATION SPORT DPORT'")
        }
        guard let source = try? IPAddress(parsing: String(fields[2])), (try? IPAddress(parsing: String(fields[3]))) != nil,
              UInt16(fields[4]) != nil, UInt16(fields[5]) != nil
        else { return .invalid("PROXY v1 header has a malformed address or port") }
        return .header(client: source, length: lineFeed + 1)
    }

    static func parseVersion2(_ bytes: [UInt8]) -> Parsed {
        guard Array(bytes.prefix(12)) == v2Signature else { return .invalid("PROXY v2 signature is wrong") }
        let versionAndCommand = bytes[12]
        guard versionAndCommand >> 4 == 2 else { return .invalid("PROXY v2 header has version \(versionAndCommand >> 4)") }
        let length = 16 + (Int(bytes[14]) << 8 | Int(bytes[15]))
        guard bytes.count >= length else { return .needMore }
        switch versionAndCommand & 0x0F {
        case 0: return .header(client: nil, length: length)  // LOCAL
        case 1: break  // PROXY
        default: return .invalid("PROXY v2 header has command \(versionAndCommand & 0x0F)")
        }
        let addresses = bytes[16..<length]
        switch bytes[13] >> 4 {
        case 1:  // IPv4: source, destination, ports
            guard addresses.count >= 12 else { return .invalid("PROXY v2 IPv4 addresses are truncated") }
            let octets = Array(addresses.prefix(4))
            return .header(client: .v4(IPv4Address(octets[0], octets[1], octets[2], octets[3])), length: length)
        case 2:  // IPv6
            guard addresses.count >= 36 else { return .invalid("PROXY v2 IPv6 addresses are truncated") }
            let groups = stride(from: 0, to: 16, by: 2).map { String(UInt16(addresses[addresses.startIndex + $0]) << 8 | UInt16(addresses[addresses.startIndex + $0 + 1]), radix: 16) }
            guard let client = try? IPAddress(parsing: groups.joined(separator: ":")) else { return .invalid("PROXY v2 IPv6 source is malformed") }
            return .header(client: client, length: length)
        case 0:
            return .header(client: nil, length: length)  // AF_UNSPEC
        default:
            return .invalid("PROXY v2 header has address family \(bytes[13] >> 4)")
        }
    }
}
