import Foundation

/// A value bound into, or read from, a SQL statement.
public enum SQLValue: Hashable, Sendable {
    case integer(Int64)
    case text(String)
    case null

    static func int(_ value: some BinaryInteger) -> SQLValue { .integer(Int64(value)) }

    /// A list of text as one value, a JSON array, for `SQLDialect.isIn(textList:)`.
    public static func textList(_ texts: [String]) throws -> SQLValue {
        .text(String(decoding: try JSONEncoder().encode(texts), as: UTF8.self))
    }
}

/// One result row, read by column name.
///
/// The names are one array shared by every row of a result, and a name is found by
/// comparing it with each: a renewal batch reads hundreds of rows, and a dictionary per
/// row (made, hashed into and freed) had been a tenth of the SQLite writer's time in it.
public struct SQLRow: Sendable {
    let columns: [String]
    let values: [SQLValue]

    init(columns: [String], values: [SQLValue]) {
        self.columns = columns
        self.values = values
    }

    /// The first column of that name (as a dictionary of the columns would keep it).
    private func value(_ column: String) -> SQLValue? {
        columns.firstIndex(of: column).map { values[$0] }
    }

    public func integer(_ column: String) -> Int64? {
        if case .integer(let value) = value(column) { value } else { nil }
    }

    public func text(_ column: String) -> String? {
        if case .text(let value) = value(column) { value } else { nil }
    }
}

/// The SQL both engines understand, and what differs between them.
public enum SQLDialect: Sendable {
    case sqlite, postgres

    /// Starts a transaction that writes: SQLite takes the write lock at once; PostgreSQL
    /// serialises allocators (replicas included) on one advisory lock for the transaction.
    public var beginWrite: [String] {
        switch self {
        case .sqlite: ["BEGIN IMMEDIATE"]
        case .postgres: ["BEGIN", "SELECT pg_advisory_xact_lock(\(SQLSliceStore.lockKey))"]
        }
    }

    /// `column` is one of a list given as one parameter (`SQLValue.textList`): the statement's
    /// text is the same however long the list, so SQLite keeps it prepared rather than
    /// preparing one for each length. On PostgreSQL the list is an array, so the column's
    /// index is searched for its members (`IN (SELECT ...)` was planned as a hash join over
    /// the whole table).
    public func isIn(textList column: String) -> String {
        switch self {
        case .sqlite: "\(column) IN (SELECT value FROM json_each(?))"
        case .postgres: "\(column) = ANY(ARRAY(SELECT jsonb_array_elements_text(?::jsonb)))"
        }
    }
}

/// One database connection, as the store uses it. Statements use `?` placeholders.
public protocol SQLConnection: Sendable {
    var dialect: SQLDialect { get }
    /// Makes the connection again if it was lost; the store calls it before each operation,
    /// never inside a transaction.
    /// - Throws: `DatabaseUnavailable` when no server can be reached within `timeout`.
    func connectIfNeeded(within timeout: Duration) async throws
    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [SQLRow]
    /// Runs `body`, whose statements use this connection, where they cost least: SQLite runs
    /// it on the connection's own thread, so no statement of it waits for a thread switch.
    func withConnection<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T
    /// Drops the connection at once, failing the statement in flight: what a deadline does.
    func abort()
    func close() async throws
}

extension SQLConnection {
    public func withConnection<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        try await body()
    }
}

/// Opens database connections for the store, or for anything else that wants the same
/// engine with the same settings (the allocation benchmark's plain-SQL peer).
public enum SQLConnections {}
