/// An RFC 7597 (MAP-E) port set, section 5.1: a port is `A | PSID | j` with `a` offset bits,
/// a PSID of `k` bits and `m = 16 - a - k` contiguous bits. `A` runs from 1 to 2^a - 1, which
/// leaves out the system ports; with `a = 0` every set is one contiguous block.
public struct PortSetID: Hashable, Sendable, Codable, CustomStringConvertible {
    public let offsetBits: Int
    public let psidLength: Int
    public let psid: Int

    public init(offsetBits: Int, psidLength: Int, psid: Int) throws(SlicePlanError) {
        guard (0...16).contains(offsetBits), (0...16).contains(psidLength), offsetBits + psidLength <= 16 else {
            throw .badPortSetParameters(offsetBits: offsetBits, psidLength: psidLength)
        }
        guard (0..<(1 << psidLength)).contains(psid) else {
            throw .psidOutOfRange(psid: psid, psidLength: psidLength)
        }
        self.offsetBits = offsetBits
        self.psidLength = psidLength
        self.psid = psid
    }

    /// `m`: the number of low bits that vary inside one run.
    public var contiguousBits: Int { 16 - offsetBits - psidLength }

    public var ports: PortSet {
        let m = contiguousBits
        let runLength = 1 << m
        let firstA = offsetBits == 0 ? 0 : 1
        let lastA = (1 << offsetBits) - 1
        guard firstA <= lastA else { return .empty }
        let runs = (firstA...lastA).map { a in
            let lower = a << (16 - offsetBits) | psid << m
            return PortRange(uncheckedLower: UInt16(lower), upper: UInt16(lower + runLength - 1))
        }
        return PortSet(runs)
    }

    public var description: String {
        "PSID 0x\(String(psid, radix: 16)) (a=\(offsetBits), k=\(psidLength))"
    }
}
