import PortSliceCore

/// What this process programs: the edge's steering (with policy routes to each host), or the
/// guard on one host.
public enum EdgeRole: Sendable {
    case edge(hosts: [EdgeHost])
    case hostGuard(host: String)

    public var tableName: String {
        switch self {
        case .edge: EdgeRuleset.tableName
        case .hostGuard: HostGuardRuleset.tableName
        }
    }

    /// What one slice table asks of the kernel: an nftables script (one transaction), the IPv6
    /// prefix routes (edge role), and warnings the operator should see.
    public struct Rendering: Sendable {
        public let script: String
        public let prefixRoutes: [PrefixRoute]
        public let warnings: [String]
    }

    /// The rendering of `table`, carrying `counters`.
    /// - Throws: `SliceTableError` when the table is malformed or conflicts with itself.
    public func render(_ table: SliceTable, counters: CounterValues = [:]) throws(SliceTableError) -> Rendering {
        switch self {
        case .edge(let hosts):
            let plan = try SteeringPlan(table: table, hosts: hosts)
            let configured = Set(hosts.map(\.name))
            let warnings = plan.unroutableHosts.map {
                "host \($0) holds slices but has no next hop here (add --host \($0)=ADDRESS); its ports are dropped and counted as unroutable"
            } + plan.hostsWithoutIPv6.sorted { $0.key < $1.key }.map { host, prefixes in
                let fix = configured.contains(host) ? "give its IPv6 next hop as --host \(host)=IPV4,IPV6" : "add --host \(host)=IPV4,IPV6"
                return "host \(host) leases IPv6 prefix(es) \(prefixes.map(\.description).joined(separator: ", ")) but has no IPv6 next hop here (\(fix)); they are dropped"
            }
            return Rendering(script: EdgeRuleset.render(plan, counters: counters) + EdgeRuleset.renderIPv6(plan), prefixRoutes: plan.prefixRoutes, warnings: warnings)
        case .hostGuard(let host):
            return Rendering(script: try HostGuardRuleset.render(table, host: host, counters: counters), prefixRoutes: [], warnings: [])
        }
    }
}

/// Keeps the kernel's rules equal to the newest good slice table. A table that fails the checks
/// or that nft refuses leaves the rules in force untouched; a change made by someone else is
/// found by `reconcile` and undone.
public actor EdgeController {
    public let role: EdgeRole
    private let table: OwnedTable
    /// The edge's IPv6 table, applied in the same transaction as `table`; nil for a guard.
    private let table6: OwnedTable?
    private let routes: PolicyRoutes?
    private let prefixRoutes: PrefixRoutes?
    /// The last table applied, the rules' shape as nft listed them right after (nil when they
    /// could not be listed then, so the next reconcile lists and applies them again), and the
    /// prefix routes installed with it.
    private var applied: (table: SliceTable, shape: String?, prefixRoutes: [PrefixRoute])?
    /// The prefix routes the last successful sync wrote, which `apply` need not write again.
    private var syncedPrefixRoutes: [PrefixRoute]?

    /// - Parameter namespace: the network namespace (`ip netns` name) to program; nil for this
    ///   process's own.
    public init(role: EdgeRole, namespace: String? = nil) {
        self.role = role
        table = OwnedTable(name: role.tableName, namespace: namespace)
        if case .edge(let hosts) = role {
            routes = PolicyRoutes(hosts: hosts, namespace: namespace)
            prefixRoutes = PrefixRoutes(namespace: namespace)
            table6 = OwnedTable(name: EdgeRuleset.tableName6, family: "ip6", namespace: namespace)
        } else {
            routes = nil
            prefixRoutes = nil
            table6 = nil
        }
    }

    public var appliedVersion: Int64? { applied?.table.version }

    /// Installs the policy routes and the IPv6 rule (edge role); the nftables tables and prefix
    /// routes follow with the first slice table.
    public func start() throws(EdgeError) {
        try routes?.install()
        try prefixRoutes?.installRule()
    }

    /// Checks, renders and applies `newTable`: the nftables tables in one transaction, then the
    /// prefix routes in the same step when they differ from the last applied (most versions
    /// change slices only, and reading and writing the routes is two runs of `ip`; routes
    /// changed behind the edge's back are for `reconcile`).
    /// - Returns: warnings about the table that did not stop it from being applied.
    /// - Throws: `SliceTableError` or `EdgeError`; when the rules failed, the previous ones stay
    ///   in force; when only the routes failed, the new table is the applied one and the next
    ///   table or reconcile writes its routes.
    @discardableResult
    public func apply(_ newTable: SliceTable) throws -> [String] {
        let rendering = try role.render(newTable, counters: try table.counters())
        try table.apply(rendering.script)
        // The rules are in force now, so this table is the applied one whatever the routes do
        // (else a reconcile would put the previous table back); a listing that fails here
        // must not undo that verdict.
        applied = (newTable, try? shape(), rendering.prefixRoutes)
        try syncPrefixRoutes(rendering.prefixRoutes)
        return rendering.warnings
    }

    /// Writes `routes` unless the last sync that succeeded wrote them already; `restoring`
    /// (reconcile found them changed from outside) installs the rule and an empty table first
    /// and writes them whatever was synced.
    private func syncPrefixRoutes(_ routes: [PrefixRoute], restoring: Bool = false) throws(EdgeError) {
        guard let prefixRoutes, restoring || routes != syncedPrefixRoutes else { return }
        syncedPrefixRoutes = nil  // unknown until this sync succeeds
        if restoring { try prefixRoutes.installRule() }
        try prefixRoutes.sync(routes)
        syncedPrefixRoutes = routes
    }

    /// The tables' listings with counters blanked; nil when the main table is missing.
    private func shape() throws(EdgeError) -> String? {
        guard let listing = try table.listing() else { return nil }
        return OwnedTable.shape(ofListing: listing + (try table6?.listing() ?? ""))
    }

    /// Puts back the last applied rules (and routes) when they were changed or removed from
    /// outside. - Returns: what was restored, or nil when everything was in place.
    public func reconcile() throws -> String? {
        var restored: [String] = []
        if let routes, try !routes.areInPlace() {
            try routes.install()
            restored.append("policy routes")
        }
        if let prefixRoutes, let applied, try !prefixRoutes.areInPlace(applied.prefixRoutes) {
            try syncPrefixRoutes(applied.prefixRoutes, restoring: true)
            restored.append("IPv6 prefix routes")
        }
        if let applied {
            // A missing table counts as changed even when the listing after the last apply
            // failed too, so both compare as nil.
            let now = try shape()
            if now == nil || now != applied.shape {
                try apply(applied.table)
                restored.append("nftables table \(role.tableName)")
            }
        }
        return restored.isEmpty ? nil : restored.joined(separator: " and ")
    }

    /// Removes what this process installed, and nothing else.
    public func shutdown() throws(EdgeError) {
        routes?.removeQuietly()
        prefixRoutes?.removeQuietly()
        syncedPrefixRoutes = nil
        try table.remove()
        try table6?.remove()
    }
}
