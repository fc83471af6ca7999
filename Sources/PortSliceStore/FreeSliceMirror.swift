import PortSliceCore
import Synchronization

/// On SQLite, the free slices as the writer's memory holds them, so that an acquire places
/// without reading them: the free slices per trait class, the addresses of a class and an
/// address's lowest free slices were three statements and their rows' decoding in every
/// acquire: without them the writer spent 12-23% less time per acquire, in paired runs.
///
/// SQLite's update hook (`SQLiteConnectionAdapter.watchRows`) tells it of every change to
/// `free_counts`, which the database's triggers make whenever a slice becomes free or stops
/// being free, however that happens (an acquire, a quarantine's end, an address added, drained
/// or removed, a statement run by hand on the connection): such an address is read again
/// before the next placement. The acquire's own grants are applied here directly
/// (`granted`). A transaction rolled back forgets everything (`forget`), and the next
/// placement reads every address again. Valid only while this connection is the file's one
/// writer, which `DatabaseOwnership` ensures.
final class FreeSliceMirror: Sendable {
    /// One address: its trait class (the stored text of its traits) and its free slices by index.
    struct Address {
        let traits: String
        var free: [(index: Int, ports: PortSet)]
    }

    /// What must be read from the database before the next placement.
    enum Staleness {
        case none
        case addresses([IPv4Address])
        case everything
    }

    /// A trait class: its free slices, and its addresses that have any, with how many.
    private struct TraitClass {
        var free = 0
        var freeByAddress: [IPv4Address: Int] = [:]
    }

    private struct State {
        var loaded = false
        var addresses: [IPv4Address: Address] = [:]
        var classes: [String: TraitClass] = [:]
        /// Addresses whose free slices changed since they were read.
        var changed: Set<IPv4Address> = []
    }

    private let state = Mutex(State())

    /// More changed addresses than this are read again by reading everything.
    static let mostAddressesReadAgain = 32

    /// Called by the update hook with a changed `free_counts` row's rowid, its address.
    func rowChanged(_ rowid: Int64) {
        let address = IPv4Address(bits: UInt32(truncatingIfNeeded: rowid))
        state.withLock { _ = $0.changed.insert(address) }
    }

    func forget() {
        state.withLock { $0 = State() }
    }

    var staleness: Staleness {
        state.withLock { state in
            if !state.loaded || state.changed.count > Self.mostAddressesReadAgain { return .everything }
            return state.changed.isEmpty ? .none : .addresses(state.changed.sorted { $0.bits < $1.bits })
        }
    }

    /// Every address, as just read: `read` holds each address with a `free_counts` row and its
    /// free slices (none for an address that has none).
    func replaceAll(with read: [IPv4Address: Address]) {
        state.withLock { state in
            state = State()
            state.loaded = true
            for (address, entry) in read { Self.put(address, entry, into: &state) }
        }
    }

    /// `addresses`, as just read: those missing from `read` are gone from the pool.
    func replace(_ addresses: [IPv4Address], with read: [IPv4Address: Address]) {
        state.withLock { state in
            for address in addresses {
                Self.remove(address, from: &state)
                if let entry = read[address] { Self.put(address, entry, into: &state) }
                state.changed.remove(address)
            }
        }
    }

    /// Trait classes that have a free slice, with how many.
    func freeByClass() -> [(traits: String, free: Int)] {
        state.withLock { state in state.classes.compactMap { $0.value.free > 0 ? ($0.key, $0.value.free) : nil } }
    }

    /// The addresses of the class `traits` that have a free slice, with how many.
    func addresses(in traits: String) -> [IPv4Address: Int] {
        state.withLock { $0.classes[traits]?.freeByAddress ?? [:] }
    }

    /// The lowest `count` free slices of `address`, in index order.
    func lowestFree(of address: IPv4Address, count: Int) -> [(slice: SliceID, ports: PortSet)] {
        state.withLock { state in
            (state.addresses[address]?.free.prefix(count) ?? []).map { (SliceID(address: address, index: $0.index), $0.ports) }
        }
    }

    /// `slices`, just leased by the statement that changed their addresses' `free_counts` rows:
    /// no longer free. The hook's marks of those rows are this statement's own, since the
    /// addresses were read after every earlier statement of the transaction.
    func granted(_ slices: [SliceID]) {
        state.withLock { state in
            for slice in slices {
                guard let traits = state.addresses[slice.address]?.traits,
                      let position = state.addresses[slice.address]?.free.firstIndex(where: { $0.index == slice.index }) else { continue }
                state.addresses[slice.address]?.free.remove(at: position)
                Self.count(-1, of: slice.address, in: traits, &state)
                state.changed.remove(slice.address)
            }
        }
    }

    private static func put(_ address: IPv4Address, _ entry: Address, into state: inout State) {
        state.addresses[address] = entry
        count(entry.free.count, of: address, in: entry.traits, &state)
    }

    private static func remove(_ address: IPv4Address, from state: inout State) {
        guard let entry = state.addresses.removeValue(forKey: address) else { return }
        count(-entry.free.count, of: address, in: entry.traits, &state)
    }

    /// Moves the free slices counted for `address` in its class `traits` by `change`.
    private static func count(_ change: Int, of address: IPv4Address, in traits: String, _ state: inout State) {
        guard change != 0 else { return }
        state.classes[traits, default: TraitClass()].free += change
        let free = state.classes[traits]!.freeByAddress[address, default: 0] + change
        state.classes[traits]!.freeByAddress[address] = free > 0 ? free : nil
    }
}
