import Foundation
import PortSliceCore

/// How the store writes its values as SQL text and reads them back from rows.
extension SQLSliceStore {
    static func status(_ row: SQLRow) throws -> SliceStatus {
        guard let text = row.text("state"), let status = SliceStatus(rawValue: text) else {
            throw StoreError("a slice has state '\(row.text("state") ?? "")', which the schema forbids")
        }
        return status
    }

    /// `?, ?, ?` for `count` values.
    static func placeholders(_ count: Int) -> String {
        Array(repeating: "?", count: count).joined(separator: ", ")
    }

    static func address(_ row: SQLRow) -> IPv4Address {
        IPv4Address(bits: UInt32(truncatingIfNeeded: row.integer("address") ?? 0))
    }

    static func ports(_ row: SQLRow) throws -> PortSet {
        try PortSet(parsing: row.text("ports") ?? "")
    }

    /// A port set as PostgreSQL's `int4multirange` literal: `{[20000,21000),[22000,22004)}`.
    static func multirange(_ ports: PortSet) -> String {
        "{" + ports.runs.map { "[\($0.lower),\(Int($0.upper) + 1))" }.joined(separator: ",") + "}"
    }

    static func json(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    /// Decoded trait records by their stored text: an address's traits are read on every
    /// acquire, and there are far fewer trait classes than addresses.
    func traits(_ text: String?) throws -> Traits {
        guard let text else { throw StoreError("a stored Traits is missing") }
        if let known = traitsByText.withLock({ $0[text] }) { return known }
        let decoded = try Self.decode(Traits.self, text)
        traitsByText.withLock { $0[text] = decoded }
        return decoded
    }

    /// The stored text of `traits`, as `json` writes it: every acquire stores the traits it
    /// asked for, and `JSONEncoder` for each was 2% of the SQLite writer's time in an acquire
    /// batch. Hosts may ask for any traits (a city, tags), so past `keptTexts` the kept ones
    /// are dropped.
    func text(of traits: Traits) throws -> String {
        if let known = textByTraits.withLock({ $0[traits] }) { return known }
        let encoded = try Self.json(traits)
        textByTraits.withLock { texts in
            if texts.count >= Self.keptTexts { texts.removeAll() }
            texts[traits] = encoded
        }
        return encoded
    }

    static let keptTexts = 4_096

    static func decode<T: Decodable>(_ type: T.Type, _ text: String?) throws -> T {
        guard let text else { throw StoreError("a stored \(T.self) is missing") }
        return try JSONDecoder().decode(T.self, from: Data(text.utf8))
    }
}
