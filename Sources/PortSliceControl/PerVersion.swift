import NIOCore
import NIOPosix
import Synchronization

/// One value per slice-table version, made once, by the first caller of that version, on
/// SwiftNIO's blocking-work thread pool; every other caller of the version waits for it and
/// shares it. Only the newest version's value is kept, and a caller holding an older table is
/// given it (a newer answer is always a right one for a table that only moves forward).
///
/// Every edge and open console long-polls the whole table, and every host guard its own part:
/// a change wakes them all at once, and each would make the same answer again (encoding the
/// whole table takes about 150 ms of CPU at 31,000 slices, 3.6 ms to send the kept one; a
/// thousand edges would spend two and a half minutes of CPU per change). The making runs off
/// the request's task because `serve` runs its tasks on the event loops, and a loop busy
/// encoding reads nothing from its other connections.
final class PerVersion<Value: Sendable>: Sendable {
    private let latest = Mutex<(version: Int64, value: Task<Value, any Error>)?>(nil)
    private let made = Atomic<Int>(0)
    /// Whether a value is made from the one before it (then it waits for that one).
    private let buildsOnPrevious: Bool

    init(buildsOnPrevious: Bool = false) {
        self.buildsOnPrevious = buildsOnPrevious
    }

    /// How many values were made (the tests' check that callers share them).
    var makings: Int { made.load(ordering: .relaxed) }

    /// The value for `version` (or a newer one): the kept one when it is of that version or
    /// newer, else made by `make`, which is given the kept value of an older version when the
    /// cache builds on previous values.
    func value(for version: Int64, make: @escaping @Sendable (_ previous: Value?) throws -> Value) async throws -> Value {
        let making = latest.withLock { latest -> Task<Value, any Error> in
            if let latest, latest.version >= version { return latest.value }
            let previous = buildsOnPrevious ? latest?.value : nil
            let making = Task {
                let before = try? await previous?.value
                self.made.add(1, ordering: .relaxed)
                return try await NIOThreadPool.singleton.runIfActive { try make(before) }
            }
            latest = (version, making)
            return making
        }
        do {
            return try await making.value
        } catch {
            // Not kept: the next caller tries again (the pool was stopping, say).
            latest.withLock { if $0?.version == version { $0 = nil } }
            throw error
        }
    }
}
