/// Why bytes are not a well-formed DNS response. Offsets count from the start of the message,
/// so a capture can be read beside the error.
public enum DNSParseError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The message ends inside the field that starts at `offset`.
    case truncated(offset: Int)
    /// A label length byte with the top bits 01 or 10 (RFC 6891 section 5 retired them).
    case reservedLabelType(offset: Int)
    /// A name longer than 255 bytes once its pointers are followed.
    case nameTooLong(offset: Int)
    /// A compression pointer that does not point before the name it continues, or into the
    /// header: the rule that makes loops impossible.
    case pointerNotBackward(offset: Int)
    /// More pointers in one name than any encoder would write.
    case tooManyPointers(offset: Int)
    /// QR is 0: a query, not an answer.
    case notAResponse
    /// A response to our queries carries exactly one question.
    case questionCount(UInt16)
    /// RDLENGTH disagrees with the record's type (A is 4 bytes, AAAA 16, a name exactly fills
    /// CNAME), or runs past the end.
    case badRecordData(type: DNSRecordType, offset: Int)
    /// An OPT record that is not owned by the root, or whose options do not fill its data.
    case malformedOPT(offset: Int)
    /// RFC 6891 section 6.1.1: more than one OPT record is a format error.
    case multipleOPT(offset: Int)
    /// An ECS option with an unknown family, prefix lengths beyond the family's width, an
    /// address of the wrong length, or bits set beyond the source prefix (RFC 7871 section 6).
    case malformedClientSubnet(offset: Int)
    /// A CNAME chain longer than `DNSResponse.maximumCNAMEChain`, or a loop.
    case cnameChainTooLong
    /// Bytes after the last record the header announced.
    case trailingBytes(count: Int)

    public var description: String {
        switch self {
        case .truncated(let offset): "the message ends inside the field at offset \(offset)"
        case .reservedLabelType(let offset): "reserved label type at offset \(offset)"
        case .nameTooLong(let offset): "the name at offset \(offset) is longer than 255 bytes"
        case .pointerNotBackward(let offset): "the compression pointer at offset \(offset) does not point backwards"
        case .tooManyPointers(let offset): "the name at offset \(offset) has too many compression pointers"
        case .notAResponse: "the message is a query, not a response"
        case .questionCount(let count): "the response has \(count) questions, not 1"
        case .badRecordData(let type, let offset): "the \(type) record at offset \(offset) has malformed data"
        case .malformedOPT(let offset): "the OPT record at offset \(offset) is malformed"
        case .multipleOPT(let offset): "a second OPT record at offset \(offset)"
        case .malformedClientSubnet(let offset): "the client subnet option at offset \(offset) is malformed"
        case .cnameChainTooLong: "the CNAME chain is longer than \(DNSResponse.maximumCNAMEChain) or loops"
        case .trailingBytes(let count): "\(count) bytes follow the last record"
        }
    }
}
