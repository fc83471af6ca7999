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
    /// The host a token belongs to, or nil for any token that is not a current host's.
    func host(authenticatedBy token: String) async throws -> String?
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

/// What edges steer by: every slice, its state and, when leased, its holder.
public struct SliceTable: Hashable, Sendable, Codable {
    public struct Entry: Hashable, Sendable, Codable {
        public let address: IPv4Address
        public let index: Int
        public let ports: PortSet
        /// free, leased, quarantined or draining.
        public let state: String
        public let host: String?

        public init(address: IPv4Address, index: Int, ports: PortSet, state: String, host: String?) {
            self.address = address
            self.index = index
            self.ports = ports
            self.state = state
            self.host = host
        }
    }

    public let version: Int64
    public let slices: [Entry]

    public init(version: Int64, slices: [Entry]) {
        self.version = version
        self.slices = slices
    }
}

/// How many slices of one trait class are in one state.
public struct SliceCount: Hashable, Sendable {
    public let traits: Traits
    public let state: String
    public let count: Int
}

/// A failure of the database itself (not a refused request: those are `AllocationError`).
public struct StoreError: Error, Hashable, Sendable, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
