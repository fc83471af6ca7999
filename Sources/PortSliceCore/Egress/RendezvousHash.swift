/// Highest-random-weight hashing with a fixed function, so every process and every release
/// gives a client the same weights (Swift's `Hasher` is seeded per process and cannot be used).
enum RendezvousHash {
    /// MurmurHash3's 64-bit finalizer: every input bit affects every output bit.
    @inline(__always)
    static func mix(_ value: UInt64) -> UInt64 {
        var x = value
        x ^= x >> 33
        x &*= 0xff51_afd7_ed55_8ccd
        x ^= x >> 33
        x &*= 0xc4ce_b9fe_1a85_ec53
        x ^= x >> 33
        return x
    }

    static func key(_ address: IPv4Address) -> UInt64 {
        mix(UInt64(address.bits) ^ 0x9e37_79b9_7f4a_7c15)
    }

    static func key(_ client: IPAddress) -> UInt64 {
        switch client {
        case .v4(let address):
            return mix(UInt64(address.bits) &+ 0x6a09_e667_f3bc_c909)
        case .v6(let address):
            if let mapped = address.ipv4Mapped { return key(.v4(mapped)) }
            let high = UInt64(truncatingIfNeeded: address.bits >> 64)
            let low = UInt64(truncatingIfNeeded: address.bits)
            return mix(high ^ mix(low &+ 0xbb67_ae85_84ca_a73b))
        }
    }

    @inline(__always)
    static func weight(client: UInt64, target: UInt64) -> UInt64 {
        mix(client ^ target)
    }
}

extension RendezvousHash {
    /// FNV-1a over the UTF-8 bytes, mixed: a stable key for a host name.
    static func key(name: String) -> UInt64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in name.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        return mix(hash)
    }
}

extension RendezvousHash {
    /// A stable key for an IPv6 pool prefix: its network and length.
    static func key(_ prefix: IPv6Prefix) -> UInt64 {
        mix(key(.v6(prefix.network)) ^ UInt64(prefix.length))
    }
}
