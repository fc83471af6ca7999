import Glibc
import Synchronization

/// The one process that serves a SQLite database: held from the store's opening to its close
/// (an exclusive `flock` on `DATABASE-owner` beside the file, which the kernel drops when the
/// process ends, however it ends; the file is removed when the store closes).
///
/// A second allocator on the same file would not fail on its own, but would go wrong quietly:
/// what one process changes the other never hears (long polls woken in process only), and a
/// token rotated or removed through one would still pass in the other's cache of verified
/// tokens until it was pushed out. Replicas share PostgreSQL, which tells every replica.
final class DatabaseOwnership: Sendable {
    private let path: String
    /// The owner file, open and locked until `release`.
    private let held: Mutex<CInt?>

    /// - Throws: `StoreError` naming the file, the process that holds it, and what to do; or
    ///   why the owner file cannot be opened.
    init(databasePath: String) throws {
        path = databasePath + "-owner"
        // An owner that gives the file up removes it: a lock taken on the removed file (opened
        // just before) is on a file no one else opens, so it is taken again on the new one.
        for _ in 0..<3 {
            let descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            guard descriptor >= 0 else {
                throw StoreError("cannot open \(path), which marks who serves the SQLite database: \(String(cString: strerror(errno)))")
            }
            guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
                let failure = errno
                let owner = Self.recordedOwner(descriptor)
                close(descriptor)
                guard failure == EWOULDBLOCK else {
                    throw StoreError("cannot lock \(path), which marks who serves the SQLite database: \(String(cString: strerror(failure)))")
                }
                throw StoreError(
                    "the SQLite database \(databasePath) is in use by \(owner ?? "another process"): a SQLite database serves one "
                        + "allocator. Stop that one, give this one a data directory of its own, or run replicas on PostgreSQL "
                        + "(--database postgres://...)")
            }
            var opened = stat(), named = stat()
            guard fstat(descriptor, &opened) == 0, stat(path, &named) == 0, opened.st_dev == named.st_dev, opened.st_ino == named.st_ino else {
                Self.unlockAndClose(descriptor)
                continue
            }
            // The owner's process ID, for the message above (the lock, not the text, is what counts).
            let text = Array("\(getpid())\n".utf8)
            _ = ftruncate(descriptor, 0)
            _ = text.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
            held = Mutex(descriptor)
            return
        }
        throw StoreError("cannot claim \(path), which marks who serves the SQLite database: it was replaced three times while being locked")
    }

    /// Gives the database up: another process may open it now.
    func release() {
        guard let descriptor = held.withLock({ held in defer { held = nil }; return held }) else { return }
        unlink(path)
        Self.unlockAndClose(descriptor)
    }

    deinit { release() }

    /// Unlocks before closing: a child process this one is starting (between its fork and its
    /// exec) shares the open file, and closing alone would leave the lock held until it execs.
    private static func unlockAndClose(_ descriptor: CInt) {
        _ = flock(descriptor, LOCK_UN)
        close(descriptor)
    }

    private static func recordedOwner(_ descriptor: CInt) -> String? {
        var bytes = [UInt8](repeating: 0, count: 32)
        let count = bytes.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { return nil }
        return Int32(String(decoding: bytes[..<count], as: UTF8.self).prefix { $0.isNumber }).map { "process \($0)" }
    }
}
