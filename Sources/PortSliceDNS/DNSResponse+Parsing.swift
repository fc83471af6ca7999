import PortSliceCore

extension DNSResponse {
    /// Parses a response message (RFC 1035 section 4.1) straight from the received bytes.
    ///
    /// Every read is bounds-checked and every loop is bounded by the message, so hostile bytes
    /// end in a `DNSParseError`, never a trap; what a message can make us keep is capped
    /// (`maximumAddresses`, `maximumCNAMEChain`, names of at most 255 bytes). With TC set only
    /// the header and question are read: the rest may be cut anywhere, and the answer is to
    /// ask again over TCP.
    /// - Throws: `DNSParseError` for the first thing malformed.
    public init(parsing message: UnsafeRawBufferPointer) throws(DNSParseError) {
        self = try MessageReader(bytes: message).parseResponse()
    }

    /// Parses a response message held in an array.
    /// - Throws: `DNSParseError` for the first thing malformed.
    public init(parsing message: [UInt8]) throws(DNSParseError) {
        let result = message.withUnsafeBytes { buffer in
            Result { () throws(DNSParseError) in try MessageReader(bytes: buffer).parseResponse() }
        }
        self = try result.get()
    }
}

/// The fixed part of a resource record, read where it stands in the message.
private struct RecordFields {
    let type: DNSRecordType
    let recordClass: UInt16
    let ttl: UInt32
    let dataStart: Int
    let dataEnd: Int
}

/// Reads a message in place: names stay as offsets into it, so comparing owners along a
/// CNAME chain costs no allocation, and only the question name and the canonical name are
/// ever copied out.
struct MessageReader {
    /// Any honest encoder needs a few pointers per name; the cap bounds hostile ones even
    /// though backward-only pointers already cannot loop.
    static let maximumPointersPerName = 64
    static let headerLength = 12

    let bytes: UnsafeRawBufferPointer

    @inline(__always)
    func byte(at offset: Int) throws(DNSParseError) -> UInt8 {
        guard offset < bytes.count else { throw .truncated(offset: offset) }
        return bytes[offset]
    }

    @inline(__always)
    func uint16(at offset: Int) throws(DNSParseError) -> UInt16 {
        guard offset + 2 <= bytes.count else { throw .truncated(offset: offset) }
        return UInt16(bytes[offset]) << 8 | UInt16(bytes[offset + 1])
    }

    @inline(__always)
    func uint32(at offset: Int) throws(DNSParseError) -> UInt32 {
        guard offset + 4 <= bytes.count else { throw .truncated(offset: offset) }
        return UInt32(bigEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }

    /// Checks the name at `start` and returns the offset just past it in place.
    ///
    /// A pointer must land after the header and before the segment it continues (not merely
    /// before itself: `a` followed by a pointer to `a` points backwards and still loops), so
    /// each jump goes strictly lower and the walk ends.
    func skipName(at start: Int) throws(DNSParseError) -> Int {
        var position = start
        var segmentStart = start
        var resumeAt = -1
        var wireLength = 1  // the root label
        var pointers = 0
        while true {
            guard position < bytes.count else { throw .truncated(offset: position) }
            let label = Int(bytes[position])
            switch label & 0xC0 {
            case 0x00:
                if label == 0 { return resumeAt >= 0 ? resumeAt : position + 1 }
                wireLength += 1 + label
                guard wireLength <= DNSName.maximumWireLength else { throw .nameTooLong(offset: start) }
                position += 1 + label
            case 0xC0:
                guard position + 1 < bytes.count else { throw .truncated(offset: position) }
                let target = (label & 0x3F) << 8 | Int(bytes[position + 1])
                guard target >= Self.headerLength && target < segmentStart else {
                    throw .pointerNotBackward(offset: position)
                }
                pointers += 1
                guard pointers <= Self.maximumPointersPerName else { throw .tooManyPointers(offset: start) }
                if resumeAt < 0 { resumeAt = position + 2 }
                position = target
                segmentStart = target
            default:
                throw .reservedLabelType(offset: position)
            }
        }
    }

    /// The offset of the next label of a name already checked by `skipName`, pointers followed.
    @inline(__always)
    private func resolvePointers(_ offset: Int) -> Int {
        var position = offset
        while bytes[position] & 0xC0 == 0xC0 {
            position = Int(bytes[position] & 0x3F) << 8 | Int(bytes[position + 1])
        }
        return position
    }

    /// Compares two checked names in place, ignoring ASCII case. Names that reach the same
    /// bytes are equal at once, the usual case when an owner is a pointer to the CNAME target.
    func namesEqual(_ first: Int, _ second: Int) -> Bool {
        var left = first
        var right = second
        while true {
            left = resolvePointers(left)
            right = resolvePointers(right)
            if left == right { return true }
            let length = Int(bytes[left])
            guard length == Int(bytes[right]) else { return false }
            if length == 0 { return true }
            for index in 1...length where asciiLowercase(bytes[left + index]) != asciiLowercase(bytes[right + index]) {
                return false
            }
            left += 1 + length
            right += 1 + length
        }
    }

    /// A checked name copied out in uncompressed form.
    func decodeName(at offset: Int) -> DNSName {
        var wire: [UInt8] = []
        wire.reserveCapacity(32)
        var position = resolvePointers(offset)
        while bytes[position] != 0 {
            let length = Int(bytes[position])
            wire.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[position..<(position + 1 + length)]))
            position = resolvePointers(position + 1 + length)
        }
        wire.append(0)
        return DNSName(validatedWire: wire)
    }

    /// Reads the fixed part of the record whose owner name starts at `offset`, checking the
    /// owner and that the data lies inside the message.
    private func recordFields(at offset: Int) throws(DNSParseError) -> RecordFields {
        let fixed = try skipName(at: offset)
        let type = DNSRecordType(rawValue: try uint16(at: fixed))
        let recordClass = try uint16(at: fixed + 2)
        let ttl = try uint32(at: fixed + 4)
        let length = Int(try uint16(at: fixed + 8))
        let dataStart = fixed + 10
        guard dataStart + length <= bytes.count else { throw .truncated(offset: dataStart) }
        // RFC 2181 section 8: a TTL with the top bit set is read as zero.
        return RecordFields(
            type: type, recordClass: recordClass, ttl: ttl > UInt32(Int32.max) ? 0 : ttl,
            dataStart: dataStart, dataEnd: dataStart + length)
    }

    /// Checks the data of the types whose data we read later, so the second walk cannot fail.
    private func checkRecord(at offset: Int) throws(DNSParseError) -> RecordFields {
        let record = try recordFields(at: offset)
        guard record.recordClass == classInternet else { return record }
        let length = record.dataEnd - record.dataStart
        let valid = switch record.type {
        case .a: length == 4
        case .aaaa: length == 16
        case .cname: try skipName(at: record.dataStart) == record.dataEnd
        default: true
        }
        guard valid else { throw .badRecordData(type: record.type, offset: offset) }
        return record
    }

    func parseResponse() throws(DNSParseError) -> DNSResponse {
        guard bytes.count >= Self.headerLength else { throw .truncated(offset: 0) }
        let header = DNSHeader(
            id: try uint16(at: 0), flags: try uint16(at: 2), questionCount: try uint16(at: 4),
            answerCount: try uint16(at: 6), authorityCount: try uint16(at: 8), additionalCount: try uint16(at: 10))
        guard header.isResponse else { throw .notAResponse }
        guard header.questionCount == 1 else { throw .questionCount(header.questionCount) }
        let questionEnd = try skipName(at: Self.headerLength)
        let question = DNSQuestion(
            name: decodeName(at: Self.headerLength), type: DNSRecordType(rawValue: try uint16(at: questionEnd)),
            recordClass: try uint16(at: questionEnd + 2))
        var position = questionEnd + 4
        if header.isTruncated {
            return DNSResponse(
                header: header, question: question, responseCode: DNSResponseCode(rawValue: UInt16(header.rcode)),
                addresses: [], ttl: nil, canonicalName: nil, cnameCount: 0, negativeTTL: nil,
                clientSubnet: nil, udpPayloadSize: nil)
        }

        let answersStart = position
        for _ in 0..<header.answerCount {
            position = try checkRecord(at: position).dataEnd
        }
        var soaNegativeTTL: UInt32?
        for _ in 0..<header.authorityCount {
            let record = try checkRecord(at: position)
            if record.type == .soa && record.recordClass == classInternet && soaNegativeTTL == nil {
                soaNegativeTTL = try negativeTTL(ofSOA: record, at: position)
            }
            position = record.dataEnd
        }
        var optSeen = false
        var extendedRcode: UInt16 = 0
        var clientSubnet: ClientSubnet?
        var udpPayloadSize: UInt16?
        for _ in 0..<header.additionalCount {
            let record = try recordFields(at: position)
            if record.type == .opt {
                guard !optSeen else { throw .multipleOPT(offset: position) }
                guard bytes[position] == 0 else { throw .malformedOPT(offset: position) }
                optSeen = true
                udpPayloadSize = record.recordClass
                // The TTL field is EXTENDED-RCODE, VERSION, flags; reread it, as the top-bit rule
                // for TTLs does not apply here.
                extendedRcode = UInt16(try byte(at: record.dataStart - 6))
                clientSubnet = try clientSubnetOption(in: record, at: position)
            }
            position = record.dataEnd
        }
        guard position == bytes.count else { throw .trailingBytes(count: bytes.count - position) }

        let responseCode = DNSResponseCode(rawValue: extendedRcode << 4 | UInt16(header.rcode))
        let (target, cnameCount, chainTTL) = try followCNAMEs(
            from: Self.headerLength, question: question, answersStart: answersStart, count: header.answerCount)
        let (addresses, ttl) = try collectAddresses(
            owner: target, type: question.type, question: question, answersStart: answersStart,
            count: header.answerCount, ttl: chainTTL)
        let negative = addresses.isEmpty && (responseCode == .noError || responseCode == .nameError)
        return DNSResponse(
            header: header, question: question, responseCode: responseCode, addresses: addresses,
            ttl: addresses.isEmpty ? nil : ttl, canonicalName: cnameCount > 0 ? decodeName(at: target) : nil,
            cnameCount: cnameCount, negativeTTL: negative ? soaNegativeTTL : nil,
            clientSubnet: clientSubnet, udpPayloadSize: udpPayloadSize)
    }

    /// RFC 2308 section 5: min(SOA record TTL, SOA MINIMUM), MINIMUM being the last of the
    /// five 32-bit fields after the two names.
    private func negativeTTL(ofSOA record: RecordFields, at offset: Int) throws(DNSParseError) -> UInt32 {
        let afterPrimary = try skipName(at: record.dataStart)
        let afterMailbox = try skipName(at: afterPrimary)
        guard afterMailbox + 20 == record.dataEnd else { throw .badRecordData(type: .soa, offset: offset) }
        return min(record.ttl, try uint32(at: afterMailbox + 16))
    }

    /// The ECS option among the OPT record's options (RFC 6891 section 6.1.2), checked as RFC
    /// 7871 section 6 requires.
    private func clientSubnetOption(in record: RecordFields, at offset: Int) throws(DNSParseError) -> ClientSubnet? {
        var position = record.dataStart
        var found: ClientSubnet?
        while position < record.dataEnd {
            guard position + 4 <= record.dataEnd else { throw .malformedOPT(offset: offset) }
            let code = try uint16(at: position)
            let length = Int(try uint16(at: position + 2))
            let start = position + 4
            guard start + length <= record.dataEnd else { throw .malformedOPT(offset: offset) }
            if code == DNSOptionCode.clientSubnet {
                guard found == nil, length >= 4 else { throw .malformedClientSubnet(offset: position) }
                let family = try uint16(at: start)
                let source = try byte(at: start + 2)
                let scope = try byte(at: start + 3)
                let width: UInt8
                switch family {
                case 1: width = 32
                case 2: width = 128
                default: throw .malformedClientSubnet(offset: position)
                }
                guard source <= width, scope <= width, length - 4 == (Int(source) + 7) / 8 else {
                    throw .malformedClientSubnet(offset: position)
                }
                var bits: UInt128 = 0
                for index in 0..<(length - 4) {
                    bits |= UInt128(bytes[start + 4 + index]) << (120 - 8 * UInt128(index))
                }
                guard bits & ~leftAlignedMask(source) == 0 else { throw .malformedClientSubnet(offset: position) }
                let address: IPAddress = width == 32
                    ? .v4(IPv4Address(bits: UInt32(truncatingIfNeeded: bits >> 96))) : .v6(IPv6Address(bits: bits))
                found = ClientSubnet(validated: address, source: source, scope: scope)
            }
            position = start + length
        }
        return found
    }

    /// Follows CNAMEs from the question name through the answer section (in any order, as RFC
    /// 1034 section 3.6.2 allows), returning where the chain ends and its lowest TTL.
    private func followCNAMEs(
        from name: Int, question: DNSQuestion, answersStart: Int, count: UInt16
    ) throws(DNSParseError) -> (target: Int, links: Int, ttl: UInt32) {
        var target = name
        var links = 0
        var ttl = UInt32.max
        guard question.recordClass == classInternet && question.type != .cname else { return (target, 0, ttl) }
        var followed = true
        while followed {
            followed = false
            var position = answersStart
            for _ in 0..<count {
                let record = try recordFields(at: position)
                if record.type == .cname && record.recordClass == classInternet && namesEqual(position, target) {
                    links += 1
                    guard links <= DNSResponse.maximumCNAMEChain else { throw .cnameChainTooLong }
                    ttl = min(ttl, record.ttl)
                    target = record.dataStart
                    followed = true
                    break
                }
                position = record.dataEnd
            }
        }
        return (target, links, ttl)
    }

    /// The addresses of the question's type owned by `owner`, at most `maximumAddresses`.
    private func collectAddresses(
        owner: Int, type: DNSRecordType, question: DNSQuestion, answersStart: Int, count: UInt16, ttl: UInt32
    ) throws(DNSParseError) -> ([IPAddress], UInt32) {
        var addresses: [IPAddress] = []
        var lowest = ttl
        guard question.recordClass == classInternet && (type == .a || type == .aaaa) else { return (addresses, lowest) }
        var position = answersStart
        for _ in 0..<count {
            let record = try recordFields(at: position)
            if record.type == type && record.recordClass == classInternet && namesEqual(position, owner)
                && addresses.count < DNSResponse.maximumAddresses {
                if addresses.isEmpty { addresses.reserveCapacity(min(Int(count), DNSResponse.maximumAddresses)) }
                if type == .a {
                    addresses.append(.v4(IPv4Address(bits: try uint32(at: record.dataStart))))
                } else {
                    let high = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: record.dataStart, as: UInt64.self))
                    let low = UInt64(bigEndian: bytes.loadUnaligned(fromByteOffset: record.dataStart + 8, as: UInt64.self))
                    addresses.append(.v6(IPv6Address(bits: UInt128(high) << 64 | UInt128(low))))
                }
                lowest = min(lowest, record.ttl)
            }
            position = record.dataEnd
        }
        return (addresses, lowest)
    }
}
