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
    /// Extends every live lease of `host`; see `AllocatorModel.renewAll`.
    func renewAll(host: String, timeToLive: Duration, now: Moment) async throws -> [Lease]
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

    public var name: String {
        switch self {
        case .host(let name), .edge(let name): name
        }
    }

    public var description: String {
        switch self {
        case .host(let name): "host \(name)"
        case .edge(let name): "edge \(name)"
        }
    }
}
