import Synchronization

// The connection, one operation at a time: transactions, the deadline of every operation on
// PostgreSQL, and the statements themselves (counted).
extension SQLSliceStore {
    /// Runs `body` in one write transaction, rolled back on any error; a new slice-table
    /// version it made is published once committed.
    func transaction<T: Sendable>(timeout: Duration? = nil, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        try await withDatabase(timeout: timeout) { try await self.inTransaction(body) }
    }

    /// `transaction` for a caller that already holds the gate.
    func inTransaction<T>(_ body: () async throws -> T) async throws -> T {
        committedVersion.withLock { $0 = nil }
        announcedInTransaction.withLock { $0 = [] }
        for statement in connection.dialect.beginWrite { try await run(statement) }
        do {
            let result = try await body()
            try await run("COMMIT")
            if let version = committedVersion.withLock({ $0 }) { versions.publish(version) }
            // Heard again now that the change is visible: a lookup on the reading connection
            // that began after the first hearing could have read the state before it, and
            // kept it (see `announce`).
            for payload in announcedInTransaction.withLock({ $0 }) { heard(payload) }
            return result
        } catch {
            try? await run("ROLLBACK")
            // What it changed in the free slices kept in memory is undone by reading them again.
            freeSlices?.forget()
            throw error
        }
    }

    /// Runs `body` alone on the connection, connecting first if it was lost. On PostgreSQL
    /// the whole of it, waiting included, has `operationTimeout`: past it the statement in
    /// flight is abandoned with its connection (the server rolls back an open transaction)
    /// and the caller gets `DatabaseUnavailable`, so no request hangs on a database that is
    /// away.
    func withDatabase<T: Sendable>(timeout: Duration? = nil, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        guard connection.dialect == .postgres else {
            return try await connection.withConnection { try await self.gate.run(body) }
        }
        let limit = timeout ?? operationTimeout
        let deadline = ContinuousClock.now + limit
        // Set once this operation has the connection: only then is abandoning it this
        // operation's to do (one still queued must not cut off the holder's transaction).
        let started = StartedFlag()
        return try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                try await self.gate.run {
                    started.value.withLock { $0 = true }
                    try await self.connection.connectIfNeeded(within: max(deadline - ContinuousClock.now, .milliseconds(100)))
                    try Task.checkCancellation()
                    return try await body()
                }
            }
            group.addTask {
                try await Task.sleep(until: deadline)
                return nil
            }
            if let first = try await group.next(), let result = first {
                group.cancelAll()
                return result
            }
            group.cancelAll()
            if started.value.withLock({ $0 }) { connection.abort() }
            throw DatabaseUnavailable("no answer within \(limit)")
        }
    }

    private final class StartedFlag: Sendable {
        let value = Mutex(false)
    }

    func query(_ sql: String, _ binds: [SQLValue] = []) async throws -> [SQLRow] {
        try await query(sql, binds, on: connection)
    }

    /// A statement that only reads and needs no transaction: on the reading connection when
    /// there is one (SQLite), where it sees the last commit and waits for no write; else alone
    /// on the connection. Never from inside a transaction: it would not see the transaction's
    /// own changes, and without a reader it waits for the gate the caller holds.
    func readCommitted(_ sql: String, _ binds: [SQLValue]) async throws -> [SQLRow] {
        guard let reader else { return try await withDatabase { try await self.query(sql, binds) } }
        return try await query(sql, binds, on: reader)
    }

    private func query(_ sql: String, _ binds: [SQLValue], on connection: any SQLConnection) async throws -> [SQLRow] {
        statements.add(1, ordering: .relaxed)
        do {
            return try await connection.query(sql, binds)
        } catch let error as DatabaseUnavailable {
            throw error
        } catch {
            throw StoreError("\(connection.dialect): \(String(reflecting: error)) in: \(sql.prefix(100))")
        }
    }

    func run(_ sql: String, _ binds: [SQLValue] = []) async throws {
        _ = try await query(sql, binds)
    }
}
