import Foundation
import Synchronization

/// A server the benchmark runs as a child process, so its CPU can be read on its own from
/// `/proc/PID/stat` and none of the load generator's is counted with it.
///
/// A `Watchdog` kills it if the benchmark ends without stopping it (Ctrl-C, a crash), so no
/// server outlives the run. Servers are stopped with SIGKILL, because a child started from a
/// Swift concurrency thread inherits its blocked SIGTERM.
final class ServerProcess {
    let pid: Int32
    let port: Int
    let name: String
    private let server: Process
    private let watchdog: Watchdog
    private let stopped = Once()

    private init(server: Process, port: Int, name: String, watchdog: Watchdog) {
        pid = server.processIdentifier
        self.port = port
        self.name = name
        self.server = server
        self.watchdog = watchdog
    }

    /// Starts `executable arguments` and waits (up to 60 s) for it to print `listening on HOST:PORT`.
    /// - Parameter log: the file its standard error goes to.
    static func start(
        _ executable: String, _ arguments: [String], environment: [String: String], log: String, name: String
    ) async throws -> ServerProcess {
        let server = Process()
        server.executableURL = URL(fileURLWithPath: executable)
        server.arguments = arguments
        // The caller's PORTSLICE_* settings (a config file, a pool, a database) are not the run's.
        server.environment = ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("PORTSLICE_") }.merging(environment) { $1 }
        let output = Pipe()
        server.standardInput = FileHandle.nullDevice
        server.standardOutput = output
        guard FileManager.default.createFile(atPath: log, contents: nil), let errors = FileHandle(forWritingAtPath: log) else {
            throw BenchmarkFailure("cannot write \(log)")
        }
        server.standardError = errors
        try server.run()
        try? errors.close()

        let watchdog: Watchdog
        do {
            watchdog = try Watchdog(guarding: server.processIdentifier)
        } catch {
            server.waitUntilExit()  // killed by the watchdog that could not start
            throw error
        }

        let reported = Once()
        let port: Int
        do {
            port = try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Int, any Error>) in
                let reader = output.fileHandleForReading
                // Reads standard output to its end (so the server never blocks on a full
                // pipe), reporting the port once it has been printed.
                Thread {
                    var text = ""
                    var found = false
                    while true {
                        let chunk = reader.availableData
                        if chunk.isEmpty { break }
                        guard !found else { continue }
                        text += String(decoding: chunk, as: UTF8.self)
                        for line in text.split(separator: "\n") {
                            guard let range = line.range(of: "listening on "),
                                  let address = line[range.upperBound...].split(separator: " ").first,
                                  let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]),
                                  reported.claim() else { continue }
                            found = true
                            continuation.resume(returning: port)
                            break
                        }
                    }
                    if reported.claim() {
                        let tail = (try? String(contentsOfFile: log, encoding: .utf8))?.suffix(1_500) ?? ""
                        continuation.resume(throwing: BenchmarkFailure("\(name) exited before listening; its log (\(log)) ends: \(tail)"))
                    }
                }.start()
                // A server that neither listens nor exits is killed, which ends the reading.
                let pid = server.processIdentifier
                DispatchQueue.global().asyncAfter(deadline: .now() + 60) {
                    if !reported.isClaimed { kill(pid, SIGKILL) }
                }
            }
        } catch {
            halt(server, watchdog: watchdog)
            throw error
        }
        return ServerProcess(server: server, port: port, name: name, watchdog: watchdog)
    }

    var base: String { "http://127.0.0.1:\(port)" }

    /// Kills the server and waits until it is gone; then lets the watchdog go.
    func stop() {
        guard stopped.claim() else { return }
        Self.halt(server, watchdog: watchdog)
    }

    private static func halt(_ server: Process, watchdog: Watchdog) {
        if server.isRunning { kill(server.processIdentifier, SIGKILL) }
        server.waitUntilExit()
        watchdog.release()
    }

    deinit { stop() }
}

/// Something that happens once, whoever gets there first.
final class Once: Sendable {
    private let done = Mutex(false)

    var isClaimed: Bool { done.withLock { $0 } }

    /// True for the first caller only.
    func claim() -> Bool {
        done.withLock { done in
            defer { done = true }
            return !done
        }
    }
}

/// CPU time of processes, from `/proc`.
enum ProcessCPU {
    /// User plus system CPU seconds of a process, its ended threads included; nil once it is gone.
    static func seconds(of pid: Int32) -> Double? {
        stat(pid).map { $0.seconds }
    }

    /// CPU seconds of each process of the PostgreSQL server on this machine that works for
    /// `database`: the backends and autovacuum workers of that database, and the server's
    /// shared processes (postmaster, WAL writer, checkpointer, background writer, launchers),
    /// which work for every database. Backends of other databases are left out, so other
    /// work on the same server counts only through the shared processes.
    static func postgres(database: String) -> [Int32: Double] {
        var result: [Int32: Double] = [:]
        for pid in processIDs {
            guard let stat = stat(pid), stat.command == "postgres",
                  let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { continue }
            let title = String(decoding: data.map { $0 == 0 ? 32 : $0 }, as: UTF8.self).trimmingCharacters(in: .whitespaces)
            if let servedDatabase = servedDatabase(title), servedDatabase != database { continue }
            result[pid] = stat.seconds
        }
        return result
    }

    /// The database a PostgreSQL process title names, for a backend ("postgres: USER DB
    /// HOST(PORT) STATE" or "... [local] ...") or an autovacuum worker; nil for the others.
    static func servedDatabase(_ title: String) -> String? {
        guard title.hasPrefix("postgres: ") else { return nil }
        var words = title.dropFirst("postgres: ".count).split(separator: " ").map(String.init)
        // With cluster_name set, the title starts with "NAME:".
        if let first = words.first, first.hasSuffix(":") { words.removeFirst() }
        if words.count >= 3, words[0] == "autovacuum", words[1] == "worker" { return words[2] }
        if words.count >= 3, words[2] == "[local]" || (words[2].hasSuffix(")") && words[2].contains("(")) { return words[1] }
        return nil
    }

    /// CPU seconds spent since `before` by the processes of `after` (processes that started
    /// in between count whole).
    static func spent(from before: [Int32: Double], to after: [Int32: Double]) -> Double {
        after.reduce(0) { $0 + $1.value - (before[$1.key] ?? 0) }
    }

    /// A process's command name, process group and user and system CPU seconds (its ended
    /// threads included), from `/proc/PID/stat`; nil once it is gone.
    static func record(of pid: Int32) -> (command: String, group: Int32, user: Double, system: Double)? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let nameStart = stat.firstIndex(of: "("), let nameEnd = stat.lastIndex(of: ")") else { return nil }
        // The fields after the name (which may hold spaces) count from field 3: the group is
        // field 5, utime and stime fields 14 and 15.
        let fields = stat[stat.index(after: nameEnd)...].split(separator: " ")
        guard fields.count > 12, let group = Int32(fields[2]), let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        return (String(stat[stat.index(after: nameStart)..<nameEnd]), group, user / ticks, system / ticks)
    }

    /// User plus system CPU seconds used so far by this process, all its threads included.
    static func ownSeconds() -> Double {
        let usage = ownUsage()
        return usage.user + usage.system
    }

    /// User and system CPU seconds used so far by this process, all its threads included.
    static func ownUsage() -> (user: Double, system: Double) {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return (Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6, Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6)
    }

    /// Every process on the machine, by id.
    static var processIDs: [Int32] {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap(Int32.init) ?? []
    }

    private static func stat(_ pid: Int32) -> (command: String, seconds: Double)? {
        record(of: pid).map { ($0.command, $0.user + $0.system) }
    }
}

/// Memory of processes, from `/proc`.
enum ProcessMemory {
    /// Kilobytes resident (`VmRSS`) and proportional set size (`Pss`: a page shared by n
    /// processes counts 1/n in each), summed over the processes of process group `group`.
    /// RSS counts the shared libraries and copy-on-write pages of a forked family once per
    /// process, so for a proxy of many processes (Dante) only PSS adds up to what it costs.
    static func kilobytes(ofGroup group: Int32) -> (resident: Int, proportional: Int) {
        ProcessCPU.processIDs.filter { ProcessCPU.record(of: $0)?.group == group }.reduce((resident: 0, proportional: 0)) { sum, pid in
            let resident = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)).flatMap { kilobytes(of: "VmRSS", in: $0) }
            let proportional = (try? String(contentsOfFile: "/proc/\(pid)/smaps_rollup", encoding: .utf8)).flatMap { kilobytes(of: "Pss", in: $0) }
            return (sum.resident + (resident ?? 0), sum.proportional + (proportional ?? 0))
        }
    }

    /// The value of a `NAME:   1234 kB` line of a `/proc` text (`status`, `smaps_rollup`); nil
    /// when there is no such line (a kernel thread or a zombie has no `VmRSS`).
    static func kilobytes(of field: String, in text: String) -> Int? {
        for line in text.split(separator: "\n") where line.hasPrefix(field + ":") {
            let words = line.dropFirst(field.count + 1).split(whereSeparator: \.isWhitespace)
            guard words.count == 2, words[1] == "kB" else { return nil }
            return Int(words[0])
        }
        return nil
    }
}
