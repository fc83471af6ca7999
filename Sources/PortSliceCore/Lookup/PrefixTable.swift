/// Longest-prefix match over one address family.
///
/// Nested prefixes are flattened at build time into disjoint intervals of the address space,
/// each carrying the length and value of its most specific covering prefix, so a lookup is one
/// binary search and the answer sits in the interval it finds (the prefix is the address
/// masked to that length). A direct index on the top 16 bits narrows the search to the few
/// intervals that start under the same head (a /16, or the first 16 bits of an IPv6 address).
///
/// Memory: at most two intervals per prefix, plus a fixed 256 KiB index.
public struct PrefixTable<Address: IPAddressFamily, Value: Sendable>: Sendable {
    public typealias Entry = (prefix: Prefix<Address>, value: Value)

    /// An interval of the address space, from `start` to the next interval's start.
    @usableFromInline
    struct Interval: Sendable {
        // Declaration order is layout order: the one-byte length after the optional packs
        // a 4-byte value into a 12-byte interval for IPv4.
        @usableFromInline let start: Address.Bits
        /// The value of the most specific prefix covering the interval; nil where none does.
        @usableFromInline let value: Value?
        /// That prefix's length.
        @usableFromInline let length: UInt8
    }

    /// Sorted by start; the first starts at 0, so every address falls in some interval.
    @usableFromInline let intervals: [Interval]
    /// `buckets[b]`: how many intervals start below head `b` (the address's top 16 bits).
    @usableFromInline let buckets: [UInt32]
    /// Number of distinct prefixes.
    public let count: Int

    @usableFromInline static var headShift: Int { Address.Bits.bitWidth - 16 }

    /// Builds the table. When a prefix occurs more than once, the last value given wins.
    public init(_ entries: some Sequence<Entry>) {
        var indexOfPrefix: [Prefix<Address>: Int] = [:]
        var prefixes: [Prefix<Address>] = []
        var values: [Value] = []
        for (prefix, value) in entries {
            if let existing = indexOfPrefix[prefix] {
                values[existing] = value
            } else {
                indexOfPrefix[prefix] = prefixes.count
                prefixes.append(prefix)
                values.append(value)
            }
        }
        let order = prefixes.indices.sorted { prefixes[$0] < prefixes[$1] }
        intervals = Self.flatten(order.map { (prefixes[$0], values[$0]) })
        buckets = Self.index(intervals)
        count = prefixes.count
    }

    /// Splits the address space into intervals owned by the most specific covering prefix.
    /// `sorted` is ordered by network, then by length (a covering prefix before what it covers).
    private static func flatten(_ sorted: [Entry]) -> [Interval] {
        var intervals: [Interval] = []
        intervals.reserveCapacity(sorted.count * 2 + 1)
        /// From `start` on (until the next call), addresses belong to `sorted[owner]`, or to none.
        func begin(_ start: Address.Bits, _ owner: Int?) {
            if intervals.last?.start == start { intervals.removeLast() }
            let length = owner.map { sorted[$0].prefix.length } ?? 0
            let value = owner.map { sorted[$0].value }
            if let last = intervals.last, last.length == length, owner.map({ sorted[$0].prefix.contains(Address(bits: last.start)) }) ?? (last.value == nil) {
                return  // the previous interval already has this owner
            }
            intervals.append(Interval(start: start, value: value, length: length))
        }
        // `cursor`: the first address whose owner is not yet settled; nil once past the end.
        var cursor: Address.Bits? = 0
        var open: [Int] = []
        func closeTop() {
            let top = open.removeLast()
            let last = sorted[top].prefix.last.bits
            if let start = cursor, start <= last {
                begin(start, top)
                cursor = last == .max ? nil : last + 1
            }
        }
        for (index, entry) in sorted.enumerated() {
            let first = entry.prefix.first.bits
            while let top = open.last, sorted[top].prefix.last.bits < first { closeTop() }
            if let start = cursor, start < first { begin(start, open.last) }
            begin(first, index)
            cursor = first
            open.append(index)
        }
        while !open.isEmpty { closeTop() }
        if let start = cursor { begin(start, nil) }
        return intervals
    }

    private static func index(_ intervals: [Interval]) -> [UInt32] {
        var buckets = [UInt32](repeating: 0, count: (1 << 16) + 1)
        var position = 0
        for head in 0...(1 << 16) {
            while position < intervals.count && Int(intervals[position].start >> headShift) < head { position += 1 }
            buckets[head] = UInt32(position)
        }
        return buckets
    }

    /// The most specific prefix containing `address`, with its value.
    @inlinable
    public func lookup(_ address: Address) -> Entry? {
        let key = address.bits
        let head = Int(truncatingIfNeeded: key >> Self.headShift)
        let interval = buckets.withUnsafeBufferPointer { buckets in
            intervals.withUnsafeBufferPointer { intervals in
                // Lower bound without data-dependent branches: the loop count depends only on
                // the bucket's size, so the processor can overlap the loads of successive lookups.
                var base = Int(buckets[head])
                var length = Int(buckets[head &+ 1]) &- base
                while length > 1 {
                    let half = length &>> 1
                    base = intervals[base &+ half].start <= key ? base &+ half : base
                    length &-= half
                }
                // `base` is the last interval at or before `key` within the bucket, or the
                // bucket's first; the previous bucket's last interval covers keys before that.
                let inside = length == 1 && intervals[base].start <= key
                return intervals[inside ? base : base &- 1]
            }
        }
        guard let value = interval.value else { return nil }
        return (Prefix(containing: address, length: Int(interval.length)), value)
    }

    /// Bytes of table storage in use (element strides times counts; array headers and any heap
    /// storage of the values themselves are not included).
    public var storageBytes: Int {
        intervals.count * MemoryLayout<Interval>.stride + buckets.count * MemoryLayout<UInt32>.stride
    }
}
