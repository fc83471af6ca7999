import ArgumentParser
import Foundation
import Glibc
import PortSliceProxy

/// `portslice users`: the proxy's users file (--users), of NAME:HASH lines with bcrypt hashes.
struct UsersCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "users",
        abstract: "Add, remove and list the proxy's users (the file given to `proxy` and `agent` as --users).",
        discussion: """
            Each line is NAME:HASH, a bcrypt hash of the user's password; blank lines and lines \
            starting with # are kept as they are. The proxy reads the file when it starts: \
            restart it after a change.

            Example:
              portslice users add alice --file users.txt      # asks for the password twice
              printf '%s\\n' "$PASSWORD" | portslice users add bob --file users.txt
              portslice users list --file users.txt
              portslice proxy --slice 203.0.113.10:20000-21999 --pool pool.csv --users users.txt --listen 0.0.0.0:1080
            """,
        subcommands: [UsersAddCommand.self, UsersRemoveCommand.self, UsersListCommand.self]
    )
}

/// The users file a `users` subcommand works on.
struct UsersFileOption: ParsableArguments {
    @Option(help: ArgumentHelp("The users file.", valueName: "file"))
    var file: String
}

struct UsersAddCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add",
        abstract: "Set a user's password: adds the user, or replaces the password of one already there.",
        discussion: """
            On a terminal it asks for the password twice without showing it; otherwise it reads \
            one line from standard input. The password must be 1 to 72 bytes: bcrypt reads no \
            more than 72, so anything after them would not be checked. The file is created \
            (readable by its owner only) if it does not exist, and replaced in one step.

            Example: portslice users add alice --file users.txt
            """
    )

    @Argument(help: ArgumentHelp("The user's name: 1 to 255 bytes, no ':' and no control characters.", valueName: "name"))
    var name: String

    @OptionGroup var users: UsersFileOption

    @Option(help: ArgumentHelp("bcrypt's work factor: 2^COST rounds; each step doubles the time a check takes (12: about 0.25 s).", valueName: "cost"))
    var cost = ProxyUsers.defaultCost

    /// Below 10 a stolen file is cheap to guess; above 16 every check that is not remembered
    /// holds a client for seconds.
    static let costs = 10...16

    func validate() throws {
        if let problem = UserNameProblem(of: name) { throw ValidationError("the name \(problem)") }
        guard Self.costs.contains(cost) else { throw ValidationError("--cost \(cost) is out of range; give \(Self.costs.lowerBound) to \(Self.costs.upperBound)") }
    }

    func run() throws {
        var file = try UsersFile(path: users.file)
        let password = try readNewPassword(for: name)
        let hash: String
        do { hash = try ProxyUsers.hash(password: password, cost: cost) } catch { throw CommandFailure("\(error); nothing was changed") }
        let replaced = file.set(name, hash: hash)
        try file.write()
        let done = replaced ? "replaced the password of \(name) in" : "added \(name) to"
        print("\(done) \(users.file) (bcrypt, cost \(cost)); restart the proxy to use it")
    }

    /// The password from the terminal (asked twice, not echoed) or one line of standard input.
    private func readNewPassword(for name: String) throws -> [UInt8] {
        guard isatty(STDIN_FILENO) == 1 else { return readLine(from: STDIN_FILENO) }
        let first = try askSilently("Password for \(name): ")
        let second = try askSilently("Again: ")
        guard first == second else { throw CommandFailure("the two passwords differ; nothing was changed") }
        return first
    }

    /// Asks on standard error and reads a line from the terminal with echo off.
    private func askSilently(_ prompt: String) throws -> [UInt8] {
        var original = termios()
        guard tcgetattr(STDIN_FILENO, &original) == 0 else { throw CommandFailure("cannot read the terminal's settings: \(String(cString: strerror(errno)))") }
        var silent = original
        silent.c_lflag &= ~tcflag_t(ECHO)
        FileHandle.standardError.write(Data(prompt.utf8))
        guard tcsetattr(STDIN_FILENO, TCSAFLUSH, &silent) == 0 else { throw CommandFailure("cannot turn the terminal's echo off: \(String(cString: strerror(errno)))") }
        defer {
            tcsetattr(STDIN_FILENO, TCSAFLUSH, &original)
            FileHandle.standardError.write(Data("\n".utf8))
        }
        return readLine(from: STDIN_FILENO)
    }

    /// The bytes up to the first newline (not included) or the end of the input.
    private func readLine(from descriptor: CInt) -> [UInt8] {
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while true {
            let count = read(descriptor, &byte, 1)
            if count == 1 {
                if byte == UInt8(ascii: "\n") { break }
                line.append(byte)
            } else if count < 0 && errno == EINTR {
                continue
            } else {
                break
            }
        }
        return line
    }
}

struct UsersRemoveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remove",
        abstract: "Remove a user from the users file.",
        discussion: "Example: portslice users remove alice --file users.txt"
    )

    @Argument(help: ArgumentHelp("The user's name.", valueName: "name"))
    var name: String

    @OptionGroup var users: UsersFileOption

    func run() throws {
        guard FileManager.default.fileExists(atPath: users.file) else { throw CommandFailure("users file '\(users.file)' does not exist; check the path") }
        var file = try UsersFile(path: users.file)
        guard file.remove(name) else { throw CommandFailure("\(name) is not in \(users.file)") }
        try file.write()
        print("removed \(name) from \(users.file); restart the proxy for it to take effect")
    }
}

struct UsersListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list",
        abstract: "List the users of a users file, with each hash's cost; lines the proxy would refuse are named.",
        discussion: "Example: portslice users list --file users.txt"
    )

    @OptionGroup var users: UsersFileOption

    func run() throws {
        let text = String(decoding: try readFile(users.file, what: "users file"), as: UTF8.self)
        var rows: [[String]] = []
        for (index, line) in UsersFile.lines(of: text).enumerated() {
            switch UsersFileLine(line) {
            case .blankOrComment:
                continue
            case .malformed:
                rows.append(["(line \(index + 1))", "not NAME:HASH"])
            case .user(let name, let value):
                rows.append([name, ProxyUsers.bcryptCost(of: value).map { "bcrypt, cost \($0)" }
                    ?? "not a bcrypt hash: run `portslice users add \(name) --file \(users.file)`"])
            }
        }
        print(renderTable(["NAME", "PASSWORD"], rows))
    }
}

/// A users file's lines, edited in place: comments, blank lines and the other users' lines
/// stay as they were. Written back through a file beside it, renamed over it, so the proxy
/// never reads half a file.
struct UsersFile {
    let path: String
    private(set) var lines: [String]

    /// The file at `path`, or an empty one when there is none yet.
    init(path: String) throws {
        self.path = path
        lines = FileManager.default.fileExists(atPath: path)
            ? Self.lines(of: String(decoding: try readFile(path, what: "users file"), as: UTF8.self)) : []
    }

    /// The lines of `text`, without the empty one after a final newline.
    static func lines(of text: String) -> [String] {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        return lines
    }

    /// Gives `name` the line `name:hash`, in place of its first line if it has one (any later
    /// ones go). - Returns: true when the user was there.
    mutating func set(_ name: String, hash: String) -> Bool {
        let line = "\(name):\(hash)"
        guard let first = lines.firstIndex(where: { Self.isLine($0, of: name) }) else {
            lines.append(line)
            return false
        }
        lines[first] = line
        lines = lines.enumerated().filter { $0.offset <= first || !Self.isLine($0.element, of: name) }.map(\.element)
        return true
    }

    /// Removes every line of `name`. - Returns: true when there was one.
    mutating func remove(_ name: String) -> Bool {
        let count = lines.count
        lines.removeAll { Self.isLine($0, of: name) }
        return lines.count != count
    }

    private static func isLine(_ line: String, of name: String) -> Bool {
        if case .user(name, _) = UsersFileLine(line) { return true }
        return false
    }

    /// Writes the lines to a new file beside the target (mode 0600, or the target's own mode
    /// and owner), flushes it to disk and renames it over the target (through a symbolic link,
    /// to the file it names).
    func write() throws {
        let target = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        let temporary = target + ".portslice-\(getpid())"
        var existing = stat()
        let exists = stat(target, &existing) == 0
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, exists ? existing.st_mode & 0o777 : 0o600)
        guard descriptor >= 0 else { throw CommandFailure("cannot write beside \(path): \(String(cString: strerror(errno)))") }
        var renamed = false
        defer {
            close(descriptor)
            if !renamed { unlink(temporary) }
        }
        if exists {
            // As root for another account's file: it stays that account's (and refused otherwise).
            _ = fchown(descriptor, existing.st_uid, existing.st_gid)
            _ = fchmod(descriptor, existing.st_mode & 0o777)
        }
        let bytes = Array(lines.map { $0 + "\n" }.joined().utf8)
        var offset = 0
        while offset < bytes.count {
            let count = bytes[offset...].withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw CommandFailure("cannot write \(temporary): \(String(cString: strerror(errno)))") }
            offset += count
        }
        guard fsync(descriptor) == 0 else { throw CommandFailure("cannot write \(temporary) to disk: \(String(cString: strerror(errno)))") }
        guard rename(temporary, target) == 0 else { throw CommandFailure("cannot replace \(path): \(String(cString: strerror(errno)))") }
        renamed = true
    }
}
