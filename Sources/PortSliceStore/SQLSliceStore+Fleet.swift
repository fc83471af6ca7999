import PortSliceCore

// What the console shows about the fleet beyond the slice table: hosts and how their renewals
// go, edges and the table version each applied, the pool's addresses.
extension SQLSliceStore {
    /// Edges poll the table often; a report is written only when its version changed or the
    /// one stored is older than this, so a steady edge costs a statement a minute at most.
    static let edgeReportRefresh = Duration.seconds(60)

    public func hosts(now: Moment) async throws -> [HostSummary] {
        let (hosts, leased, prefixes) = try await withDatabase {
            (try await self.query("SELECT name, labels FROM hosts ORDER BY name"),
             try await self.query("SELECT host, renewed, expires, wanted FROM slices WHERE state = 'leased' ORDER BY lease_id"),
             try await self.query("SELECT host, COUNT(*) AS held FROM prefix_leases WHERE state = 'leased' GROUP BY host"))
        }
        var byHost: [String: [SQLRow]] = [:]
        for row in leased { byHost[row.text("host") ?? "", default: []].append(row) }
        let prefixLeases = Dictionary(prefixes.map { ($0.text("host") ?? "", Int($0.integer("held") ?? 0)) }, uniquingKeysWith: +)
        return try hosts.map { row in
            let name = row.text("name") ?? ""
            let leases = byHost[name] ?? []
            var wants: [Traits] = []
            var lastRenewal: Int64?
            var late = false
            for lease in leases {
                if let text = lease.text("wanted") {
                    let traits = try self.traits(text)
                    if !wants.contains(traits) { wants.append(traits) }
                }
                guard let renewed = lease.integer("renewed"), let expires = lease.integer("expires") else { continue }
                lastRenewal = max(lastRenewal ?? renewed, renewed)
                // Agents renew every third of the lease time: past half of it, one was missed.
                if now.milliseconds - renewed > (expires - renewed) / 2 { late = true }
            }
            return HostSummary(
                name: name, labels: try Self.decode([String: String].self, row.text("labels")), leases: leases.count,
                prefixLeases: prefixLeases[name, default: 0],
                lastRenewal: lastRenewal.map { Moment(milliseconds: $0) }, renewalLate: late, wants: wants)
        }
    }

    public func edges() async throws -> [EdgeReport] {
        try await withDatabase {
            try await self.query("SELECT name, applied_version, reported FROM edges ORDER BY name").map { row in
                EdgeReport(name: row.text("name") ?? "", appliedVersion: row.integer("applied_version"),
                           reported: row.integer("reported").map { Moment(milliseconds: $0) })
            }
        }
    }

    public func recordApplied(edge: String, version: Int64, now: Moment) async throws {
        let refresh = Self.edgeReportRefresh.components.seconds * 1000
        let due = edgeReports.withLock { reports in
            guard let last = reports[edge] else { return true }
            return last.version != version || now.milliseconds - last.at.milliseconds >= refresh
        }
        guard due else { return }
        try await transaction {
            try await self.run("UPDATE edges SET applied_version = ?, reported = ? WHERE name = ?",
                               [.integer(version), .integer(now.milliseconds), .text(edge)])
        }
        edgeReports.withLock { $0[edge] = (version, now) }
    }

    public func pool() async throws -> [PoolAddress] {
        let rows = try await withDatabase { try await self.query("SELECT address, traits, draining FROM addresses ORDER BY address") }
        return try rows.map { row in
            PoolAddress(egress: EgressAddress(address: Self.address(row), traits: try self.traits(row.text("traits"))),
                        draining: row.integer("draining") == 1)
        }
    }
}
