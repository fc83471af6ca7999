import Foundation
import Synchronization

/// Scratch files and databases of one test process, named after the process so that what a
/// process left behind once it ended (killed, crashed, or databases on a server that outlives
/// it) is recognised and removed by a later run, never what a run under way is using. Before
/// this, every run of the suite left about 60 SQLite files in the temporary directory and
/// about 30 databases on the PostgreSQL server it was given (a developer's, which keeps them).
public enum ScratchSpace {
    /// This process's directory for scratch files: made on first use, removed when the process
    /// exits. Making it first removes the directories of test processes that have ended.
    public static let directory: URL = {
        let temporary = FileManager.default.temporaryDirectory
        for name in (try? FileManager.default.contentsOfDirectory(atPath: temporary.path)) ?? [] {
            guard let process = processID(in: name, after: directoryPrefix, parts: 1), !isRunning(process) else { continue }
            try? FileManager.default.removeItem(at: temporary.appendingPathComponent(name))
        }
        let directory = temporary.appendingPathComponent(directoryPrefix + "\(getpid())")
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(at: ScratchSpace.directory) }
        return directory
    }()

    /// A path in `directory` that no other caller gets: `prefix`, a unique part, then `suffix`.
    public static func path(_ prefix: String, suffix: String = "") -> String {
        directory.appendingPathComponent("\(prefix)-\(UUID().uuidString)\(suffix)").path
    }

    /// Makes a new, empty database on the server `base` names (a `postgres://` URL of a
    /// database there to connect to) and returns its URL and name. The first call of a process
    /// for a server first drops the databases that ended test processes left on it.
    /// - Throws: `PSQL.Failure` with what `psql` said when it cannot be made.
    public static func database(on base: String) async throws -> (url: String, name: String) {
        try await dropLeftovers(on: base)
        let name = databasePrefix + "\(getpid())_\(UInt32.random(in: 0...UInt32.max))"
        _ = try await PSQL.run(base, "CREATE DATABASE \(name)")
        return (String(base[..<base.lastIndex(of: "/")!]) + "/\(name)", name)
    }

    static let directoryPrefix = "portslice-tests-"
    static let databasePrefix = "portslice_test_"

    /// Per server, the dropping of its leftovers: once per process, and every caller waits for
    /// it, so that one it could not make fails the tests rather than passing unseen.
    private static let cleanups = Mutex<[String: Task<Void, any Error>]>([:])

    private static func dropLeftovers(on base: String) async throws {
        let cleanup = cleanups.withLock { cleanups in
            if let started = cleanups[base] { return started }
            let started = Task {
                let names = try await PSQL.run(base, "SELECT datname FROM pg_database WHERE datname LIKE '\(databasePrefix)%'")
                    .split(separator: "\n").map(String.init)
                for name in names {
                    guard let process = processID(in: name, after: databasePrefix, parts: 2), !isRunning(process) else { continue }
                    // WITH (FORCE): a server left running by a killed run may still be connected.
                    _ = try await PSQL.run(base, "DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
                }
            }
            cleanups[base] = started
            return started
        }
        try await cleanup.value
    }

    /// The process ID in a name made here: `prefix`, then `parts` numbers joined by `_`, the
    /// first of them the ID. Nil for any other name.
    static func processID(in name: String, after prefix: String, parts: Int) -> pid_t? {
        guard name.hasPrefix(prefix) else { return nil }
        let numbers = name.dropFirst(prefix.count).split(separator: "_", omittingEmptySubsequences: false)
        guard numbers.count == parts, numbers.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0.isASCII && $0.isNumber } }) else { return nil }
        return pid_t(numbers[0])
    }

    /// Whether a process with this ID exists (EPERM says it does, another user's).
    static func isRunning(_ process: pid_t) -> Bool {
        kill(process, 0) == 0 || errno == EPERM
    }
}
