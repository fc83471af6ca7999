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
    private let tables: Mutex<Tables>
    /// The perturbation counters, and the length of the last search that used each counter
    /// (how full the slice looked then), both indexed by the destination's hash.
    private struct Tables {
        var perturbation: [UInt32]
        var lastSearchLength: [UInt8]
    }
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
        tables = Mutex(Tables(
            perturbation: [UInt32](repeating: 0, count: Self.tableSize),
            lastSearchLength: [UInt8](repeating: 1, count: Self.tableSize)))
    }

    var count: Int { ports.count }

    /// Where one search starts.
    struct Order: Sendable {
        let offset: Int
        let tableIndex: Int
        let base: UInt32
        /// Ports the previous search towards this destination tried before it found one.
        let lastSearchLength: Int
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
        return tables.withLock { tables in
            Order(offset: offset, tableIndex: index, base: tables.perturbation[index],
                  lastSearchLength: Int(tables.lastSearchLength[index]))
        }
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

    /// Advances the table by the attempts a search used, and remembers how many it took.
    func finish(_ order: Order, attempts: Int) {
        tables.withLock { tables in
            tables.perturbation[order.tableIndex] &+= UInt32(truncatingIfNeeded: attempts)
            tables.lastSearchLength[order.tableIndex] = UInt8(clamping: attempts)
        }
    }
}
