import PortSliceCore

/// Which destination ports the proxy may open flows to. By default every port but 25 (SMTP),
/// which egress providers refuse: mail sent through a proxy is mostly spam, and it puts the
/// egress addresses on block lists.
///
/// Order: the deny list (`--deny-port`) refuses first, and nothing opens what it names, so the
/// deny list alone says which ports can never be reached; the allow list (`--allow-port`) then
/// opens what it names of the ports refused by default; every other port is open. The allow
/// list is no list of the only ports allowed: to allow only some ports, deny the others.
public struct PortPolicy: Hashable, Sendable, CustomStringConvertible {
    /// The ports refused unless the allow list opens them.
    public static let refusedByDefault: [PortRange] = [PortRange(port: 25)]

    public let allow: [PortRange]
    public let deny: [PortRange]

    /// The default policy: only 25 refused.
    public init() {
        allow = []
        deny = []
    }

    /// A policy from ranges already parsed.
    /// - Throws: `PortPolicyError.opensNothing` for an allowed range that opens no port (see
    ///   `init(allowing:denying:)`).
    public init(allow: [PortRange], deny: [PortRange]) throws(PortPolicyError) {
        self.allow = allow
        self.deny = deny
        if let useless = allow.first(where: { !opensAPort($0) }) {
            // The deny ranges that refuse what it would have opened, to name them.
            let refusedInIt = Self.refusedByDefault.filter { $0.overlaps(useless) }
            throw .opensNothing(allow: useless, deniedBy: deny.filter { denied in
                refusedInIt.contains { $0.overlaps(denied) && useless.overlaps(denied) }
            })
        }
    }

    /// A policy from the texts given to `--allow-port` and `--deny-port`: each a port or a
    /// range `LOW-HIGH` of ports 1 to 65535.
    /// - Throws: `PortPolicyError` naming the option, for text that is no such port or range, or
    ///   for an allowed range that opens nothing (no port of it is refused by default, or the
    ///   deny list refuses every one that is): an allow that changes nothing is a mistake,
    ///   most likely one expecting it to be the only ports allowed.
    public init(allowing: [String], denying: [String]) throws(PortPolicyError) {
        try self.init(allow: Self.ranges(allowing, option: "allow-port"), deny: Self.ranges(denying, option: "deny-port"))
    }

    private static func ranges(_ texts: [String], option: String) throws(PortPolicyError) -> [PortRange] {
        var ranges: [PortRange] = []
        for text in texts {
            let range: PortRange
            do {
                range = try PortRange(parsing: text)
            } catch .reversed {
                throw .reversed(option: option, text: text)
            } catch {
                throw .notAPort(option: option, text: text)
            }
            guard range.lower > 0 else { throw .notAPort(option: option, text: text) }
            ranges.append(range)
        }
        return ranges
    }

    /// Nil when flows to `port` may be opened; else why not, for logs and error replies.
    public func refusal(for port: UInt16) -> PortRefusal? {
        if let range = deny.first(where: { $0.contains(port) }) { return .denied(port, by: range) }
        if allow.contains(where: { $0.contains(port) }) { return nil }
        if let range = Self.refusedByDefault.first(where: { $0.contains(port) }) { return .refusedByDefault(port, range) }
        return nil
    }

    /// True when `range` holds a port refused by default that the deny list leaves: one it opens.
    private func opensAPort(_ range: PortRange) -> Bool {
        Self.refusedByDefault.contains { refused in
            let (low, high) = (max(refused.lower, range.lower), min(refused.upper, range.upper))
            return low <= high && (low...high).contains { port in !deny.contains { $0.contains(port) } }
        }
    }

    /// The rules in the order they are applied, on one line (for the status page).
    public var description: String {
        let list = { (ranges: [PortRange]) in ranges.map(\.description).joined(separator: ", ") }
        var rules: [String] = []
        if !deny.isEmpty { rules.append("refused \(list(deny)) (--deny-port)") }
        if !allow.isEmpty { rules.append("opened \(list(allow)) (--allow-port)") }
        rules.append("refused by default \(list(Self.refusedByDefault))")
        rules.append("every other port open")
        return rules.joined(separator: "; ")
    }
}

/// Why the port policy refuses a port; the description is what the client and the log are told.
public enum PortRefusal: Hashable, Sendable, CustomStringConvertible {
    /// In a `--deny-port` range.
    case denied(UInt16, by: PortRange)
    /// Refused by default (25), not opened by `--allow-port`.
    case refusedByDefault(UInt16, PortRange)

    public var port: UInt16 {
        switch self {
        case .denied(let port, _), .refusedByDefault(let port, _): port
        }
    }

    public var description: String {
        switch self {
        case .denied(let port, let range):
            "port \(port) is in the port deny list (--deny-port \(range))"
        case .refusedByDefault(let port, _):
            "port \(port) (SMTP) is refused by default, as egress providers refuse it; --allow-port \(port) permits it"
        }
    }
}

/// A `--allow-port` or `--deny-port` value the port policy cannot take; the description names
/// the option and says what to give instead.
public enum PortPolicyError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Not a port 1 to 65535, or a range of them.
    case notAPort(option: String, text: String)
    /// A range whose lower end is above its upper end.
    case reversed(option: String, text: String)
    /// An allowed range that opens no port: none of it is refused by default, or the deny
    /// ranges (`deniedBy`) refuse every port of it that is.
    case opensNothing(allow: PortRange, deniedBy: [PortRange])

    public var description: String {
        switch self {
        case .notAPort(let option, let text):
            return "--\(option) '\(text)' is not a port from 1 to 65535 or a range of them LOW-HIGH, such as 25 or 8000-8100"
        case .reversed(let option, let text):
            let ends = text.split(separator: "-").map { $0.filter { $0 != " " && $0 != "\t" } }
            return "--\(option) '\(text)' runs backwards; write the range LOW-HIGH (\(ends.reversed().joined(separator: "-")))"
        case .opensNothing(let allow, let denied) where !denied.isEmpty:
            let byDefault = PortPolicy.refusedByDefault.filter { $0.overlaps(allow) }.map(\.description).joined(separator: ", ")
            let by = denied.map { "--deny-port \($0)" }.joined(separator: ", ")
            return "--allow-port \(allow) opens nothing: the only ports of it refused by default (\(byDefault)) are refused by \(by) too, and --deny-port wins over --allow-port"
        case .opensNothing(let allow, _):
            let defaults = PortPolicy.refusedByDefault.map(\.description).joined(separator: ", ")
            return "--allow-port \(allow) opens nothing: only \(defaults) is refused by default and every other port is open; "
                + "--allow-port does not make a list of the only ports allowed (to allow only some, refuse the others with --deny-port)"
        }
    }
}

extension PortRange {
    func overlaps(_ other: PortRange) -> Bool { lower <= other.upper && other.lower <= upper }
}
