import PortSliceCore

/// The fixed 12-byte header of a message (RFC 1035 section 4.1.1).
public struct DNSHeader: Hashable, Sendable {
    public let id: UInt16
    /// QR, opcode, AA, TC, RD, RA, Z, AD, CD and RCODE as sent.
    public let flags: UInt16
    public let questionCount: UInt16
    public let answerCount: UInt16
    public let authorityCount: UInt16
    public let additionalCount: UInt16

    public var isResponse: Bool { flags & 0x8000 != 0 }
    public var opcode: UInt8 { UInt8(truncatingIfNeeded: flags >> 11) & 0x0F }
    public var isAuthoritative: Bool { flags & 0x0400 != 0 }
    /// TC: the answer did not fit; ask again over TCP.
    public var isTruncated: Bool { flags & 0x0200 != 0 }
    public var recursionDesired: Bool { flags & 0x0100 != 0 }
    public var recursionAvailable: Bool { flags & 0x0080 != 0 }
    /// The header's four RCODE bits; `DNSResponse.responseCode` adds the EDNS extension.
    public var rcode: UInt8 { UInt8(truncatingIfNeeded: flags) & 0x0F }
}

/// The question a message carries.
public struct DNSQuestion: Hashable, Sendable {
    public let name: DNSName
    public let type: DNSRecordType
    public let recordClass: UInt16
}

/// What a stub needs from an answer to an address query: the addresses at the end of the CNAME
/// chain with the TTL they may be kept for, or what to cache when there are none.
///
/// Parsing checks the message's structure only; whether it answers our query is `matches(_:)`,
/// which the resolver must call before believing anything in it.
public struct DNSResponse: Hashable, Sendable {
    /// Chains longer than this are refused: resolvers stop near 8-16 and a loop is a loop.
    public static let maximumCNAMEChain = 16
    /// More addresses than this are dropped: a client tries a handful, and a 64 KiB TCP answer
    /// could otherwise make us keep thousands.
    public static let maximumAddresses = 64

    public let header: DNSHeader
    public let question: DNSQuestion
    /// RCODE with the OPT record's extension.
    public let responseCode: DNSResponseCode
    /// A or AAAA addresses (as the question asked) owned by the end of the CNAME chain, in order.
    public let addresses: [IPAddress]
    /// The lowest TTL over the CNAME records followed and the addresses (RFC 2181 section 5.2
    /// asks for one TTL per set; a chain is only as fresh as its shortest link); nil without
    /// addresses.
    public let ttl: UInt32?
    /// Where the CNAME chain ended, when the question name had one.
    public let canonicalName: DNSName?
    public let cnameCount: Int
    /// RFC 2308 section 5: how long a negative answer (NXDOMAIN, or NOERROR without addresses)
    /// may be cached, min(SOA TTL, SOA MINIMUM) of the authority section's SOA; nil when the
    /// answer has addresses or no SOA, and then a negative answer must not be cached.
    public let negativeTTL: UInt32?
    /// The EDNS Client Subnet option echoed back, whose scope keys the cache (RFC 7871 7.3.1).
    public let clientSubnet: ClientSubnet?
    /// The server's EDNS payload size, nil when it sent no OPT record.
    public let udpPayloadSize: UInt16?

    init(
        header: DNSHeader, question: DNSQuestion, responseCode: DNSResponseCode, addresses: [IPAddress],
        ttl: UInt32?, canonicalName: DNSName?, cnameCount: Int, negativeTTL: UInt32?,
        clientSubnet: ClientSubnet?, udpPayloadSize: UInt16?
    ) {
        self.header = header
        self.question = question
        self.responseCode = responseCode
        self.addresses = addresses
        self.ttl = ttl
        self.canonicalName = canonicalName
        self.cnameCount = cnameCount
        self.negativeTTL = negativeTTL
        self.clientSubnet = clientSubnet
        self.udpPayloadSize = udpPayloadSize
    }

    /// True when this is the answer to `query`: a response to a standard query with the same
    /// ID and the same question (the name ignoring case), and, if we sent a client subnet, the
    /// same family, source prefix and address echoed (RFC 7871 section 7.3). An answer
    /// failing this is a stray or a spoof and must be dropped without a word.
    public func matches(_ query: DNSQuery) -> Bool {
        guard header.isResponse, header.opcode == 0, header.id == query.id,
              question.type == query.type.recordType, question.recordClass == classInternet,
              question.name == query.name
        else { return false }
        switch (query.clientSubnet, clientSubnet) {
        case (_, nil):
            return true  // a server without ECS support answers for everyone
        case (nil, .some):
            return false
        case (let sent?, let echoed?):
            return sent.address == echoed.address && sent.sourcePrefixLength == echoed.sourcePrefixLength
        }
    }
}
