extension Geofeed {
    /// Which columns a written feed has.
    public enum Columns: Sendable {
        /// RFC 8805's five: what geolocation providers read. A published feed tells where
        /// addresses are, not how they are classed.
        case standard
        /// The five, then portslice's `category,reputation,tags` on lines that carry them.
        case withTraits
    }

    /// The pool as a feed: one /32 per address, in address order, then its IPv6 prefixes
    /// whole (not the leased sub-prefixes: the block's location is the location of all of
    /// them), in address order.
    public init(pool: [EgressAddress], prefixes: [PoolPrefix] = []) {
        self.init(entries: pool.sorted { $0.address < $1.address }.map { egress in
            GeofeedEntry(prefix: .v4(IPv4Prefix(containing: egress.address, length: 32)), traits: egress.traits)
        } + prefixes.sorted { $0.prefix < $1.prefix }.map { GeofeedEntry(prefix: .v6($0.prefix), traits: $0.traits) })
    }

    /// The feed as RFC 8805 CSV text: `prefix,country,region,city,postal`, and with
    /// `.withTraits` the extension columns `category,reputation,tags` on lines that carry
    /// them. Fields holding a comma, quote or line break are quoted as RFC 4180 says.
    /// - Parameter header: comment lines written first, each prefixed with `# `.
    public func csv(header: [String] = [], columns kept: Columns = .withTraits) -> String {
        var output = ""
        for line in header { output += "# \(line)\n" }
        for entry in entries {
            let traits = entry.traits
            var columns = [
                entry.prefix.description, traits.country?.rawValue ?? "", traits.region?.rawValue ?? "",
                traits.city ?? "", entry.postalCode ?? "",
            ]
            if kept == .withTraits {
                columns += [traits.category == .unknown ? "" : traits.category.rawValue, traits.reputation?.rawValue ?? "", traits.tags.joined(separator: ";")]
            }
            while columns.count > 5 && columns.last == "" { columns.removeLast() }
            output += columns.map(Self.quotedIfNeeded).joined(separator: ",")
            output += "\n"
        }
        return output
    }

    private static func quotedIfNeeded(_ field: String) -> String {
        guard field.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return field }
        return "\"" + field.replacingAll("\"", with: "\"\"") + "\""
    }
}

extension String {
    /// Foundation-free replacement of every occurrence of one character.
    func replacingAll(_ character: Character, with replacement: String) -> String {
        var result = ""
        for existing in self {
            if existing == character { result += replacement } else { result.append(existing) }
        }
        return result
    }
}
