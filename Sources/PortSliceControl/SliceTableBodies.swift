import Foundation
import NIOCore
import NIOPosix
import PortSliceCore
import Synchronization

/// The whole slice table as JSON, made once per table version however many callers ask for it.
///
/// Every edge (and every open console) long-polls the whole table; a change wakes them all at
/// once, and each would encode the same table again: at 31,000 slices that is about 150 ms of
/// CPU per caller (3.6 ms to send the kept one), so a thousand edges would cost two and a half
/// minutes of CPU per change. The first
/// caller of a version starts the encoding and the others wait for it. The encoding runs on
/// SwiftNIO's blocking-work thread pool, not in the request's task: `serve` runs its tasks on
/// the event loops, and a loop busy encoding reads nothing from its other connections.
final class SliceTableBodies: Sendable {
    private let latest = Mutex<(version: Int64, body: Task<ByteBuffer, any Error>)?>(nil)
    private let made = Atomic<Int>(0)

    /// How many times a table was encoded (the tests' check that callers share them).
    var encodings: Int { made.load(ordering: .relaxed) }

    /// The JSON of `table`: the kept one when it is of the same version (a version names one
    /// content of the table), else made now.
    func body(of table: SliceTable) async throws -> ByteBuffer {
        let making = latest.withLock { latest -> Task<ByteBuffer, any Error> in
            if let latest, latest.version == table.version { return latest.body }
            let making = Task {
                self.made.add(1, ordering: .relaxed)
                return try await NIOThreadPool.singleton.runIfActive { ByteBuffer(bytes: try JSONEncoder().encode(table)) }
            }
            // A caller holding an older table (it read before the change) does not replace a newer one.
            if (latest?.version ?? .min) < table.version { latest = (table.version, making) }
            return making
        }
        do {
            return try await making.value
        } catch {
            // Not kept: the next caller tries again (the pool was stopping, say).
            latest.withLock { if $0?.version == table.version { $0 = nil } }
            throw error
        }
    }
}
