import Foundation

/// A small `sh` beside a process the benchmark started: once the benchmark has ended without
/// releasing the watchdog (Ctrl-C, SIGTERM, a crash), it kills the process's whole group
/// (Foundation makes every child the leader of a group of its own; Dante forks a family into
/// it). So nothing a run started outlives it, to answer on its port in the next run or hold
/// its memory. It watches the benchmark's process id (GNU `tail --pid` checks it every second
/// without starting anything) rather than waiting for a pipe to close: every child started
/// later inherits the pipe's end (Foundation's pipes are not closed on exec), which kept it open.
final class Watchdog {
    private let shell: Process
    private let released = Once()

    /// Kills group $1 once process $2 is gone (dash's `kill` takes no `--`).
    private static let script = """
        tail -f /dev/null --pid="$2" 2>/dev/null
        kill -9 "-$1" 2>/dev/null
        exit 0
        """

    /// Starts watching `group`; if the watchdog cannot start, the group is killed at once.
    init(guarding group: Int32) throws {
        shell = Process()
        shell.executableURL = URL(fileURLWithPath: "/bin/sh")
        shell.arguments = ["-c", Self.script, "sh", String(group), String(getpid())]
        shell.standardInput = FileHandle.nullDevice
        shell.standardOutput = FileHandle.nullDevice
        shell.standardError = FileHandle.nullDevice
        do {
            try shell.run()
        } catch {
            kill(-group, SIGKILL)
            throw error
        }
    }

    /// The group is stopped: the watchdog (its own group, `tail` included) ends without
    /// killing anything.
    func release() {
        guard released.claim() else { return }
        kill(-shell.processIdentifier, SIGKILL)
        shell.waitUntilExit()
    }
}

/// A process the benchmark started, with the watchdog that kills its group should the
/// benchmark end before stopping it.
final class GuardedProcess {
    let process: Process
    private let watchdog: Watchdog

    /// Starts `executable` with its output thrown away.
    init(_ executable: String, _ arguments: [String]) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        do {
            watchdog = try Watchdog(guarding: process.processIdentifier)
        } catch {
            process.waitUntilExit()  // killed by the watchdog that could not start
            throw error
        }
    }

    /// The process group's id, which is the process's.
    var group: Int32 { process.processIdentifier }

    /// Stops every one (see `ProxyBenchmark.stop`), then lets their watchdogs go.
    static func stop(_ processes: [GuardedProcess]) {
        ProxyBenchmark.stop(processes.map(\.process))
        for guarded in processes { guarded.watchdog.release() }
    }
}
