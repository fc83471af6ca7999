import Foundation
import ArgumentParser

/// An error in the command's input that the user can fix; printed as `Error: <message>`.
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Reads a whole file, naming the file and what went wrong when it cannot.
func readFile(_ path: String, what: String) throws -> [UInt8] {
    guard FileManager.default.fileExists(atPath: path) else {
        throw CommandFailure("\(what) '\(path)' does not exist; check the path")
    }
    guard let data = FileManager.default.contents(atPath: path) else {
        throw CommandFailure("\(what) '\(path)' cannot be read; check its permissions")
    }
    return [UInt8](data)
}

/// Columns padded to the widest cell, separated by two spaces; the last column is not padded.
func renderTable(_ header: [String], _ rows: [[String]]) -> String {
    let all = [header] + rows
    let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
    return all.map { row in
        row.indices.map { column in
            column == row.count - 1 ? row[column] : row[column].padding(toLength: widths[column], withPad: " ", startingAt: 0)
        }.joined(separator: "  ")
    }.joined(separator: "\n")
}

/// Pretty JSON with sorted keys, so output is stable for scripts and tests.
func jsonText(_ value: some Encodable) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}

enum OutputFormat: String, CaseIterable, Sendable, ExpressibleByArgument {
    case table, json
}

func printToStandardError(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}
