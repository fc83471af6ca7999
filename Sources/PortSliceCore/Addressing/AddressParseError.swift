/// Why a piece of text is not an IP address or prefix. The message quotes the offending text
/// and, where there is one, says what to write instead.
public struct AddressParseError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Reason: Error, Hashable, Sendable {
        case empty
        case invalidCharacter(Character)
        case wrongOctetCount(Int)
        case emptyOctet
        case leadingZero(octet: String)
        case octetOutOfRange(octet: String)
        case multipleDoubleColons
        case emptyGroup
        case groupTooLong(group: String)
        case wrongGroupCount(Int)
        case zoneNotAllowed
        case missingPrefixLength
        case badPrefixLength(length: String, maximum: Int)
        case hostBitsSet(network: String)
        case wrongFamily(expected: String)
    }

    /// What was being parsed: "IPv4 address", "IPv6 prefix", "address", ...
    public let what: String
    /// The whole text as given.
    public let text: String
    public let reason: Reason

    public init(what: String, text: String, reason: Reason) {
        self.what = what
        self.text = text
        self.reason = reason
    }

    public var description: String {
        "invalid \(what) '\(text)': \(explanation)"
    }

    private var explanation: String {
        switch reason {
        case .empty:
            return "it is empty"
        case .invalidCharacter(let character):
            return "unexpected character '\(character)'"
        case .wrongOctetCount(let count):
            return "an IPv4 address has 4 dot-separated octets, found \(count)"
        case .emptyOctet:
            return "an octet is empty (two dots in a row, or a dot at either end)"
        case .leadingZero(let octet):
            let value = octet.drop { $0 == "0" }
            return "octet '\(octet)' has a leading zero, which some tools read as octal; write '\(value.isEmpty ? "0" : String(value))'"
        case .octetOutOfRange(let octet):
            return "octet '\(octet)' is out of range 0-255"
        case .multipleDoubleColons:
            return "'::' may appear only once"
        case .emptyGroup:
            return "a group between colons is empty (use '::' once to skip zero groups)"
        case .groupTooLong(let group):
            return "group '\(group)' has more than 4 hex digits"
        case .wrongGroupCount(let count):
            return "an IPv6 address has 8 groups (fewer only with '::'), found \(count)"
        case .zoneNotAllowed:
            return "a zone index ('%...') is not allowed here"
        case .missingPrefixLength:
            return "the prefix length is missing; write it as ADDRESS/LENGTH, for example '\(text)/\(text.contains(":") ? 128 : 32)' for one address"
        case .badPrefixLength(let length, let maximum):
            return "prefix length '\(length)' must be a number from 0 to \(maximum) without leading zeros"
        case .hostBitsSet(let network):
            return "bits are set beyond the prefix length; did you mean '\(network)'?"
        case .wrongFamily(let expected):
            return "expected an \(expected)"
        }
    }
}
