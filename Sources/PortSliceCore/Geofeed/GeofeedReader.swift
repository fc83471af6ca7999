/// Reads geofeed lines from a byte buffer without building a String per line: the hot path
/// of loading a public egress feed of hundreds of thousands of lines.
struct GeofeedReader {
    let source: String
    private(set) var entries: [GeofeedEntry] = []
    private(set) var issues: [GeofeedIssue] = []
    private var firstLineOfPrefix: [IPPrefix: Int] = [:]
    private var fields: [Range<Int>] = []

    init(source: String) { self.source = source }

    private enum Column: Int {
        case prefix, country, region, city, postal, category, reputation, tags
    }

    mutating func read(_ bytes: UnsafeBufferPointer<UInt8>) {
        var start = 0
        if bytes.count >= 3 && bytes[0] == 0xEF && bytes[1] == 0xBB && bytes[2] == 0xBF { start = 3 }
        // Room for every line up front: growing a 300,000-entry table step by step rehashes it
        // many times over.
        let lineCount = bytes.reduce(1) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
        entries.reserveCapacity(lineCount)
        firstLineOfPrefix.reserveCapacity(lineCount)
        var lineNumber = 0
        while start < bytes.count {
            lineNumber += 1
            var end = start
            while end < bytes.count && bytes[end] != UInt8(ascii: "\n") { end += 1 }
            var lineEnd = end
            if lineEnd > start && bytes[lineEnd - 1] == UInt8(ascii: "\r") { lineEnd -= 1 }
            readLine(UnsafeBufferPointer(rebasing: bytes[start..<lineEnd]), number: lineNumber)
            start = end + 1
        }
    }

    private mutating func fail(_ line: Int, _ message: String) {
        issues.append(GeofeedIssue(source: source, line: line, message: message))
    }

    private mutating func readLine(_ line: UnsafeBufferPointer<UInt8>, number: Int) {
        let content = trim(line, 0..<line.count)
        if content.isEmpty || line[content.lowerBound] == UInt8(ascii: "#") { return }
        // One pass splits at commas and notes what needs a closer look: non-ASCII bytes
        // (validate UTF-8) and quotes (split again as RFC 4180 says).
        fields.removeAll(keepingCapacity: true)
        var fieldStart = content.lowerBound
        var allBits: UInt8 = 0
        var quoted = false
        for index in content {
            let byte = line[index]
            allBits |= byte
            if byte == UInt8(ascii: ",") {
                fields.append(trim(line, fieldStart..<index))
                fieldStart = index + 1
            } else if byte == UInt8(ascii: "\"") {
                quoted = true
            }
        }
        fields.append(trim(line, fieldStart..<content.upperBound))
        if allBits & 0x80 != 0, String(validating: line[content], as: UTF8.self) == nil {
            return fail(number, "the line is not valid UTF-8; geofeeds must be UTF-8 encoded")
        }
        if quoted {
            guard let values = splitQuoted(line[content]) else {
                return fail(number, "a quoted field is not closed; end it with '\"' on the same line")
            }
            values.withFlattenedFields { buffer, ranges in
                self.fields = ranges
                self.parseFields(buffer, number: number)
            }
        } else {
            parseFields(line, number: number)
        }
    }

    private func trim(_ line: UnsafeBufferPointer<UInt8>, _ range: Range<Int>) -> Range<Int> {
        var lower = range.lowerBound, upper = range.upperBound
        while lower < upper && (line[lower] == UInt8(ascii: " ") || line[lower] == UInt8(ascii: "\t")) { lower += 1 }
        while upper > lower && (line[upper - 1] == UInt8(ascii: " ") || line[upper - 1] == UInt8(ascii: "\t")) { upper -= 1 }
        return lower..<upper
    }

    private func field(_ column: Column, _ line: UnsafeBufferPointer<UInt8>) -> UnsafeBufferPointer<UInt8>? {
        guard column.rawValue < fields.count, !fields[column.rawValue].isEmpty else { return nil }
        return UnsafeBufferPointer(rebasing: line[fields[column.rawValue]])
    }

    private func text(_ column: Column, _ line: UnsafeBufferPointer<UInt8>) -> String? {
        field(column, line).map { String(decoding: $0, as: UTF8.self) }
    }

    private mutating func parseFields(_ line: UnsafeBufferPointer<UInt8>, number: Int) {
        guard let prefixBytes = field(.prefix, line) else {
            return fail(number, "the prefix (first column) is empty")
        }
        let prefix: IPPrefix
        switch IPPrefix.parse(prefixBytes) {
        case .success(let parsed): prefix = parsed
        case .failure(let reason):
            let text = String(decoding: prefixBytes, as: UTF8.self)
            return fail(number, AddressParseError(what: "prefix", text: text, reason: reason).description)
        }
        let traits: Traits
        do {
            traits = try parseTraits(line)
        } catch {
            return fail(number, error.description)
        }
        if let first = firstLineOfPrefix.updateValue(number, forKey: prefix) {
            firstLineOfPrefix[prefix] = first
            return fail(number, "duplicate prefix \(prefix), first given on line \(first); RFC 8805 allows each prefix once")
        }
        entries.append(GeofeedEntry(prefix: prefix, traits: traits, postalCode: text(.postal, line), line: number))
    }

    private func parseTraits(_ line: UnsafeBufferPointer<UInt8>) throws(TraitError) -> Traits {
        var country: CountryCode? = nil
        if let bytes = field(.country, line) {
            guard let code = CountryCode(utf8: bytes) else {
                throw .unknownCountry(String(decoding: bytes, as: UTF8.self))
            }
            country = code
        }
        var region: RegionCode? = nil
        if let bytes = field(.region, line) {
            region = try RegionCode.parse(utf8: bytes, country: country).get()
        }
        var category = Category.unknown
        if let bytes = field(.category, line) {
            guard let named = Category(name: bytes) else { throw .unknownCategory(String(decoding: bytes, as: UTF8.self)) }
            category = named
        }
        var reputation: ReputationTier? = nil
        if let bytes = field(.reputation, line) {
            guard let named = ReputationTier(name: bytes) else {
                throw .unknownReputation(String(decoding: bytes, as: UTF8.self))
            }
            reputation = named
        }
        let tags = text(.tags, line).map { $0.split(separator: ";").map { String($0.trimmingSpaces) } } ?? []
        return try Traits(
            country: country, region: region, city: text(.city, line),
            category: category, reputation: reputation, tags: tags)
    }

    /// RFC 4180 fields of a line that holds quotes; nil when a quote is left open.
    private func splitQuoted(_ line: Slice<UnsafeBufferPointer<UInt8>>) -> [[UInt8]]? {
        var values: [[UInt8]] = []
        var current: [UInt8] = []
        var inQuotes = false
        var index = line.startIndex
        while index < line.endIndex {
            let byte = line[index]
            if inQuotes {
                if byte == UInt8(ascii: "\"") {
                    if index + 1 < line.endIndex && line[index + 1] == UInt8(ascii: "\"") {
                        current.append(byte)
                        index += 1
                    } else {
                        inQuotes = false
                    }
                } else {
                    current.append(byte)
                }
            } else if byte == UInt8(ascii: "\"") {
                inQuotes = true
            } else if byte == UInt8(ascii: ",") {
                values.append(current)
                current = []
            } else {
                current.append(byte)
            }
            index += 1
        }
        if inQuotes { return nil }
        values.append(current)
        return values.map { value in
            var trimmed = value[...]
            while let first = trimmed.first, first == UInt8(ascii: " ") || first == UInt8(ascii: "\t") { trimmed.removeFirst() }
            while let last = trimmed.last, last == UInt8(ascii: " ") || last == UInt8(ascii: "\t") { trimmed.removeLast() }
            return Array(trimmed)
        }
    }
}

extension [[UInt8]] {
    /// Lays the fields end to end in one buffer and hands over their ranges, so quoted lines
    /// go through the same field parser as plain ones.
    fileprivate func withFlattenedFields(_ body: (UnsafeBufferPointer<UInt8>, [Range<Int>]) -> Void) {
        var ranges: [Range<Int>] = []
        var offset = 0
        for field in self {
            ranges.append(offset..<(offset + field.count))
            offset += field.count
        }
        flatMap { $0 }.withUnsafeBufferPointer { body($0, ranges) }
    }
}
