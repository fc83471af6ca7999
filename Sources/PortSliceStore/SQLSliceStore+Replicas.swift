import Logging
import PostgresNIO
import ServiceLifecycle

// Hearing other replicas: the listener that keeps the version feed and the kept answers
// current on PostgreSQL, and the announcements every replica makes on that channel.
extension SQLSliceStore {

    /// On PostgreSQL: keeps one connection listening for new slice-table versions from any
    /// replica and publishes them to `versions`, reconnecting (within a second) whenever it is
    /// lost; after each reconnect the version is read once, as changes made meanwhile were not
    /// heard. On SQLite every change is made by this process and published as it commits.
    /// Returns on graceful shutdown.
    public func run() async throws {
        guard let link = connection as? PostgresLink else {
            try? await gracefulShutdown()
            return
        }
        try? await cancelWhenGracefulShutdown {
            var delay = Duration.milliseconds(100)
            while !Task.isCancelled {
                do {
                    try await self.listen(through: link)
                } catch where !Task.isCancelled {
                    self.logger.warning("not hearing other replicas' changes; retrying", metadata: [
                        "error": "\(PostgresLink.describe(error))", "retry": "\(delay)",
                    ])
                }
                // A session that was heard from starts the backoff afresh.
                delay = self.versions.isLive ? .milliseconds(100) : min(delay * 2, .seconds(1))
                self.versions.setLive(false)
                // Announcements may be missed until the listener is back.
                self.verifiedTokens.forgetAll()
                self.addressTraits.forgetAll()
                try? await Task.sleep(for: delay)
            }
        }
    }

    /// What replicas announce on the channel: a new table version (a number), a token that
    /// changed (`token:NAME`) or an address removed (`address:BITS`).
    func heard(_ payload: String) {
        if let version = Int64(payload) {
            versions.publish(version)
        } else if payload.hasPrefix(Self.tokenAnnouncement) {
            let name = String(payload.dropFirst(Self.tokenAnnouncement.count))
            verifiedTokens.forget { $1.name == name }
        } else if payload.hasPrefix(Self.addressAnnouncement), let bits = UInt32(payload.dropFirst(Self.addressAnnouncement.count)) {
            addressTraits.forget { address, _ in address.bits == bits }
        }
    }

    static let tokenAnnouncement = "token:"
    static let addressAnnouncement = "address:"

    /// Tells every other replica, when the transaction commits, what to forget; this process
    /// forgets it at once (a lookup under way then keeps nothing) and, with a reading
    /// connection, again once committed.
    func announce(_ payload: String) async throws {
        heard(payload)
        // Only the reading connection can look beside the transaction (on PostgreSQL this
        // process hears its own announcement again from the listener).
        if reader != nil { announcedInTransaction.withLock { $0.append(payload) } }
        if connection.dialect == .postgres {
            try await run("SELECT pg_notify('\(Self.notificationChannel)', ?)", [.text(payload)])
        }
    }

    /// One listening session: `LISTEN`, then the version read once, then each announcement
    /// published until the connection ends.
    private func listen(through link: PostgresLink) async throws {
        let listener = try await link.makeListenerConnection(timeout: .seconds(2))
        defer { PostgresLink.closeInBackground(listener) }
        try await listener.listen(on: Self.notificationChannel) { notifications in
            let rows = try await listener.query("SELECT version FROM table_version WHERE id = 1", logger: self.logger)
            for try await version in rows.decode(Int64.self) { self.versions.publish(version) }
            self.versions.setLive(true)
            for try await notification in notifications {
                self.heard(notification.payload)
            }
        }
    }
}
