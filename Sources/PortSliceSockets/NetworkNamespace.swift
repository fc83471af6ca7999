import Foundation
import Synchronization
import SystemPackage

/// Runs code inside a Linux network namespace. A namespace belongs to a thread, so the code
/// runs on a thread of its own that enters the namespace first; sockets it opens stay in that
/// namespace after the thread ends.
public enum NetworkNamespace {
    /// The file `ip netns add NAME` creates.
    public static func path(named name: String) -> String { "/run/netns/\(name)" }

    /// Runs `body` in the namespace at `path` and returns its result.
    /// - Throws: `HostNetworkError` when the namespace cannot be opened, `DialError` when it
    ///   cannot be entered (entering needs CAP_SYS_ADMIN), or what `body` throws.
    public static func run<T: Sendable>(at path: String, _ body: @escaping @Sendable () throws -> T) throws -> T {
        let namespace: FileDescriptor
        do { namespace = try FileDescriptor.open(FilePath(path), .readOnly) } catch {
            throw HostNetworkError.unreadable(path: path, reason: "\(error)")
        }
        defer { try? namespace.close() }
        let descriptor = namespace.rawValue
        return try OwnThread.run {
            if case .failure(let errno) = Syscalls.enterNetworkNamespace(descriptor) { throw DialError.from(.setns, errno) }
            return try body()
        }
    }
}

/// Runs work that changes the thread it runs on (its network namespace, its CPUs), which must
/// never befall a thread of Swift's shared pool: on a thread of its own, waited for.
enum OwnThread {
    static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) throws -> T {
        let outcome = Mutex<Result<T, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        Thread {
            outcome.withLock { $0 = Result { try body() } }
            done.signal()
        }.start()
        done.wait()
        return try outcome.withLock { $0! }.get()
    }
}
