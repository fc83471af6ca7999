import PortSliceCore

/// Leases kept in a database, with the same rules as `AllocatorModel`, which is the reference
/// the stores are tested against. Every change runs in one transaction: it applies whole or
/// not at all.
public protocol SliceStore: Sendable {
    func add(_ egress: EgressAddress, plan: SlicePlan) async throws
    func drain(_ address: IPv4Address, now: Moment) async throws
    func remove(_ address: IPv4Address, now: Moment) async throws
    func acquire(host: String, traits: Traits, count: Int, timeToLive: Duration, now: Moment) async throws -> [Lease]
    func renew(_ id: Int64, host: String, timeToLive: Duration, now: Moment) async throws -> Lease
    /// Extends every live lease of `host`, slices and prefixes; see `AllocatorModel.renewAll`.
    func renewAll(host: String, timeToLive: Duration, now: Moment) async throws -> HeldLeases
    func release(_ id: Int64, host: String, now: Moment) async throws
    /// Applies expiries and quarantine ends up to `now`.
    func advance(to now: Moment) async throws
    /// Registers a host and returns its token, which is stored only as a hash: this is the one
    /// time it can be read.
    func addHost(_ name: String, labels: [String: String], now: Moment) async throws -> String
    /// The host or edge a token belongs to, or nil for any token that is not a current one.
    func principal(authenticatedBy token: String) async throws -> Principal?
    /// Registers an edge and returns its token (stored only as a hash).
    func addEdge(_ name: String, now: Moment) async throws -> String
    /// A new token for a host or edge; the old one stops working at once.
    func rotateToken(of principal: Principal) async throws -> String
    /// Removes a host: its leases end now and their slices go to quarantine.
    func removeHost(_ name: String, now: Moment) async throws
    func removeEdge(_ name: String) async throws
    /// Registers a viewer (read-only console access) and returns its token (stored only as a hash).
    func addViewer(_ name: String, now: Moment) async throws -> String
    func removeViewer(_ name: String) async throws
    /// Every host with a summary of the leases it holds at `now`.
    func hosts(now: Moment) async throws -> [HostSummary]
    /// Every edge with the table version it last reported applying.
    func edges() async throws -> [EdgeReport]
    /// Records that `edge` has applied table `version` (kept only when it changed).
    func recordApplied(edge: String, version: Int64, now: Moment) async throws
    /// Every address of the pool, in address order.
    func pool() async throws -> [PoolAddress]
    /// Answers when the database does: what readiness checks.
    func ping() async throws
    /// The slice table's version as this process last heard it, and waits for newer ones,
    /// without asking the database.
    var versions: TableVersionFeed { get }
    func leases(of host: String) async throws -> [Lease]
    func allLeases() async throws -> [Lease]
    /// The traits of those of `addresses` that are in the pool: what a host needs to choose
    /// among the addresses it holds slices on.
    func traits(of addresses: Set<IPv4Address>) async throws -> [IPv4Address: Traits]
    /// Every slice with its state and holder, and the version of that picture: it grows
    /// whenever a slice changes hands or addresses come and go.
    func sliceTable() async throws -> SliceTable
    func tableVersion() async throws -> Int64
    /// Slices per trait class and state, for capacity reports and metrics.
    func capacity() async throws -> [SliceCount]
    /// Who held `port` of `address` at `moment`, from the assignment log.
    func who(address: IPv4Address, port: UInt16, at moment: Moment) async throws -> [AssignmentRecord]

    // IPv6 prefixes, with the rules of `AllocatorModel`'s prefix part.
    /// - Throws: `AllocationError.duplicatePrefix` or `.overlappingPrefix`.
    func add(_ pool: PoolPrefix) async throws
    func drain(_ prefix: IPv6Prefix, now: Moment) async throws
    /// Removes a pool prefix once no lease or quarantine remains in it.
    func remove(_ prefix: IPv6Prefix, now: Moment) async throws
    /// Every pool prefix, in address order.
    func prefixes() async throws -> [PoolPrefix]
    func acquirePrefixes(host: String, traits: Traits, count: Int, timeToLive: Duration, now: Moment) async throws -> [PrefixLease]
    func releasePrefix(_ id: Int64, host: String, now: Moment) async throws
    func prefixLeases(of host: String) async throws -> [PrefixLease]
    func allPrefixLeases() async throws -> [PrefixLease]
    /// Who held the prefix covering `address` at `moment`, from the prefix assignment log.
    func who(address: IPv6Address, at moment: Moment) async throws -> [PrefixAssignmentRecord]
}

/// A failure of the database itself (not a refused request: those are `AllocationError`).
public struct StoreError: Error, Hashable, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The database cannot be reached now (down, restarting, failing over, or not answering
/// within the operation's deadline). Nothing was changed by the operation that got it, or, if
/// the connection broke during the commit itself, the change may have been made: a retry
/// is answered as a fresh request.
public struct DatabaseUnavailable: Error, Hashable, Sendable, CustomStringConvertible {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { "database unavailable: \(reason)" }
}

/// Who a token other than the admin's belongs to.
public enum Principal: Hashable, Sendable, CustomStringConvertible {
    case host(String)
    case edge(String)
    case viewer(String)

    public var name: String {
        switch self {
        case .host(let name), .edge(let name), .viewer(let name): name
        }
    }

    public var description: String {
        switch self {
        case .host(let name): "host \(name)"
        case .edge(let name): "edge \(name)"
        case .viewer(let name): "viewer \(name)"
        }
    }
}

/// A host and the leases it holds, for the console.
public struct HostSummary: Hashable, Sendable {
    public let name: String
    public let labels: [String: String]
    public let leases: Int
    public let prefixLeases: Int
    /// The latest renewal (or acquisition) among its leases.
    public let lastRenewal: Moment?
    /// Some lease of it has gone more than half its lease time without renewal.
    public let renewalLate: Bool
    /// The traits its leases were asked for, each once, in the order first asked.
    public let wants: [Traits]
}

/// An edge and the slice-table version it reported applying.
public struct EdgeReport: Hashable, Sendable {
    public let name: String
    public let appliedVersion: Int64?
    public let reported: Moment?
}

/// An address of the pool.
public struct PoolAddress: Hashable, Sendable {
    public let egress: EgressAddress
    public let draining: Bool
}
