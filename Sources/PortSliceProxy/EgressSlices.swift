import NIOCore
import PortSliceCore
import PortSliceSockets
import Synchronization

/// The slices this host may send from now, and the traits of their addresses: where a
/// client's flow leaves from. The address is the egress choice of PortSliceCore (closest
/// traits, the same address for the same client); when its slices are exhausted for a
/// destination, the other addresses with the same closeness are tried in their rank order.
///
/// The set can change while the proxy runs (the host agent gains and loses leases): a slice
/// taken away is used for no new flow from that moment, and the flows already open from it are
/// closed, so nothing more leaves from ports the host no longer holds.
public final class EgressSlices: Sendable {
    /// One picture of the held slices; flows are chosen from the picture current when they start.
    struct Held: Sendable {
        let pool: EgressPool
        let dialers: [IPv4Address: [SliceDialer]]
        /// Counts the pictures: a choice made from this one is still good while it is current.
        let version: UInt64

        static let none = Held(pool: try! EgressPool([]), dialers: [:], version: 0)
    }

    private struct State {
        var held: Held
        /// Open flows by the slice they left from, with what closes each, to close them when
        /// the slice goes.
        var flows: [EgressSlice: [ObjectIdentifier: @Sendable () -> Void]] = [:]
        /// One per held slice, set when the slice goes.
        var revocations: [EgressSlice: SliceRevocation] = [:]
    }

    private let state: Mutex<State>

    /// No slices yet: every flow is refused as exhausted until `replace` brings some.
    public init() {
        state = Mutex(State(held: .none))
    }

    /// Fixed slices whose addresses' traits come from `pool`.
    /// - Throws: `ProxyError` when a slice's address has no traits in `pool`, or the dialer's
    ///   error when a slice cannot be used on this host.
    public convenience init(slices: [EgressSlice], pool: EgressPool) throws {
        let traits = Dictionary(pool.addresses.map { ($0.address, $0.traits) }, uniquingKeysWith: { first, _ in first })
        self.init()
        try replace(with: slices.map { slice in
            guard let known = traits[slice.address] else {
                throw ProxyError("slice \(slice) is on \(slice.address), which the pool file does not list; add its traits there")
            }
            return (slice, known)
        })
    }

    /// Makes `slices` (each with its address's traits) the held set. Slices kept keep their
    /// dialers (and so their port bookkeeping); slices gone are used for no new flow, and
    /// their open flows are closed.
    /// - Throws: the dialer's error when a new slice cannot be used on this host; the held set
    ///   is then unchanged.
    public func replace(with slices: [(slice: EgressSlice, traits: Traits)]) throws {
        let current = state.withLock { $0.held }
        let existing = Dictionary(current.dialers.values.joined().map { ($0.slice, $0) }, uniquingKeysWith: { first, _ in first })
        var dialers: [IPv4Address: [SliceDialer]] = [:]
        var traits: [IPv4Address: Traits] = [:]
        for (slice, sliceTraits) in slices {
            dialers[slice.address, default: []].append(try existing[slice] ?? SliceDialer(slice: slice))
            traits[slice.address] = traits[slice.address] ?? sliceTraits
        }
        let pool = try EgressPool(traits.map { EgressAddress(address: $0.key, traits: $0.value) }.sorted { $0.address < $1.address })
        let kept = Set(slices.map(\.slice))
        let orphaned = state.withLock { state in
            state.held = Held(pool: pool, dialers: dialers, version: state.held.version + 1)
            for (slice, revocation) in state.revocations where !kept.contains(slice) {
                revocation.revoke()
                state.revocations[slice] = nil
            }
            for slice in kept where state.revocations[slice] == nil { state.revocations[slice] = SliceRevocation() }
            let gone = state.flows.keys.filter { !kept.contains($0) }
            return gone.flatMap { state.flows.removeValue(forKey: $0)?.values.map { $0 } ?? [] }
        }
        for close in orphaned { close() }
    }

    var held: Held { state.withLock { $0.held } }

    /// The slices held now.
    public var slices: [EgressSlice] { held.dialers.values.joined().map(\.slice) }

    /// The addresses of the slices held now.
    public var addresses: Set<IPv4Address> { Set(held.dialers.keys) }

    /// Open flows by slice.
    var openFlowCounts: [EgressSlice: Int] { state.withLock { $0.flows.mapValues(\.count) } }

    /// Records the flow `id` from `slice` until `untrack`; `close` ends it (from any thread)
    /// if the slice goes first. - Returns: the slice's revocation, which the flow checks before
    /// it sends; nil, having recorded nothing, when the slice is no longer held (it went while
    /// the flow was dialed).
    func track(_ id: ObjectIdentifier, from slice: EgressSlice, close: @escaping @Sendable () -> Void) -> SliceRevocation? {
        state.withLock { state -> SliceRevocation? in
            guard let revocation = state.revocations[slice] else { return nil }
            state.flows[slice, default: [:]][id] = close
            return revocation
        }
    }

    /// Forgets the flow `id` from `slice` (it closed).
    func untrack(_ id: ObjectIdentifier, from slice: EgressSlice) {
        state.withLock { state in
            state.flows[slice]?[id] = nil
            if state.flows[slice]?.isEmpty == true { state.flows[slice] = nil }
        }
    }

    /// Records a SwiftNIO `channel` as a flow from `slice` until it closes (see `track`).
    func track(_ channel: any Channel, from slice: EgressSlice) -> SliceRevocation? {
        let id = ObjectIdentifier(channel)
        let revocation = track(id, from: slice) { channel.close(promise: nil) }
        if revocation != nil { channel.closeFuture.whenComplete { [self] _ in untrack(id, from: slice) } }
        return revocation
    }
}

/// Set once, when a slice is taken away. Flows check it before they send: their channels
/// close a moment later, on their event loops, and nothing may leave from the slice meanwhile.
final class SliceRevocation: Sendable {
    private let revoked = Atomic<Bool>(false)

    var isRevoked: Bool { revoked.load(ordering: .acquiring) }

    func revoke() { revoked.store(true, ordering: .releasing) }
}

extension EgressSlices.Held {
    /// The address `client` leaves from (PortSliceCore's egress choice) and its slices' dialers.
    func chosen(for client: IPAddress, traits: Traits) -> (address: EgressAddress, dialers: [SliceDialer])? {
        pool.choose(for: client, traits: traits).map { ($0, dialers[$0.address] ?? []) }
    }

    /// Dialers of the other addresses as close to `traits` as `chosen`, in rank order: where
    /// a flow goes when the chosen address's slices are out of ports. Ranking sorts the whole
    /// pool, so it is left for that case rather than done for every flow.
    func alternatives(to chosen: EgressAddress, for client: IPAddress, traits: Traits) -> [SliceDialer] {
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
