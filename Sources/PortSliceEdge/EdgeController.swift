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

    /// The script for `table`, carrying `counters`, and warnings the operator should see.
    /// - Throws: `SliceTableError` when the table is malformed or conflicts with itself.
    public func render(_ table: SliceTable, counters: CounterValues = [:]) throws(SliceTableError) -> (script: String, warnings: [String]) {
        switch self {
        case .edge(let hosts):
            let plan = try SteeringPlan(table: table, hosts: hosts)
            let warnings = plan.unroutableHosts.map {
                "host \($0) holds slices but has no next hop here (add --host \($0)=ADDRESS); its ports are dropped and counted as unroutable"
            }
            return (EdgeRuleset.render(plan, counters: counters), warnings)
        case .hostGuard(let host):
            return (try HostGuardRuleset.render(table, host: host, counters: counters), [])
        }
    }
}

/// Keeps the kernel's rules equal to the newest good slice table. A table that fails the checks
/// or that nft refuses leaves the rules in force untouched; a change made by someone else is
/// found by `reconcile` and undone.
public actor EdgeController {
    public let role: EdgeRole
    private let table: OwnedTable
    private let routes: PolicyRoutes?
    /// The last table applied, and the rules' shape as nft listed them right after.
    private var applied: (table: SliceTable, shape: String)?

    /// - Parameter namespace: the network namespace (`ip netns` name) to program; nil for this
    ///   process's own.
    public init(role: EdgeRole, namespace: String? = nil) {
        self.role = role
        table = OwnedTable(name: role.tableName, namespace: namespace)
        if case .edge(let hosts) = role { routes = PolicyRoutes(hosts: hosts, namespace: namespace) } else { routes = nil }
    }

    public var appliedVersion: Int64? { applied?.table.version }

    /// Installs the policy routes (edge role); the nftables table follows with the first slice table.
    public func start() throws(EdgeError) {
        try routes?.install()
    }

    /// Checks, renders and applies `newTable` in one transaction.
    /// - Returns: warnings about the table that did not stop it from being applied.
    /// - Throws: `SliceTableError` or `EdgeError`; the previous rules then stay in force.
    @discardableResult
    public func apply(_ newTable: SliceTable) throws -> [String] {
        let (script, warnings) = try role.render(newTable, counters: try table.counters())
        try table.apply(script)
        applied = (newTable, OwnedTable.shape(ofListing: try table.listing() ?? ""))
        return warnings
    }

    /// Puts back the last applied rules (and routes) when they were changed or removed from
    /// outside. - Returns: what was restored, or nil when everything was in place.
    public func reconcile() throws -> String? {
        var restored: [String] = []
        if let routes, try !routes.areInPlace() {
            try routes.install()
            restored.append("policy routes")
        }
        if let applied, OwnedTable.shape(ofListing: try table.listing() ?? "") != applied.shape {
            try apply(applied.table)
            restored.append("nftables table \(role.tableName)")
        }
        return restored.isEmpty ? nil : restored.joined(separator: " and ")
    }

    /// Removes what this process installed, and nothing else.
    public func shutdown() throws(EdgeError) {
        routes?.removeQuietly()
        try table.remove()
    }
}
