import PortSliceCore

/// Static names from `/etc/hosts` text, consulted before DNS as glibc's `files` source is.
public struct HostsFile: Hashable, Sendable {
    /// The addresses one name has, each family in file order without repeats.
    public struct Addresses: Hashable, Sendable {
        public var ipv4: [IPv4Address] = []
        public var ipv6: [IPv6Address] = []

        public init(ipv4: [IPv4Address] = [], ipv6: [IPv6Address] = []) {
            self.ipv4 = ipv4
            self.ipv6 = ipv6
        }
    }

    /// Keyed by the lowercased name without a trailing dot.
    private var table: [String: Addresses] = [:]

    /// Reads hosts text: an address, then the canonical name and any aliases, separated by
    /// spaces or tabs; `#` starts a comment. Lines whose address does not parse (including
    /// IPv6 with a zone) are skipped, as glibc skips them.
    public init(parsing text: String) {
        for rawLine in text.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let line = rawLine.prefix { $0 != "#" }
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 2, let address = IPAddress(String(fields[0])) else { continue }
            for name in fields.dropFirst() {
                let key = Self.key(name)
                guard !key.isEmpty else { continue }
                switch address {
                case .v4(let v4):
                    if !table[key, default: Addresses()].ipv4.contains(v4) { table[key, default: Addresses()].ipv4.append(v4) }
                case .v6(let v6):
                    if !table[key, default: Addresses()].ipv6.contains(v6) { table[key, default: Addresses()].ipv6.append(v6) }
                }
            }
        }
    }

    /// Every address listed for `name`, ignoring case and a trailing dot; nil when it is not
    /// in the file.
    public func addresses(for name: String) -> Addresses? {
        // Most names come in lowercase ASCII without the root's dot: looked up as they are,
        // with no lowercased copy made for each.
        if name.utf8.allSatisfy({ $0 < 0x80 && !(UInt8(ascii: "A")...UInt8(ascii: "Z")).contains($0) }) && name.utf8.last != UInt8(ascii: ".") {
            return table[name]
        }
        return table[Self.key(Substring(name))]
    }

    private static func key(_ name: Substring) -> String {
        (name.hasSuffix(".") ? name.dropLast() : name).lowercased()
    }
}
