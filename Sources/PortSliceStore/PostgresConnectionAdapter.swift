import Foundation
import Logging
import NIOCore
import NIOSSL
import PortSliceCore
import PostgresNIO
import Synchronization

/// One PostgreSQL connection that is made again when it is lost, trying the URL's servers in
/// order, as a `SQLConnection` (`?` placeholders become `$1`, `$2`, ...).
///
/// Written here rather than taken from postgres-nio's `PostgresClient`: that pool backs off
/// up to a minute between attempts while the server is away (so it can come back long after
/// the database did) and knows one server, not a list to fail over along. The store needs
/// neither a pool nor its queue: its writes serialise on one advisory lock anyway, and every
/// operation has a deadline of its own.
final class PostgresLink: SQLConnection {
    let url: PostgresURL
    private let logger: Logger
    private let tls: PostgresConnection.Configuration.TLS
    private let state = Mutex(State())
    /// After a failed attempt, operations fail at once for this long instead of trying again.
    static let retryInterval = Duration.milliseconds(250)

    private struct State {
        var connection: PostgresConnection?
        var lastFailure: (at: ContinuousClock.Instant, reason: String)?
        var nextID = 1
    }

    var dialect: SQLDialect { .postgres }

    init(url: PostgresURL, logger: Logger) throws {
        self.url = url
        self.logger = logger
        tls = try Self.tls(for: url)
    }

    func connectIfNeeded(within timeout: Duration) async throws {
        let now = ContinuousClock.now
        let (live, recentFailure, id): (Bool, String?, Int) = state.withLock { state in
            if let connection = state.connection, !connection.isClosed { return (true, nil, 0) }
            state.connection = nil
            if let failure = state.lastFailure, now - failure.at < Self.retryInterval { return (false, failure.reason, 0) }
            state.nextID += 1
            return (false, nil, state.nextID)
        }
        if live { return }
        if let recentFailure { throw DatabaseUnavailable(recentFailure) }
        var reasons: [String] = []
        for server in url.servers {
            do {
                // Only the gate's holder connects, so no other connection is replaced here.
                let connection = try await connect(to: server, id: id, timeout: timeout)
                state.withLock { state in
                    state.connection = connection
                    state.lastFailure = nil
                }
                if !reasons.isEmpty { logger.notice("connected to the database", metadata: ["server": "\(server)", "skipped": "\(reasons)"]) }
                return
            } catch is CancellationError {
                // The operation's deadline, not the server: nothing to remember.
                throw CancellationError()
            } catch {
                reasons.append("\(server): \(Self.describe(error))")
            }
        }
        let reason = "cannot connect to \(url): " + reasons.joined(separator: "; ")
        state.withLock { $0.lastFailure = (ContinuousClock.now, reason) }
        throw DatabaseUnavailable(reason)
    }

    func query(_ sql: String, _ binds: [SQLValue]) async throws -> [SQLRow] {
        guard let connection = state.withLock({ $0.connection }) else { throw DatabaseUnavailable("not connected to \(url)") }
        var bindings = PostgresBindings()
        for value in binds {
            switch value {
            case .integer(let integer): bindings.append(integer)
            case .text(let text): bindings.append(text)
            case .null: bindings.appendNull()
            }
        }
        do {
            let rows = try await connection.query(PostgresQuery(unsafeSQL: Self.numbered(sql), binds: bindings), logger: logger)
            var result: [SQLRow] = []
            var columns: [String]?
            for try await row in rows {
                let names = columns ?? row.map(\.columnName)
                columns = names
                result.append(SQLRow(columns: names, values: row.map(Self.value)))
            }
            return result
        } catch {
            // A statement that failed because the server went away (a restart, a fail-over, a
            // dropped link) leaves no usable connection: the next operation makes a new one.
            if connection.isClosed || Self.isServerGoingAway(error) {
                abort()
                throw DatabaseUnavailable("lost the connection to \(url): \(Self.describe(error))")
            }
            throw error
        }
    }

    func abort() {
        takeConnection().map(Self.closeInBackground)
    }

    func close() async throws {
        try await takeConnection()?.close()
    }

    private func takeConnection() -> PostgresConnection? {
        state.withLock { state in
            defer { state.connection = nil }
            return state.connection
        }
    }

    /// Closes without waiting; the connection is kept until its close completes (postgres-nio
    /// asserts that a connection is closed before it is released).
    static func closeInBackground(_ connection: PostgresConnection) {
        connection.close().whenComplete { _ in withExtendedLifetime(connection) {} }
    }

    /// A connection of its own, for `LISTEN`: notifications arrive on the connection that
    /// listens, which must not be the one statements wait their turn on.
    func makeListenerConnection(timeout: Duration) async throws -> PostgresConnection {
        var reasons: [String] = []
        let id = state.withLock { state in
            state.nextID += 1
            return state.nextID
        }
        for server in url.servers {
            do {
                return try await connect(to: server, id: id, timeout: timeout)
            } catch {
                reasons.append("\(server): \(Self.describe(error))")
            }
        }
        throw DatabaseUnavailable("cannot connect to \(url): " + reasons.joined(separator: "; "))
    }

    private func connect(to server: PostgresURL.Server, id: Int, timeout: Duration) async throws -> PostgresConnection {
        var configuration = PostgresConnection.Configuration(
            host: server.host, port: server.port, username: url.user, password: url.password, database: url.database, tls: tls)
        configuration.options.connectTimeout = TimeAmount(timeout)
        // A name is sent (SNI) and checked against the certificate; an IP address is not sent,
        // and NIOSSL checks the certificate against the address connected to instead.
        if url.tlsMode == .verifyFull && Self.isName(server.host) { configuration.options.tlsServerName = server.host }
        let connection = try await PostgresConnection.connect(configuration: configuration, id: id, logger: logger)
        // After a fail-over the old primary may come back as a standby: it takes connections
        // but refuses writes, and NOTIFY is not replicated to it. Like libpq's
        // target_session_attrs=read-write, go on to the next server.
        do {
            let rows = try await connection.query("SELECT pg_is_in_recovery() AS standby", logger: logger)
            for try await standby in rows.decode(Bool.self) where standby {
                try await connection.close()
                throw StoreError("it is a standby (in recovery), which cannot take writes")
            }
        } catch {
            if !connection.isClosed { try? await connection.close() }
            throw error
        }
        return connection
    }

    private static func tls(for url: PostgresURL) throws -> PostgresConnection.Configuration.TLS {
        var configuration = TLSConfiguration.makeClientConfiguration()
        switch url.tlsMode {
        case .disable: return .disable
        case .prefer, .require: configuration.certificateVerification = .none
        case .verifyCA: configuration.certificateVerification = .noHostnameVerification
        case .verifyFull: configuration.certificateVerification = .fullVerification
        }
        if let file = url.rootCertificateFile {
            do {
                configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(file))
            } catch {
                throw StoreError("cannot read sslrootcert \(file): \(error); give a PEM file with the CA's certificate")
            }
        }
        let context: NIOSSLContext
        do { context = try NIOSSLContext(configuration: configuration) } catch { throw StoreError("cannot set up TLS for the database: \(error)") }
        return url.tlsMode == .prefer ? .prefer(context) : .require(context)
    }

    private static func isName(_ host: String) -> Bool {
        (try? IPv4Address(parsing: host)) == nil && !host.contains(":")
    }

    /// Server errors that end the session: admin shutdown (a restart or fail-over), crash
    /// shutdown, cannot connect now (starting up or shutting down), connection failures, and
    /// a write refused by a server that is now a standby.
    private static func isServerGoingAway(_ error: any Error) -> Bool {
        guard let error = error as? PSQLError else { return false }
        switch error.code {
        case .serverClosedConnection, .clientClosedConnection, .connectionError, .uncleanShutdown: return true
        default: break
        }
        guard let state = error.serverInfo?[.sqlState] else { return false }
        // 25006: a write on a server that became a standby (read only).
        return state.hasPrefix("57P") || state.hasPrefix("08") || state == "25006"
    }

    static func describe(_ error: any Error) -> String {
        if let error = error as? PSQLError {
            if let message = error.serverInfo?[.message] { return message }
            if let underlying = error.underlying { return "\(error.code): \(underlying)" }
            return "\(error.code)"
        }
        return "\(error)"
    }

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
    /// A connection to PostgreSQL that is made again when lost.
    /// - Parameter url: see `PostgresURL`.
    public static func postgres(url text: String) async throws -> any SQLConnection {
        let connection = try PostgresLink(url: try PostgresURL(parsing: text), logger: Logger(label: "portslice.store.postgres"))
        try await connection.connectIfNeeded(within: .seconds(10))
        return connection
    }
}

extension SQLSliceStore {
    /// A store in a PostgreSQL database that several allocator replicas share.
    /// - Parameter url: see `PostgresURL`; the first connection must succeed (within 10 s),
    ///   later losses are survived.
    /// - Parameter operationTimeout: how long an operation may take before it fails as
    ///   unavailable; an allocator keeps the default, so its clients get 503 within 2 s.
    public static func openPostgres(url: String, quarantine: Duration = .seconds(240), renewalWindow: Duration = defaultRenewalWindow,
                                    operationTimeout: Duration = defaultOperationTimeout,
                                    logger: Logger = Logger(label: "portslice.store")) async throws -> SQLSliceStore {
        try AllocatorModel.validate(quarantine: quarantine)
        let connection = try await SQLConnections.postgres(url: url)
        return try await SQLSliceStore(connection: connection, quarantine: quarantine, renewalWindow: renewalWindow,
                                       operationTimeout: operationTimeout, logger: logger)
    }
}
