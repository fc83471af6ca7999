import Foundation

/// `psql` against a test's PostgreSQL server: one statement, its rows as text.
public enum PSQL {
    /// What `psql` said when a statement failed.
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// Runs `sql` on the database `url` names (off the cooperative pool); returns the rows,
    /// unaligned and without headers, with no trailing newline.
    /// - Throws: `Failure` with the statement and what psql wrote on standard error.
    public static func run(_ url: String, _ sql: String) async throws -> String {
        try await offThePool {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["psql", url, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql]
            let output = Pipe(), errors = Pipe()
            process.standardOutput = output
            process.standardError = errors
            try process.run()
            // Read before waiting: a full pipe would stop psql (its complaints are short).
            let printed = output.fileHandleForReading.readDataToEndOfFile()
            let complaint = errors.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                throw Failure(description: "psql -c \"\(sql)\" exited \(process.terminationStatus): \(String(decoding: complaint, as: UTF8.self))")
            }
            return String(decoding: printed, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }
}
