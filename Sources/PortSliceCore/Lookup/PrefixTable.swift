/// Longest-prefix match over one address family.
///
/// Nested prefixes are flattened at build time into disjoint intervals of the address space,
/// each owned by its most specific prefix, so a lookup is one binary search instead of a walk
/// down a trie. A direct index on the top 16 bits narrows that search to the few intervals
/// that start inside the same /16 (or the same 16-bit head of an IPv6 address).
///
/// Memory per prefix: the prefix and its value, plus at most two interval boundaries
/// (start and owner), plus a fixed 256 KiB index.
public struct PrefixTable<Address: IPAddressFamily, Value: Sendable>: Sendable {
    public typealias Entry = (prefix: Prefix<Address>, value: Value)

    @usableFromInline let prefixes: [Prefix<Address>]
    @usableFromInline let values: [Value]
    /// Sorted interval starts; `starts[0] == 0`, so every address falls in some interval.
    @usableFromInline let starts: [Address.Bits]
    /// Index into `prefixes` owning each interval, or `noOwner`.
    @usableFromInline let owners: [UInt32]
    /// `buckets[b]`: how many intervals start below head `b` (the address's top 16 bits).
    @usableFromInline let buckets: [UInt32]

    @usableFromInline static var noOwner: UInt32 { .max }
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
        self.prefixes = order.map { prefixes[$0] }
        self.values = order.map { values[$0] }
        (starts, owners) = Self.flatten(self.prefixes)
        buckets = Self.index(starts)
    }

    /// Splits the address space into intervals owned by the most specific covering prefix.
    /// `sorted` is ordered by network, then by length (a covering prefix before what it covers).
    private static func flatten(_ sorted: [Prefix<Address>]) -> ([Address.Bits], [UInt32]) {
        var starts: [Address.Bits] = []
        var owners: [UInt32] = []
        starts.reserveCapacity(sorted.count * 2 + 1)
        owners.reserveCapacity(sorted.count * 2 + 1)
        func begin(_ start: Address.Bits, _ owner: UInt32) {
            if starts.last == start {
                starts.removeLast()
                owners.removeLast()
            }
            if owners.last != owner {
                starts.append(start)
                owners.append(owner)
            }
        }
        // `cursor`: the first address whose owner is not yet settled; nil once past the end.
        var cursor: Address.Bits? = 0
        var open: [Int] = []
        func closeTop() {
            let top = open.removeLast()
            let last = sorted[top].last.bits
            if let start = cursor, start <= last {
                begin(start, UInt32(top))
                cursor = last == .max ? nil : last + 1
            }
        }
        for (index, prefix) in sorted.enumerated() {
            while let top = open.last, sorted[top].last.bits < prefix.first.bits { closeTop() }
            if let start = cursor, start < prefix.first.bits {
                begin(start, open.last.map(UInt32.init) ?? noOwner)
            }
            begin(prefix.first.bits, UInt32(index))
            cursor = prefix.first.bits
            open.append(index)
        }
        while !open.isEmpty { closeTop() }
        if let start = cursor { begin(start, noOwner) }
        return (starts, owners)
    }

    private static func index(_ starts: [Address.Bits]) -> [UInt32] {
        var buckets = [UInt32](repeating: 0, count: (1 << 16) + 1)
        var position = 0
        for head in 0...(1 << 16) {
            while position < starts.count && Int(starts[position] >> headShift) < head { position += 1 }
            buckets[head] = UInt32(position)
        }
        return buckets
    }

    /// The most specific prefix containing `address`, with its value.
    @inlinable
    public func lookup(_ address: Address) -> Entry? {
        let key = address.bits
        let head = Int(truncatingIfNeeded: key >> Self.headShift)
        let owner: UInt32 = buckets.withUnsafeBufferPointer { buckets in
            starts.withUnsafeBufferPointer { starts in
                var low = Int(buckets[head]), high = Int(buckets[head + 1])
                while low < high {
                    let middle = (low + high) &>> 1
                    if starts[middle] <= key { low = middle + 1 } else { high = middle }
                }
                return owners.withUnsafeBufferPointer { $0[low - 1] }
            }
        }
        guard owner != Self.noOwner else { return nil }
        return (prefixes[Int(owner)], values[Int(owner)])
    }

    /// Number of distinct prefixes.
    public var count: Int { prefixes.count }

    /// Every prefix with its value, ordered by network then length.
    public var entries: some Collection<Entry> {
        prefixes.indices.lazy.map { (self.prefixes[$0], self.values[$0]) }
    }

    /// Bytes of table storage in use (element strides times counts; array headers and the
    /// heap storage of values themselves are not included).
    public var storageBytes: Int {
        prefixes.count * MemoryLayout<Prefix<Address>>.stride
            + values.count * MemoryLayout<Value>.stride
            + starts.count * MemoryLayout<Address.Bits>.stride
            + owners.count * MemoryLayout<UInt32>.stride
            + buckets.count * MemoryLayout<UInt32>.stride
    }
}
