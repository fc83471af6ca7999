import Foundation
import Logging
import PortSliceCore
import PostgresNIO

/// postgres-nio's connection as a `SQLConnection`: `?` placeholders become `$1`, `$2`, ...
struct PostgresConnectionAdapter: SQLConnection {
    let connection: PostgresConnection
    let logger: Logger
    var dialect: SQLDialect { .postgres }

    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [SQLRow] {
        var bindings = PostgresBindings()
        for value in binds {
            switch value {
            case .integer(let integer): bindings.append(integer)
            case .text(let text): bindings.append(text)
            case .null: bindings.appendNull()
            }
        }
        let rows = try await connection.query(PostgresQuery(unsafeSQL: Self.numbered(sql), binds: bindings), logger: logger)
        var result: [SQLRow] = []
        for try await row in rows {
            var values: [String: SQLValue] = [:]
            for cell in row { values[cell.columnName] = Self.value(cell) }
            result.append(SQLRow(values: values))
        }
        return result
    }

    func close() async throws { try await connection.close() }

    /// `?` to `$n`, in order; the store's SQL has no `?` inside string literals.
    static func numbered(_ sql: String) -> String {
        var result = ""
        var number = 0
        for character in sql {
            if character == "?" {
                number += 1
                result += "$\(number)"
            } else {
                result.append(character)
            }
        }
        return result
    }

    private static func value(_ cell: PostgresCell) -> SQLValue {
        guard cell.bytes != nil else { return .null }
        switch cell.dataType {
        case .int8, .int4, .int2: return (try? cell.decode(Int64.self)).map(SQLValue.integer) ?? .null
        default: return (try? cell.decode(String.self)).map(SQLValue.text) ?? .null
        }
    }
}

extension SQLConnections {
    /// A connection to PostgreSQL.
    /// - Parameter url: `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (no TLS).
    public static func postgres(url: String) async throws -> any SQLConnection {
        guard let components = URLComponents(string: url), components.scheme == "postgres" || components.scheme == "postgresql",
              let host = components.host, let user = components.user
        else {
            throw StoreError("database URL '\(url)' must look like postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE")
        }
        let database = String(components.path.drop { $0 == "/" })
        let configuration = PostgresConnection.Configuration(
            host: host, port: components.port ?? 5432, username: user, password: components.password,
            database: database.isEmpty ? nil : database, tls: .disable)
        let logger = Logger(label: "portslice.store.postgres")
        do {
            let connection = try await PostgresConnection.connect(configuration: configuration, id: 1, logger: logger)
            return PostgresConnectionAdapter(connection: connection, logger: logger)
        } catch {
            throw StoreError("cannot connect to PostgreSQL at \(host):\(components.port ?? 5432): \(String(reflecting: error))")
        }
    }
}

extension SQLSliceStore {
    /// A store in a PostgreSQL database that several allocator replicas share.
    /// - Parameter url: `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (no TLS).
    public static func openPostgres(url: String, quarantine: Duration = .seconds(240), renewalWindow: Duration = defaultRenewalWindow) async throws -> SQLSliceStore {
        try AllocatorModel.validate(quarantine: quarantine)
        return try await SQLSliceStore(connection: try await SQLConnections.postgres(url: url), quarantine: quarantine, renewalWindow: renewalWindow)
    }
}
