import PortSliceCore

/// The textbook longest-prefix structure, one bit per level, as the peer that our interval
/// table is measured against.
struct BinaryTrie {
    private var children: [(zero: Int32, one: Int32)] = [(-1, -1)]
    private var values: [Int32] = [-1]

    init(_ prefixes: some Sequence<(IPv4Prefix, Int32)>) {
        for (prefix, value) in prefixes {
            var node = 0
            for depth in 0..<Int(prefix.length) {
                let bit = prefix.network.bits >> (31 - UInt32(depth)) & 1
                let next = bit == 0 ? children[node].zero : children[node].one
                if next >= 0 {
                    node = Int(next)
                } else {
                    children.append((-1, -1))
                    values.append(-1)
                    let created = Int32(children.count - 1)
                    if bit == 0 { children[node].zero = created } else { children[node].one = created }
                    node = Int(created)
                }
            }
            values[node] = value
        }
    }

    func lookup(_ address: IPv4Address) -> Int32 {
        var node = 0
        var best = values[0]
        for depth in 0..<32 {
            let bit = address.bits >> (31 - UInt32(depth)) & 1
            let next = bit == 0 ? children[node].zero : children[node].one
            if next < 0 { break }
            node = Int(next)
            if values[node] >= 0 { best = values[node] }
        }
        return best
    }

    var storageBytes: Int {
        children.count * MemoryLayout<(Int32, Int32)>.stride + values.count * MemoryLayout<Int32>.stride
    }
}
