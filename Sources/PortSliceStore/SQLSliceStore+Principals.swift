import PortSliceCore

// Who may call the allocator besides the admin: hosts, edges and viewers, each a name and the
// SHA-256 of its token; verifying a token, rotating it, removing its holder (a host's leases
// end with it). Rotations and removals are announced, so every replica forgets the token.
extension SQLSliceStore {

    public func addHost(_ name: String, labels: [String: String], now: Moment) async throws -> String {
        try HostToken.validate(name: name)
        let token = HostToken.make(for: name)
        let labelsText = try Self.json(labels)
        try await transaction {
            guard try await self.query("SELECT name FROM hosts WHERE name = ?", [.text(name)]).isEmpty else {
                throw AllocationError.duplicateHost(name)
            }
            try await self.run(
                "INSERT INTO hosts (name, labels, token_hash, created) VALUES (?, ?, ?, ?)",
                [.text(name), .text(labelsText), .text(HostToken.hash(of: token)), .integer(now.milliseconds)])
        }
        return token
    }

    public func principal(authenticatedBy token: String) async throws -> Principal? {
        guard let name = HostToken.hostName(in: token) else { return nil }
        let hash = HostToken.hash(of: token)
        let cached = versions.isLive
        if cached, let known = verifiedTokens.value(for: hash) { return known }
        let generation = verifiedTokens.generation
        let rows = try await readCommitted(
            """
            SELECT 'host' AS role, token_hash FROM hosts WHERE name = ? UNION ALL SELECT 'edge' AS role, token_hash FROM edges WHERE name = ?
            UNION ALL SELECT 'viewer' AS role, token_hash FROM viewers WHERE name = ?
            """,
            [.text(name), .text(name), .text(name)])
        // Every stored hash of that name is compared, so the time taken does not tell which matched.
        var found: Principal?
        for row in rows where HostToken.sameHash(hash, row.text("token_hash") ?? "") {
            found = switch row.text("role") {
            case "edge": .edge(name)
            case "viewer": .viewer(name)
            default: .host(name)
            }
        }
        if cached, let found { verifiedTokens.keep(found, for: hash, ifStill: generation) }
        return found
    }

    public func addEdge(_ name: String, now: Moment) async throws -> String {
        try await addReader(.edge(name), now: now)
    }

    public func addViewer(_ name: String, now: Moment) async throws -> String {
        try await addReader(.viewer(name), now: now)
    }

    /// Registers an edge or a viewer: a name and its token's hash.
    private func addReader(_ principal: Principal, now: Moment) async throws -> String {
        let name = principal.name
        try HostToken.validate(name: name)
        let token = HostToken.make(for: name)
        let table = Self.table(of: principal)
        try await transaction {
            guard try await self.query("SELECT name FROM \(table) WHERE name = ?", [.text(name)]).isEmpty else {
                throw Self.duplicate(principal)
            }
            try await self.run(
                "INSERT INTO \(table) (name, token_hash, created) VALUES (?, ?, ?)",
                [.text(name), .text(HostToken.hash(of: token)), .integer(now.milliseconds)])
        }
        return token
    }

    public func rotateToken(of principal: Principal) async throws -> String {
        let token = HostToken.make(for: principal.name)
        let table = Self.table(of: principal)
        try await transaction {
            let changed = try await self.query(
                "UPDATE \(table) SET token_hash = ? WHERE name = ? RETURNING name", [.text(HostToken.hash(of: token)), .text(principal.name)])
            guard !changed.isEmpty else { throw Self.unknown(principal) }
            try await self.announce(Self.tokenAnnouncement + principal.name)
        }
        return token
    }

    public func removeHost(_ name: String, now: Moment) async throws {
        try await transaction {
            guard try await !self.query("SELECT name FROM hosts WHERE name = ?", [.text(name)]).isEmpty else {
                throw AllocationError.unknownHost(name)
            }
            try await self.advanceInTransaction(to: now)
            let condition = "state = 'leased' AND host = ?"
            for table in LeaseTable.allCases where try await !self.query("SELECT lease_id FROM \(table.rows) WHERE \(condition)", [.text(name)]).isEmpty {
                try await self.end(table, leasesWhere: condition, [.text(name)], at: now)
                try await self.bumpVersion()
            }
            try await self.run("DELETE FROM hosts WHERE name = ?", [.text(name)])
            try await self.announce(Self.tokenAnnouncement + name)
        }
    }

    public func removeEdge(_ name: String) async throws {
        try await removeReader(.edge(name))
    }

    public func removeViewer(_ name: String) async throws {
        try await removeReader(.viewer(name))
    }

    private func removeReader(_ principal: Principal) async throws {
        try await transaction {
            guard try await !self.query("DELETE FROM \(Self.table(of: principal)) WHERE name = ? RETURNING name", [.text(principal.name)]).isEmpty else {
                throw Self.unknown(principal)
            }
            try await self.announce(Self.tokenAnnouncement + principal.name)
        }
    }

    private static func table(of principal: Principal) -> String {
        switch principal {
        case .host: "hosts"
        case .edge: "edges"
        case .viewer: "viewers"
        }
    }

    private static func unknown(_ principal: Principal) -> AllocationError {
        switch principal {
        case .host(let name): .unknownHost(name)
        case .edge(let name): .unknownEdge(name)
        case .viewer(let name): .unknownViewer(name)
        }
    }

    private static func duplicate(_ principal: Principal) -> AllocationError {
        switch principal {
        case .host(let name): .duplicateHost(name)
        case .edge(let name): .duplicateEdge(name)
        case .viewer(let name): .duplicateViewer(name)
        }
    }
}
