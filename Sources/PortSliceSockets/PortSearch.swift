import PortSliceCore
import Synchronization

/// The order in which to try the ports of a slice for one destination, in the manner of
/// RFC 6056 algorithm 4 (double-hash port selection): a keyed hash of the destination picks
/// the starting offset, so ports are neither guessable nor sequential per destination, and a
/// perturbation table advanced by every attempt makes the next search for the same
/// destination start past the ports just taken.
///
/// It also remembers, for a short while, which ports sock_diag reported busy towards each
/// destination, so that in a nearly full slice the next search skips them instead of asking
/// again. The memory only ever skips ports: a search that finds nothing new asks about every
/// port once more before it calls the slice exhausted.
final class PortSearch: Sendable {
    /// The candidate ports, ascending; the search maps an index to a port through the runs.
    let ports: PortSet
    private let runStarts: [Int]
    private let secret: (UInt64, UInt64)
    private let state: Mutex<State>
    private static let tableSize = 4096
    /// How long a port reported busy is skipped without asking again.
    static let busyMemoryLifetime = Duration.seconds(1)
    /// Destinations remembered at once; past this the memory starts afresh.
    private static let busyMemoryLimit = 4096

    private struct State {
        var perturbation: [UInt32]
        var busy: [Destination: BusyPorts] = [:]
    }

    fileprivate struct Destination: Hashable {
        let transport: Transport
        let endpoint: Endpoint
    }

    /// Positions (indexes into the slice's ports) reported busy since `since`.
    private struct BusyPorts {
        let since: ContinuousClock.Instant
        var bits: [UInt64]
    }

    init(ports: PortSet) {
        self.ports = ports
        var starts: [Int] = []
        var total = 0
        for run in ports.runs {
            starts.append(total)
            total += run.count
        }
        runStarts = starts
        var random = SystemRandomNumberGenerator()
        secret = (random.next(), random.next())
        state = Mutex(State(perturbation: [UInt32](repeating: 0, count: Self.tableSize)))
    }

    var count: Int { ports.count }

    /// Where one search starts, and the ports known busy for its destination.
    struct Order: Sendable {
        fileprivate let destination: Destination
        let offset: Int
        let tableIndex: Int
        let base: UInt32
        fileprivate let busy: [UInt64]

        /// The position in the slice of the port tried at `attempt`.
        func position(_ attempt: Int, count: Int) -> Int { (offset + Int(base) + attempt) % count }
    }

    func order(_ transport: Transport, from local: IPv4Address, to destination: Endpoint) -> Order {
        func keyed(_ key: UInt64) -> Int {
            var hasher = Hasher()
            hasher.combine(key)
            hasher.combine(transport)
            hasher.combine(local.bits)
            hasher.combine(destination.address.bits)
            hasher.combine(destination.port)
            return hasher.finalize()
        }
        let offset = Int(UInt(bitPattern: keyed(secret.0)) % UInt(max(count, 1)))
        let index = Int(UInt(bitPattern: keyed(secret.1)) % UInt(Self.tableSize))
        let key = Destination(transport: transport, endpoint: destination)
        let now = ContinuousClock.now
        return state.withLock { state in
            var busy: [UInt64] = []
            if let memory = state.busy[key] {
                if now - memory.since < Self.busyMemoryLifetime { busy = memory.bits } else { state.busy[key] = nil }
            }
            return Order(destination: key, offset: offset, tableIndex: index, base: state.perturbation[index], busy: busy)
        }
    }

    /// The port tried at `attempt` (0-based) of a search.
    func port(_ order: Order, attempt: Int) -> UInt16 {
        let position = order.position(attempt, count: count)
        var low = 0, high = runStarts.count - 1
        while low < high {
            let middle = (low + high + 1) / 2
            if runStarts[middle] <= position { low = middle } else { high = middle - 1 }
        }
        return UInt16(Int(ports.runs[low].lower) + position - runStarts[low])
    }

    /// True when the port of `attempt` was reported busy towards this destination lately.
    func knownBusy(_ order: Order, attempt: Int) -> Bool {
        guard !order.busy.isEmpty else { return false }
        let position = order.position(attempt, count: count)
        return order.busy[position >> 6] & (1 << UInt64(position & 63)) != 0
    }

    /// Remembers the ports of these attempts as busy towards the order's destination.
    func rememberBusy(_ order: Order, attempts: [Int]) {
        guard !attempts.isEmpty else { return }
        let now = ContinuousClock.now
        state.withLock { state in
            if state.busy.count >= Self.busyMemoryLimit { state.busy.removeAll(keepingCapacity: true) }
            var memory = state.busy[order.destination].flatMap { now - $0.since < Self.busyMemoryLifetime ? $0 : nil }
                ?? BusyPorts(since: now, bits: [UInt64](repeating: 0, count: (count + 63) / 64))
            for attempt in attempts {
                let position = order.position(attempt, count: count)
                memory.bits[position >> 6] |= 1 << UInt64(position & 63)
            }
            state.busy[order.destination] = memory
        }
    }

    /// Advances the perturbation table by the attempts a search used.
    func finish(_ order: Order, attempts: Int) {
        state.withLock { $0.perturbation[order.tableIndex] &+= UInt32(truncatingIfNeeded: attempts) }
    }
}
