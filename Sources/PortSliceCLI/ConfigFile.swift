import Foundation

/// Settings from a TOML file: top-level `key = value` lines with strings ("..."), integers and
/// booleans, `#` comments. It is the subset the settings need; TOMLKit, the usual reader, cannot
/// be resolved on the project's machines (its manifest names a package the mirror lacks).
struct ConfigFile {
    enum Value: Equatable {
        case string(String)
        case integer(Int)
        case boolean(Bool)
    }

    private(set) var values: [String: Value] = [:]

    /// - Parameters:
    ///   - allowed: the keys a file may set; any other is an error naming the allowed ones.
    /// - Throws: `CommandFailure` naming the file, the line and what is wrong.
    init(text: String, source: String, allowed: [String]) throws {
        for (offset, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = offset + 1
            func fail(_ message: String) -> CommandFailure { CommandFailure("\(source):\(number): \(message)") }
            let line = Self.strippingComment(rawLine).trimmingCharacters(in: .whitespaces)
            if line.isEmpty { continue }
            if line.hasPrefix("[") { throw fail("tables are not supported; put the settings at the top level") }
            guard let equals = line.firstIndex(of: "=") else { throw fail("expected KEY = VALUE") }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces)
            let text = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            guard allowed.contains(key) else {
                throw fail("unknown setting '\(key)'; the settings are \(allowed.joined(separator: ", "))")
            }
            guard values[key] == nil else { throw fail("'\(key)' is set twice") }
            guard let value = Self.value(text) else {
                throw fail("the value of '\(key)' must be a \"string\", an integer, true or false")
            }
            values[key] = value
        }
    }

    func string(_ key: String) throws -> String? {
        switch values[key] {
        case nil: return nil
        case .string(let text): return text
        default: throw CommandFailure("setting '\(key)' must be a \"string\"")
        }
    }

    func integer(_ key: String) throws -> Int? {
        switch values[key] {
        case nil: return nil
        case .integer(let number): return number
        default: throw CommandFailure("setting '\(key)' must be an integer")
        }
    }

    /// The line without a `#` comment that is outside quotes.
    private static func strippingComment(_ line: Substring) -> Substring {
        var quoted = false, escaped = false
        for index in line.indices {
            let character = line[index]
            if escaped { escaped = false; continue }
            if character == "\\" && quoted { escaped = true }
            else if character == "\"" { quoted.toggle() }
            else if character == "#" && !quoted { return line[..<index] }
        }
        return line
    }

    private static func value(_ text: String) -> Value? {
        if text == "true" { return .boolean(true) }
        if text == "false" { return .boolean(false) }
        if let number = Int(text.replacingOccurrences(of: "_", with: "")) { return .integer(number) }
        guard text.count >= 2, text.first == "\"", text.last == "\"" else { return nil }
        var result = ""
        var escaped = false
        for character in text.dropFirst().dropLast() {
            if escaped {
                switch character {
                case "n": result.append("\n")
                case "t": result.append("\t")
                case "\"", "\\": result.append(character)
                default: return nil
                }
                escaped = false
            } else if character == "\\" {
                escaped = true
            } else if character == "\"" {
                return nil
            } else {
                result.append(character)
            }
        }
        return escaped ? nil : .string(result)
    }
}
