extension Geofeed {
    /// The feed as RFC 8805 CSV text: `prefix,country,region,city,postal`, followed by the
    /// extension columns `category,reputation,tags` on lines that carry them. Fields holding a
    /// comma, quote or line break are quoted as RFC 4180 says.
    /// - Parameter header: comment lines written first, each prefixed with `# `.
    public func csv(header: [String] = []) -> String {
        var output = ""
        for line in header { output += "# \(line)\n" }
        for entry in entries {
            let traits = entry.traits
            var columns = [
                entry.prefix.description, traits.country?.rawValue ?? "", traits.region?.rawValue ?? "",
                traits.city ?? "", entry.postalCode ?? "",
                traits.category == .unknown ? "" : traits.category.rawValue,
                traits.reputation?.rawValue ?? "", traits.tags.joined(separator: ";"),
            ]
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
