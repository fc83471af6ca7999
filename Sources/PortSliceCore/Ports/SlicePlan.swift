/// How one address's port space is split among hosts: either contiguous slices (what the
/// kernel's `IP_LOCAL_PORT_RANGE` fast path needs) or RFC 7597 port sets.
///
/// Every slice lies inside `range`, holds no reserved port and overlaps no other slice.
public struct SlicePlan: Hashable, Sendable, Codable {
    public enum Layout: Hashable, Sendable, Codable {
        /// Contiguous slices of this many ports each.
        case portsPerSlice(Int)
        /// This many contiguous slices, each as large as the range allows.
        case sliceCount(Int)
        /// RFC 7597 port sets: 2^k slices, one per PSID, with `a` offset bits.
        case portSets(offsetBits: Int, psidLength: Int)
    }

    public struct Slice: Hashable, Sendable, Codable {
        /// Position in the plan, from 0; stable for a given plan.
        public let index: Int
        public let ports: PortSet
        /// The RFC 7597 PSID for port-set layouts.
        public let psid: Int?
        /// Held back from allocation (the lowest slice, when asked for).
        public let heldBack: Bool
    }

    public let range: PortRange
    public let reserved: PortSet
    public let layout: Layout
    public let slices: [Slice]

    /// Slices that may be handed to hosts.
    public var allocatable: [Slice] { slices.filter { !$0.heldBack } }

    /// Ports of the range that are neither reserved nor in any slice (left over by rounding).
    public var unusedPorts: PortSet {
        PortSet(range).subtracting(reserved).subtracting(PortSet(slices.flatMap(\.ports.runs)))
    }

    /// - Parameters:
    ///   - range: the ports to split; by default 1024-65535.
    ///   - layout: slice size, slice count, or RFC 7597 parameters.
    ///   - reserved: ports that no slice may contain (for example `ip_local_reserved_ports`).
    ///   - holdBackLowest: keep the lowest slice out of allocation.
    /// - Throws: `SlicePlanError` naming the parameter that cannot work and why.
    public init(
        range: PortRange = .nonSystemPorts, layout: Layout, reserved: PortSet = .empty, holdBackLowest: Bool = false
    ) throws(SlicePlanError) {
        self.range = range
        self.reserved = reserved
        self.layout = layout
        let usable = PortSet(range).subtracting(reserved)
        let carved: [(ports: PortSet, psid: Int?)]
        switch layout {
        case .portsPerSlice(let size):
            guard size >= 1 else { throw .badSliceSize(size) }
            carved = Self.carve(usable, size: size).map { ($0, nil) }
            guard !carved.isEmpty else {
                throw .nothingFits(range: range, usablePorts: usable.count, wanted: "a slice of \(size) ports")
            }
        case .sliceCount(let count):
            guard count >= 1 else { throw .badSliceCount(count) }
            guard let size = Self.largestSize(fitting: count, in: usable) else {
                throw .nothingFits(range: range, usablePorts: usable.count, wanted: "\(count) slices")
            }
            carved = Self.carve(usable, size: size).prefix(count).map { ($0, nil) }
        case .portSets(let offsetBits, let psidLength):
            _ = try PortSetID(offsetBits: offsetBits, psidLength: psidLength, psid: 0)
            var sets: [(ports: PortSet, psid: Int?)] = []
            for psid in 0..<(1 << psidLength) {
                let ports = try PortSetID(offsetBits: offsetBits, psidLength: psidLength, psid: psid).ports
                    .intersection(usable)
                if !ports.isEmpty { sets.append((ports, psid)) }
            }
            carved = sets
            guard !carved.isEmpty else {
                throw .nothingFits(range: range, usablePorts: usable.count, wanted: "any RFC 7597 port set")
            }
        }
        slices = carved.enumerated().map { index, slice in
            Slice(index: index, ports: slice.ports, psid: slice.psid, heldBack: holdBackLowest && index == 0)
        }
        if holdBackLowest && slices.count < 2 {
            throw .nothingFits(range: range, usablePorts: usable.count, wanted: "a slice besides the held-back lowest one")
        }
    }

    /// Contiguous slices of `size` ports carved from each run of `usable`, lowest first;
    /// a remainder shorter than `size` is left unused.
    private static func carve(_ usable: PortSet, size: Int) -> [PortSet] {
        var slices: [PortSet] = []
        for run in usable.runs {
            var lower = Int(run.lower)
            while lower + size - 1 <= Int(run.upper) {
                slices.append(PortSet(PortRange(uncheckedLower: UInt16(lower), upper: UInt16(lower + size - 1))))
                lower += size
            }
        }
        return slices
    }

    /// The largest slice size of which `count` slices fit in the runs of `usable`.
    private static func largestSize(fitting count: Int, in usable: PortSet) -> Int? {
        func fits(_ size: Int) -> Bool { usable.runs.reduce(0) { $0 + $1.count / size } >= count }
        var low = 1, high = usable.count / count
        guard high >= 1, fits(low) else { return nil }
        while low < high {
            let middle = (low + high + 1) / 2
            if fits(middle) { low = middle } else { high = middle - 1 }
        }
        return low
    }
}

public enum SlicePlanError: Error, Hashable, Sendable, CustomStringConvertible {
    case badSliceSize(Int)
    case badSliceCount(Int)
    case badPortSetParameters(offsetBits: Int, psidLength: Int)
    case psidOutOfRange(psid: Int, psidLength: Int)
    case nothingFits(range: PortRange, usablePorts: Int, wanted: String)

    public var description: String {
        switch self {
        case .badSliceSize(let size):
            "slice size \(size) must be at least 1 port"
        case .badSliceCount(let count):
            "slice count \(count) must be at least 1"
        case .badPortSetParameters(let a, let k):
            "RFC 7597 parameters a=\(a), k=\(k) are invalid: each must be 0-16 and a + k at most 16"
        case .psidOutOfRange(let psid, let k):
            "PSID \(psid) does not fit in k=\(k) bits (0-\((1 << k) - 1))"
        case .nothingFits(let range, let usable, let wanted):
            "port range \(range) (\(usable) usable ports after reserved ports) cannot hold \(wanted); widen the range or make slices smaller"
        }
    }
}
