/// An ISO 3166-1 alpha-2 country code, upper case, validated against the officially assigned
/// codes (plus XK, the user-assigned code for Kosovo that geofeeds use widely).
public struct CountryCode: Hashable, Sendable, Comparable, CodableAsText {
    public let rawValue: String

    public init(parsing text: some StringProtocol) throws(TraitError) {
        var copy = String(text)
        guard let code = copy.withUTF8({ CountryCode(utf8: $0) }) else { throw .unknownCountry(String(text)) }
        self = code
    }

    /// Parses two ASCII letters of either case; nil when they are not an assigned code.
    init?(utf8: UnsafeBufferPointer<UInt8>) {
        guard utf8.count == 2, let index = Self.tableIndex(utf8[0], utf8[1]), Self.assigned[index] else {
            return nil
        }
        rawValue = String(asciiUppercasing: utf8)
    }

    /// Index into `assigned` for two ASCII letters of either case.
    static func tableIndex(_ first: UInt8, _ second: UInt8) -> Int? {
        let a = first & 0xDF, b = second & 0xDF
        guard (65...90).contains(a), (65...90).contains(b) else { return nil }
        return Int(a - 65) * 26 + Int(b - 65)
    }

    static let officialCodes = """
        AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ \
        BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM \
        DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS \
        GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN \
        KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ \
        MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM \
        PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV \
        SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI \
        VN VU WF WS YE YT ZA ZM ZW
        """.split(separator: " ")

    /// A 26 x 26 membership table, so validating a code on the geofeed hot path is two loads.
    static let assigned: [Bool] = {
        var table = [Bool](repeating: false, count: 26 * 26)
        for code in officialCodes + ["XK"] {
            let bytes = Array(code.utf8)
            table[tableIndex(bytes[0], bytes[1])!] = true
        }
        return table
    }()

    public var description: String { rawValue }

    public static func < (lhs: CountryCode, rhs: CountryCode) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// An ISO 3166-2 subdivision code such as `US-CA`: the country code, a hyphen, and one to three
/// letters or digits. Only the shape and the country are checked; the list of subdivisions
/// changes too often to embed.
public struct RegionCode: Hashable, Sendable, Comparable, Codable, CustomStringConvertible {
    public let rawValue: String
    public let country: CountryCode

    /// - Parameter country: the country the region must belong to, when known.
    public init(parsing text: some StringProtocol, country expected: CountryCode?) throws(TraitError) {
        var copy = String(text)
        let result = copy.withUTF8 { RegionCode.parse(utf8: $0, country: expected) }
        self = try result.get()
    }

    /// Parses `CC-XXX` from UTF-8 bytes, letters of either case.
    static func parse(utf8: UnsafeBufferPointer<UInt8>, country expected: CountryCode?) -> Result<RegionCode, TraitError> {
        let text = { String(decoding: utf8, as: UTF8.self) }
        guard (4...6).contains(utf8.count), utf8[2] == UInt8(ascii: "-"),
              let country = CountryCode(utf8: UnsafeBufferPointer(rebasing: utf8[0..<2]))
        else { return .failure(.badRegion(text())) }
        for byte in utf8[3...] {
            guard (48...57).contains(byte) || (65...90).contains(byte & 0xDF) else { return .failure(.badRegion(text())) }
        }
        let code = String(asciiUppercasing: utf8)
        if let expected, expected != country {
            return .failure(.regionOutsideCountry(region: code, country: expected.rawValue))
        }
        return .success(RegionCode(rawValue: code, country: country))
    }

    private init(rawValue: String, country: CountryCode) {
        self.rawValue = rawValue
        self.country = country
    }

    public var description: String { rawValue }

    public static func < (lhs: RegionCode, rhs: RegionCode) -> Bool { lhs.rawValue < rhs.rawValue }

    public init(from decoder: any Decoder) throws {
        self = try RegionCode(parsing: try decoder.singleValueContainer().decode(String.self), country: nil)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(rawValue)
    }
}

extension String {
    /// The bytes with ASCII letters upper-cased, built in place (a short code stays a small
    /// string and never touches the heap).
    init(asciiUppercasing bytes: UnsafeBufferPointer<UInt8>) {
        self.init(unsafeUninitializedCapacity: bytes.count) { buffer in
            for (index, byte) in bytes.enumerated() {
                buffer[index] = (97...122).contains(byte) ? byte & 0xDF : byte
            }
            return bytes.count
        }
    }
}
