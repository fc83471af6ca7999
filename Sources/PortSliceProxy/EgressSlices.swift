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

    /// The address `client` leaves from (PortSliceCore's egress choice) and its slices' dialers.
    public func chosen(for client: IPAddress, traits: Traits) -> (address: EgressAddress, dialers: [SliceDialer])? {
        pool.choose(for: client, traits: traits).map { ($0, dialers[$0.address] ?? []) }
    }

    /// Dialers of the other addresses as close to `traits` as `chosen`, in rank order: where
    /// a flow goes when the chosen address's slices are out of ports. Ranking sorts the whole
    /// pool, so it is left for that case rather than done for every flow.
    public func alternatives(to chosen: EgressAddress, for client: IPAddress, traits: Traits) -> [SliceDialer] {
        let best = Closeness(of: chosen.traits, to: traits)
        return pool.ranked(for: client, traits: traits)
            .prefix { !($0.closeness < best) }
            .filter { $0.egress.address != chosen.address }
            .flatMap { dialers[$0.egress.address] ?? [] }
    }
}

/// A proxy setting or request that cannot be served, worded for the operator or the log.
public struct ProxyError: Error, Hashable, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
