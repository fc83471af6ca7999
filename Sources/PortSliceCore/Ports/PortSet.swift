/// Any set of ports, kept as sorted, disjoint, non-adjacent runs. A contiguous slice is a set
/// with one run; an RFC 7597 port set has one run per value of its offset bits.
public struct PortSet: Hashable, Sendable, CodableAsText, CustomStringConvertible {
    public let runs: [PortRange]

    public static let empty = PortSet(normalizedRuns: [])

    /// Builds a set from ranges in any order; overlapping or adjacent ranges merge.
    public init(_ ranges: some Sequence<PortRange>) {
        var merged: [PortRange] = []
        for range in ranges.sorted() {
            if let last = merged.last, Int(range.lower) <= Int(last.upper) + 1 {
                merged[merged.count - 1] = PortRange(uncheckedLower: last.lower, upper: max(last.upper, range.upper))
            } else {
                merged.append(range)
            }
        }
        self.init(normalizedRuns: merged)
    }

    public init(_ range: PortRange) { self.init(normalizedRuns: [range]) }

    init(normalizedRuns: [PortRange]) { runs = normalizedRuns }

    /// Parses a comma-separated list of ports and ranges, as `ip_local_reserved_ports` prints
    /// it (`8080,9000-9010`). Empty text is the empty set.
    public init(parsing text: String) throws(PortRangeError) {
        var ranges: [PortRange] = []
        for part in text.split(separator: ",") {
            let trimmed = part.trimmingSpaces
            if !trimmed.isEmpty { ranges.append(try PortRange(parsing: trimmed)) }
        }
        // Text as `description` writes it (ascending runs, apart) needs no sorting or merging:
        // the store reads every lease's ports that way.
        if zip(ranges, ranges.dropFirst()).allSatisfy({ Int($0.upper) + 1 < Int($1.lower) }) {
            self.init(normalizedRuns: ranges)
        } else {
            self.init(ranges)
        }
    }

    public var count: Int { runs.reduce(0) { $0 + $1.count } }
    public var isEmpty: Bool { runs.isEmpty }
    /// True when the set is one run, so the kernel's `IP_LOCAL_PORT_RANGE` can express it.
    public var isContiguous: Bool { runs.count == 1 }
    /// The smallest range holding every port of the set.
    public var span: PortRange? {
        guard let first = runs.first, let last = runs.last else { return nil }
        return PortRange(uncheckedLower: first.lower, upper: last.upper)
    }

    public func contains(_ port: UInt16) -> Bool {
        var low = 0, high = runs.count
        while low < high {
            let middle = (low + high) / 2
            if runs[middle].upper < port { low = middle + 1 } else { high = middle }
        }
        return low < runs.count && runs[low].lower <= port
    }

    /// Every port, ascending.
    public var ports: some Sequence<UInt16> { runs.lazy.flatMap { $0.lower...$0.upper } }

    public func union(_ other: PortSet) -> PortSet { PortSet(runs + other.runs) }

    public func intersection(_ other: PortSet) -> PortSet {
        var result: [PortRange] = []
        var i = 0, j = 0
        while i < runs.count && j < other.runs.count {
            let a = runs[i], b = other.runs[j]
            let lower = max(a.lower, b.lower), upper = min(a.upper, b.upper)
            if lower <= upper { result.append(PortRange(uncheckedLower: lower, upper: upper)) }
            if a.upper < b.upper { i += 1 } else { j += 1 }
        }
        return PortSet(normalizedRuns: result)
    }

    public func subtracting(_ other: PortSet) -> PortSet {
        var result: [PortRange] = []
        var j = 0
        for run in runs {
            var lower = Int(run.lower)
            let upper = Int(run.upper)
            while j < other.runs.count && Int(other.runs[j].upper) < lower { j += 1 }
            var k = j
            while k < other.runs.count && Int(other.runs[k].lower) <= upper && lower <= upper {
                let cut = other.runs[k]
                if Int(cut.lower) > lower {
                    result.append(PortRange(uncheckedLower: UInt16(lower), upper: UInt16(Int(cut.lower) - 1)))
                }
                lower = Int(cut.upper) + 1
                k += 1
            }
            if lower <= upper {
                result.append(PortRange(uncheckedLower: UInt16(lower), upper: UInt16(upper)))
            }
        }
        return PortSet(normalizedRuns: result)
    }

    public func isDisjoint(with other: PortSet) -> Bool { intersection(other).isEmpty }

    /// `1232-1235,2256-2259,...`; the same text `init(parsing:)` reads.
    public var description: String { runs.map(\.description).joined(separator: ",") }
}
