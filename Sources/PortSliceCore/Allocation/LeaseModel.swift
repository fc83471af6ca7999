/// A point in time, in milliseconds since 1970-01-01 UTC: what the store writes and what a
/// controllable test clock advances.
public struct Moment: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public let milliseconds: Int64

    public init(milliseconds: Int64) { self.milliseconds = milliseconds }

    public static func + (moment: Moment, duration: Duration) -> Moment {
        Moment(milliseconds: moment.milliseconds + duration.components.seconds * 1000
            + duration.components.attoseconds / 1_000_000_000_000_000)
    }

    public static func < (lhs: Moment, rhs: Moment) -> Bool { lhs.milliseconds < rhs.milliseconds }

    public var description: String { "\(milliseconds) ms" }
}

/// One slice of one address: the unit that is leased.
public struct SliceID: Hashable, Comparable, Sendable, Codable, CustomStringConvertible {
    public let address: IPv4Address
    public let index: Int

    public init(address: IPv4Address, index: Int) {
        self.address = address
        self.index = index
    }

    public static func < (lhs: SliceID, rhs: SliceID) -> Bool { (lhs.address, lhs.index) < (rhs.address, rhs.index) }

    public var description: String { "\(address)#\(index)" }
}

/// A slice held by one host until `expires`.
public struct Lease: Hashable, Sendable, Codable {
    public let id: Int64
    public let host: String
    public let slice: SliceID
    public let ports: PortSet
    public let start: Moment
    public var expires: Moment

    public init(id: Int64, host: String, slice: SliceID, ports: PortSet, start: Moment, expires: Moment) {
        self.id = id
        self.host = host
        self.slice = slice
        self.ports = ports
        self.start = start
        self.expires = expires
    }
}

/// What a slice is doing now.
public enum SliceState: Hashable, Sendable {
    case free
    case leased(Lease)
    /// Released or expired; nobody may have it before `until` (RFC 6888 REQ-8, TIME_WAIT).
    case quarantined(until: Moment)
    /// Free, but its address takes no new leases.
    case draining
}

/// One line of the append-only assignment log (RFC 6888 section 4, RFC 7422): who held which
/// ports of which address, for both TCP and UDP, from `start` until `end` (nil while held).
public struct AssignmentRecord: Hashable, Sendable, Codable {
    public let leaseID: Int64
    public let host: String
    public let slice: SliceID
    public let ports: PortSet
    /// Leases cover both transports of their ports.
    public let protocols: String
    public let start: Moment
    public var end: Moment?

    public init(leaseID: Int64, host: String, slice: SliceID, ports: PortSet, protocols: String, start: Moment, end: Moment?) {
        self.leaseID = leaseID
        self.host = host
        self.slice = slice
        self.ports = ports
        self.protocols = protocols
        self.start = start
        self.end = end
    }

    /// True when the record's host held `port` of `address` at `moment`.
    public func covers(address: IPv4Address, port: UInt16, at moment: Moment) -> Bool {
        slice.address == address && ports.contains(port) && start <= moment && (end.map { moment < $0 } ?? true)
    }
}

/// Why an allocation request was refused. Each case maps to one HTTP status in the API.
public enum AllocationError: Error, Hashable, Sendable, CustomStringConvertible {
    case quarantineTooShort(seconds: Int64)
    case duplicateAddress(IPv4Address)
    case unknownAddress(IPv4Address)
    case addressInUse(IPv4Address, leases: Int, quarantined: Int)
    case badCount(Int)
    case badTimeToLive(seconds: Int64)
    case noCapacity(wanted: Int, granted: Int, traits: String)
    case unknownLease(Int64)
    case notYourLease(Int64, host: String)
    case leaseExpired(Int64)
    case badHostName(String)
    case duplicateHost(String)
    case unknownHost(String)
    case duplicateEdge(String)
    case unknownEdge(String)
    case duplicateViewer(String)
    case unknownViewer(String)
    case duplicatePrefix(IPv6Prefix)
    case overlappingPrefix(IPv6Prefix, existing: IPv6Prefix)
    case unknownPrefix(IPv6Prefix)
    case prefixInUse(IPv6Prefix, leases: Int, quarantined: Int)
    /// The length leased out of a pool prefix must be longer than it and at most 64.
    case badLeaseLength(Int, prefix: IPv6Prefix)
    case noPrefixCapacity(wanted: Int, granted: Int, traits: String)

    public var description: String {
        switch self {
        case .quarantineTooShort(let seconds):
            "quarantine of \(seconds) s is below the 120 s minimum (RFC 6888 REQ-8, TIME_WAIT); use 120 s or more"
        case .duplicateAddress(let address):
            "address \(address) is already in the pool"
        case .unknownAddress(let address):
            "address \(address) is not in the pool"
        case .addressInUse(let address, let leases, let quarantined):
            "address \(address) still has \(leases) lease(s) and \(quarantined) quarantined slice(s); drain it and wait until they run out"
        case .badCount(let count):
            "count \(count) must be from 1 to 64"
        case .badTimeToLive(let seconds):
            "lease time \(seconds) s must be from 10 s to 1 day"
        case .noCapacity(let wanted, let granted, let traits):
            "only \(granted) of \(wanted) slice(s) are free for \(traits); add addresses to that trait class or release leases"
        case .unknownLease(let id):
            "lease \(id) does not exist"
        case .notYourLease(let id, let host):
            "lease \(id) belongs to another host than \(host)"
        case .leaseExpired(let id):
            "lease \(id) has expired; acquire a new lease"
        case .badHostName(let name):
            "host name '\(name)' must be 1-63 characters of lower-case letters, digits, '-' and '.'"
        case .duplicateHost(let name):
            "host '\(name)' already exists"
        case .unknownHost(let name):
            "no host is named '\(name)'"
        case .duplicateEdge(let name):
            "edge '\(name)' already exists"
        case .unknownEdge(let name):
            "no edge is named '\(name)'"
        case .duplicateViewer(let name):
            "viewer '\(name)' already exists"
        case .unknownViewer(let name):
            "no viewer is named '\(name)'"
        case .duplicatePrefix(let prefix):
            "prefix \(prefix) is already in the pool"
        case .overlappingPrefix(let prefix, let existing):
            "prefix \(prefix) overlaps \(existing), which is already in the pool; give each address block once"
        case .unknownPrefix(let prefix):
            "prefix \(prefix) is not in the pool"
        case .prefixInUse(let prefix, let leases, let quarantined):
            "prefix \(prefix) still has \(leases) lease(s) and \(quarantined) quarantined prefix(es); drain it and wait until they run out"
        case .badLeaseLength(let length, let prefix):
            "leaseLength \(length) must be longer than \(prefix)'s /\(prefix.length) and at most 64 (hosts expect a /64)"
        case .noPrefixCapacity(let wanted, let granted, let traits):
            "only \(granted) of \(wanted) prefix(es) are free for \(traits); add IPv6 prefixes to that trait class or release leases"
        }
    }
}
