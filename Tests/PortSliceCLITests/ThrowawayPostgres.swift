import Foundation
import PortSliceTestSupport
import Testing

/// A PostgreSQL server of a test's own, which the test may stop and start (a restart, a
/// fail-over): its own data directory and a free port, run as the postgres user, trusted on
/// 127.0.0.1 only. Needs root (to run as postgres) and the server's binaries, which `.ci/run`
/// names in PORTSLICE_TEST_POSTGRES_BIN.
final class ThrowawayPostgres: @unchecked Sendable {
    static let binaries: String? = {
        if let named = ProcessInfo.processInfo.environment["PORTSLICE_TEST_POSTGRES_BIN"] { return named }
        let root = "/usr/lib/postgresql"
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: root))?.sorted { $0.compare($1, options: .numeric) == .orderedAscending }
        return versions?.last.map { "\(root)/\($0)/bin" }
    }()
    static let available = geteuid() == 0 && binaries.map { FileManager.default.isExecutableFile(atPath: "\($0)/pg_ctl") } == true
    static let unavailable: Comment = "needs root and PostgreSQL's server binaries (PORTSLICE_TEST_POSTGRES_BIN; .ci/run sets it)"

    let directory: String
    let port: Int
    private let bin: String

    /// - Parameter tls: a directory holding `server.crt` and `server.key` to serve TLS with.
    init(tls: String? = nil) throws {
        bin = try #require(Self.binaries)
        directory = ScratchSpace.path("portslice-pg")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        port = try Self.freePort()
        try Self.shell("chown postgres \(directory)")
        try asPostgres("\(bin)/initdb -D \(directory)/data --auth=trust -U postgres >/dev/null")
        var settings = "port = \(port)\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '\(directory)'\n"
        if let tls {
            for file in ["server.crt", "server.key"] {
                try Self.shell("cp \(tls)/\(file) \(directory)/data/\(file) && chown postgres \(directory)/data/\(file) && chmod 600 \(directory)/data/\(file)")
            }
            settings += "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
        }
        try asPostgres("cat >> \(directory)/data/postgresql.conf <<'EOF'\n\(settings)EOF")
        try start()
    }

    /// A standby of `primary`, streaming from it (pg_basebackup), on a port of its own.
    init(standbyOf primary: ThrowawayPostgres) throws {
        bin = primary.bin
        directory = ScratchSpace.path("portslice-pg")
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        port = try Self.freePort()
        try Self.shell("chown postgres \(directory)")
        try asPostgres("\(bin)/pg_basebackup -h 127.0.0.1 -p \(primary.port) -U postgres -D \(directory)/data -R -X stream >/dev/null 2>&1")
        try asPostgres("cat >> \(directory)/data/postgresql.conf <<'EOF'\nport = \(port)\nunix_socket_directories = '\(directory)'\nEOF")
        try start()
    }

    var url: String { "postgres://postgres@127.0.0.1:\(port)/postgres" }

    /// Starts the server and returns once it accepts connections. pg_ctl's own output goes to
    /// a file: the server it starts would otherwise hold this process's pipes open.
    func start() throws {
        do {
            try asPostgres("\(bin)/pg_ctl -D \(directory)/data -l \(directory)/log -w start >\(directory)/pg_ctl.out 2>&1")
        } catch {
            let log = (try? String(contentsOfFile: "\(directory)/log", encoding: .utf8)) ?? ""
            throw CommandRunner.RunnerError("the test's PostgreSQL server did not start: \(error); its log: \(log.suffix(2000))")
        }
    }

    /// Stops the server (fast: open sessions are ended, as in a restart or fail-over).
    func stop() throws {
        try asPostgres("\(bin)/pg_ctl -D \(directory)/data -m fast -w stop >/dev/null")
    }

    /// Runs `sql` with psql; its output, unaligned.
    func psql(_ sql: String, database: String = "postgres") throws -> String {
        try Self.shell("psql 'postgres://postgres@127.0.0.1:\(port)/\(database)' -At -v ON_ERROR_STOP=1 -c \"\(sql.replacingOccurrences(of: "\"", with: "\\\""))\"")
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    deinit {
        _ = try? asPostgres("\(bin)/pg_ctl -D \(directory)/data -m immediate -w stop >/dev/null 2>&1")
        try? FileManager.default.removeItem(atPath: directory)
    }

    private func asPostgres(_ command: String) throws {
        try Self.shell("runuser -u postgres -- sh -c '\(command.replacingOccurrences(of: "'", with: "'\\''"))'")
    }

    /// Runs `command` with sh; its standard output. A server the command starts must inherit
    /// nothing of this process: Foundation's Process learns that a child ended when every
    /// holder of a descriptor it shares with the child has closed it, so a daemon holding one
    /// would make the wait endless. Python's subprocess closes all but the standard three, and
    /// output goes through files rather than pipes.
    @discardableResult
    static func shell(_ command: String) throws -> String {
        let outputFile = URL(fileURLWithPath: ScratchSpace.path("portslice-shell"))
        let errorFile = outputFile.appendingPathExtension("err")
        for file in [outputFile, errorFile] where !FileManager.default.createFile(atPath: file.path, contents: nil) {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: file.path])
        }
        defer {
            try? FileManager.default.removeItem(at: outputFile)
            try? FileManager.default.removeItem(at: errorFile)
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", "import subprocess, sys; sys.exit(subprocess.call(['/bin/sh', '-c', sys.argv[1]]))", command]
        process.standardOutput = try FileHandle(forWritingTo: outputFile)
        process.standardError = try FileHandle(forWritingTo: errorFile)
        try process.run()
        process.waitUntilExit()
        let text = (try? String(contentsOf: outputFile, encoding: .utf8)) ?? ""
        guard process.terminationStatus == 0 else {
            let errorText = (try? String(contentsOf: errorFile, encoding: .utf8)) ?? ""
            throw CommandRunner.RunnerError("`\(command.prefix(200))` failed (\(process.terminationStatus)): \(errorText)")
        }
        return text
    }

    /// A TCP port nothing listens on now.
    static func freePort() throws -> Int {
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(socket) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard bound == 0 else { throw CommandRunner.RunnerError("cannot bind a port to find a free one") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket, $0, &length) } }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

/// Test certificates made with openssl: a CA, and a server certificate it signed for the
/// given names (DNS names and IP addresses).
struct TestCertificates {
    let directory: String
    var caFile: String { "\(directory)/ca.crt" }
    var certificateFile: String { "\(directory)/server.crt" }
    var keyFile: String { "\(directory)/server.key" }

    init(directory: String, names: [String], caName: String = "portslice test CA") throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let alternatives = names.map { $0.first!.isNumber ? "IP:\($0)" : "DNS:\($0)" }.joined(separator: ",")
        try ThrowawayPostgres.shell("""
            cd \(directory) && \
            openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj '/CN=\(caName)' 2>/dev/null && \
            openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj '/CN=\(names[0])' 2>/dev/null && \
            printf 'subjectAltName=\(alternatives)\\nbasicConstraints=CA:FALSE\\nkeyUsage=digitalSignature,keyEncipherment\\nextendedKeyUsage=serverAuth\\n' > server.ext && \
            openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile server.ext 2>/dev/null
            """)
    }
}
