import PortSliceCore
import Synchronization

/// The order in which to try the ports of a slice for one destination, in the manner of
/// RFC 6056 algorithm 4 (double-hash port selection): a keyed hash of the destination picks
/// the starting offset, so ports are neither guessable nor sequential per destination, and a
/// perturbation table advanced by every attempt makes the next search for the same
/// destination start past the ports just taken.
final class PortSearch: Sendable {
    /// The candidate ports, ascending; the search maps an index to a port through the runs.
    let ports: PortSet
    private let runStarts: [Int]
    private let secret: (UInt64, UInt64)
    private let perturbation: Mutex<[UInt32]>
    private static let tableSize = 4096

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
        perturbation = Mutex([UInt32](repeating: 0, count: Self.tableSize))
    }

    var count: Int { ports.count }

    /// Where one search starts.
    struct Order: Sendable {
        let offset: Int
        let tableIndex: Int
        let base: UInt32
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
        return Order(offset: offset, tableIndex: index, base: perturbation.withLock { $0[index] })
    }

    /// The port tried at `attempt` (0-based) of a search.
    func port(_ order: Order, attempt: Int) -> UInt16 {
        let position = (order.offset + Int(order.base) + attempt) % count
        var low = 0, high = runStarts.count - 1
        while low < high {
            let middle = (low + high + 1) / 2
            if runStarts[middle] <= position { low = middle } else { high = middle - 1 }
        }
        return UInt16(Int(ports.runs[low].lower) + position - runStarts[low])
    }

    /// Advances the table by the attempts a search used.
    func finish(_ order: Order, attempts: Int) {
        perturbation.withLock { $0[order.tableIndex] &+= UInt32(truncatingIfNeeded: attempts) }
    }
}
