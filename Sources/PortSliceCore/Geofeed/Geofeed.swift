/// One line of an RFC 8805 geofeed: a prefix and the traits of the addresses in it.
///
/// The columns are `prefix,country,region,city,postal`, then portslice's extension columns
/// `category,reputation,tags` (tags separated by `;`). RFC 8805 readers ignore extra columns,
/// so a pool file with traits stays a geofeed that can be published as it is.
public struct GeofeedEntry: Hashable, Sendable {
    public var prefix: IPPrefix
    public var traits: Traits
    /// RFC 8805 deprecates the postal code column; it is kept only so a feed writes back as read.
    public var postalCode: String?
    /// The line the entry came from, 0 when built in code.
    public var line: Int

    public init(prefix: IPPrefix, traits: Traits, postalCode: String? = nil, line: Int = 0) {
        self.prefix = prefix
        self.traits = traits
        self.postalCode = postalCode
        self.line = line
    }
}

/// A problem on one line of a geofeed.
public struct GeofeedIssue: Error, Hashable, Sendable, CustomStringConvertible {
    /// The file name or other label the feed was read from.
    public let source: String
    public let line: Int
    public let message: String

    public var description: String { "\(source):\(line): \(message)" }
}

/// Every problem found in a geofeed that was read strictly.
public struct GeofeedErrors: Error, Hashable, Sendable, CustomStringConvertible {
    public let issues: [GeofeedIssue]

    public var description: String {
        let count = issues.count == 1 ? "1 error" : "\(issues.count) errors"
        return "geofeed has \(count):\n" + issues.map { "  \($0)" }.joined(separator: "\n")
    }
}

/// A parsed geofeed.
public struct Geofeed: Hashable, Sendable {
    public enum ReadMode: Sendable {
        /// Any bad line fails the whole read, with every problem listed.
        case strict
        /// Bad lines are skipped and listed in `issues`; the valid lines are kept.
        case lenient
    }

    public var entries: [GeofeedEntry]
    /// Lines skipped by a lenient read.
    public var issues: [GeofeedIssue]

    public init(entries: [GeofeedEntry], issues: [GeofeedIssue] = []) {
        self.entries = entries
        self.issues = issues
    }

    /// Reads a geofeed from UTF-8 bytes.
    /// - Parameters:
    ///   - source: a label for messages, usually the file name.
    ///   - mode: strict (throw on any problem) or lenient (skip bad lines).
    /// - Throws: `GeofeedErrors` listing every bad line, in strict mode.
    public static func read(_ bytes: [UInt8], source: String, mode: ReadMode = .strict) throws(GeofeedErrors) -> Geofeed {
        var reader = GeofeedReader(source: source)
        bytes.withUnsafeBufferPointer { reader.read($0) }
        if mode == .strict && !reader.issues.isEmpty { throw GeofeedErrors(issues: reader.issues) }
        return Geofeed(entries: reader.entries, issues: reader.issues)
    }

    public static func read(_ text: String, source: String, mode: ReadMode = .strict) throws(GeofeedErrors) -> Geofeed {
        try read(Array(text.utf8), source: source, mode: mode)
    }
}
