import PortSliceCore
import PortSliceSockets

/// The slices this host may send from, and the traits of their addresses: where a client's
/// flow leaves from. The address is the egress choice of PortSliceCore (closest traits, the
/// same address for the same client); when its slices are exhausted for a destination, the
/// other addresses with the same closeness are tried in their rank order.
public final class EgressSlices: Sendable {
    public let pool: EgressPool
    private let dialers: [IPv4Address: [SliceDialer]]

    /// - Throws: `EgressPoolError` when a slice's address has no traits in `pool`, or the
    ///   dialer's error when a slice cannot be used on this host.
    public init(slices: [EgressSlice], pool: EgressPool) throws {
        var dialers: [IPv4Address: [SliceDialer]] = [:]
        let known = Set(pool.addresses.map(\.address))
        for slice in slices {
            guard known.contains(slice.address) else {
                throw ProxyError("slice \(slice) is on \(slice.address), which the pool file does not list; add its traits there")
            }
            dialers[slice.address, default: []].append(try SliceDialer(slice: slice))
        }
        self.pool = try EgressPool(pool.addresses.filter { dialers[$0.address] != nil })
        self.dialers = dialers
    }

    public var addresses: Set<IPv4Address> { Set(dialers.keys) }

    /// Dialers to try for `client`, best first: every slice of the chosen address, then those
    /// of equally close addresses.
    public func candidates(for client: IPAddress, traits: Traits) -> [SliceDialer] {
        let ranked = pool.ranked(for: client, traits: traits)
        guard let best = ranked.first?.closeness else { return [] }
        return ranked.prefix { !($0.closeness < best) }.flatMap { dialers[$0.egress.address] ?? [] }
    }
}

/// A proxy setting or request that cannot be served, worded for the operator or the log.
public struct ProxyError: Error, Hashable, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
