/// An inclusive range of ports, `lower-upper`, as `IP_LOCAL_PORT_RANGE` and the sysctls use.
public struct PortRange: Hashable, Sendable, Comparable, CodableAsText, CustomStringConvertible, LosslessStringConvertible {
    public let lower: UInt16
    public let upper: UInt16

    /// The range the kernel may hand out: 0 is never a usable port.
    public static let allPorts = PortRange(uncheckedLower: 1, upper: 65535)
    /// The default range split into slices: everything above the system ports.
    public static let nonSystemPorts = PortRange(uncheckedLower: 1024, upper: 65535)

    public init(_ lower: UInt16, _ upper: UInt16) throws(PortRangeError) {
        guard lower <= upper else { throw .reversed(text: "\(lower)-\(upper)") }
        self.init(uncheckedLower: lower, upper: upper)
    }

    init(uncheckedLower lower: UInt16, upper: UInt16) {
        self.lower = lower
        self.upper = upper
    }

    /// A single port.
    public init(port: UInt16) { self.init(uncheckedLower: port, upper: port) }

    /// Parses `LO-HI` or a single `PORT`; ports are 0-65535 in decimal without leading zeros.
    public init(parsing text: String) throws(PortRangeError) {
        try self.init(parsing: text[...])
    }

    /// The same, over part of a longer text (a `PortSet`'s), with no copy of it.
    init(parsing text: Substring) throws(PortRangeError) {
        let dash = text.firstIndex(of: "-")
        let lower = try Self.parsePort(text[..<(dash ?? text.endIndex)], in: text)
        let upper = if let dash { try Self.parsePort(text[text.index(after: dash)...], in: text) } else { lower }
        guard lower <= upper else { throw .reversed(text: String(text)) }
        self.init(uncheckedLower: lower, upper: upper)
    }

    public init?(_ description: String) {
        guard let parsed = try? PortRange(parsing: description) else { return nil }
        self = parsed
    }

    static func parsePort(_ text: Substring, in whole: Substring) throws(PortRangeError) -> UInt16 {
        let trimmed = text.trimmingSpaces
        guard !trimmed.isEmpty, trimmed.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
              !(trimmed.count > 1 && trimmed.first == "0"), let value = UInt16(trimmed)
        else { throw .badPort(port: String(text), text: String(whole)) }
        return value
    }

    public var count: Int { Int(upper) - Int(lower) + 1 }

    public func contains(_ port: UInt16) -> Bool { lower <= port && port <= upper }

    public func contains(_ other: PortRange) -> Bool { lower <= other.lower && other.upper <= upper }

    /// The smallest range holding both this one and `other`: what `ip_local_port_range` must
    /// grow to so it covers a slice.
    public func covering(_ other: PortRange) -> PortRange {
        PortRange(uncheckedLower: min(lower, other.lower), upper: max(upper, other.upper))
    }

    public static func < (lhs: PortRange, rhs: PortRange) -> Bool {
        (lhs.lower, lhs.upper) < (rhs.lower, rhs.upper)
    }

    public var description: String { lower == upper ? "\(lower)" : "\(lower)-\(upper)" }
}

public enum PortRangeError: Error, Hashable, Sendable, CustomStringConvertible {
    case badPort(port: String, text: String)
    case reversed(text: String)

    public var description: String {
        switch self {
        case .badPort(let port, let text):
            "invalid port range '\(text)': '\(port)' is not a port number 0-65535 (decimal, no leading zeros)"
        case .reversed(let text):
            "invalid port range '\(text)': the lower bound is above the upper bound; write it as LOW-HIGH"
        }
    }
}

extension StringProtocol {
    /// The text without leading and trailing spaces and tabs (Foundation-free).
    var trimmingSpaces: SubSequence {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        let start = firstIndex { !isSpace($0) } ?? endIndex
        let end = lastIndex { !isSpace($0) }.map(index(after:)) ?? start
        return self[start..<end]
    }
}
