import Foundation
import PortSliceCore

// The request and answer bodies of the allocator's API, JSON in both directions. Times are
// milliseconds since 1970; addresses, port sets, traits and states have their core types,
// which encode as the strings the API has always used.

/// Every error answer: what was wrong and, for bad input, which field.
public struct ErrorBody: Codable, Sendable, Hashable {
    public let error: String
    public let field: String?

    public init(error: String, field: String? = nil) {
        self.error = error
        self.field = field
    }

    /// The words the allocator answers with while its database cannot be reached.
    public static let databaseUnavailable = "database unavailable"
}

/// `POST /v1/hosts`.
public struct NewHost: Codable, Sendable, Hashable {
    public let name: String
    public let labels: [String: String]?

    public init(name: String, labels: [String: String]? = nil) {
        self.name = name
        self.labels = labels
    }
}

/// `POST /v1/edges`.
public struct NewEdge: Codable, Sendable, Hashable {
    public let name: String

    public init(name: String) { self.name = name }
}

/// `POST /v1/viewers`.
public struct NewViewer: Codable, Sendable, Hashable {
    public let name: String

    public init(name: String) { self.name = name }
}

/// A token made for a host, an edge or a viewer (on creation or rotation). Shown once: the allocator
/// keeps only its hash.
public struct IssuedToken: Codable, Sendable, Hashable {
    public let name: String
    public let token: String

    public init(name: String, token: String) {
        self.name = name
        self.token = token
    }
}

/// `POST /v1/leases` and `POST /v1/prefix-leases`: how many slices or prefixes, for how long,
/// of which traits. The trait fields sit
/// beside the others in the JSON object (`{"count": 2, "country": "US"}`).
public struct AcquireRequest: Codable, Sendable, Hashable {
    public let count: Int?
    public let ttlSeconds: Int64?
    public let traits: Traits

    public init(count: Int? = nil, ttlSeconds: Int64? = nil, traits: Traits = .unknown) {
        self.count = count
        self.ttlSeconds = ttlSeconds
        self.traits = traits
    }

    enum CodingKeys: String, CodingKey { case count, ttlSeconds }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        count = try container.decodeIfPresent(Int.self, forKey: .count)
        ttlSeconds = try container.decodeIfPresent(Int64.self, forKey: .ttlSeconds)
        traits = try FlatTraits(from: decoder).traits
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(count, forKey: .count)
        try container.encodeIfPresent(ttlSeconds, forKey: .ttlSeconds)
        try FlatTraits(traits).encode(to: encoder)
    }
}

/// `POST /v1/leases/renew` and `POST /v1/leases/{id}/renew`; an empty body asks for the
/// allocator's default lease time.
public struct RenewRequest: Codable, Sendable, Hashable {
    public let ttlSeconds: Int64?

    public init(ttlSeconds: Int64? = nil) { self.ttlSeconds = ttlSeconds }

    /// A renewal's body as the allocator reads it: empty asks for the default lease time, the
    /// plain forms agents send are read by `init(plainJSON:)`, anything else by `JSONDecoder`.
    /// - Throws: the decoder's error for a body that is no renewal.
    public init(body: some Collection<UInt8>) throws {
        if body.isEmpty {
            self.init()
        } else if let plain = RenewRequest(plainJSON: body) {
            self = plain
        } else {
            self = try JSONDecoder().decode(RenewRequest.self, from: Data(body))
        }
    }

    /// The body as agents send it, `{}` or `{"ttlSeconds": N}` with any spacing, read without
    /// `JSONDecoder`: every host sends one each period, and decoding it was 3% of an
    /// allocator's CPU in `bench alloc`'s renewal round. Nil for any other text, which
    /// `JSONDecoder` reads (and names what is wrong with).
    public init?(plainJSON body: some Collection<UInt8>) {
        var index = body.startIndex
        func skipSpaces() {
            while index < body.endIndex, [0x20, 0x09, 0x0A, 0x0D].contains(body[index]) { body.formIndex(after: &index) }
        }
        func take(_ expected: StaticString) -> Bool {
            var at = index
            for byte in UnsafeBufferPointer(start: expected.utf8Start, count: expected.utf8CodeUnitCount) {
                guard at < body.endIndex, body[at] == byte else { return false }
                body.formIndex(after: &at)
            }
            index = at
            return true
        }
        skipSpaces()
        guard take("{") else { return nil }
        skipSpaces()
        var ttlSeconds: Int64?
        if !take("}") {
            guard take(#""ttlSeconds""#) else { return nil }
            skipSpaces()
            guard take(":") else { return nil }
            skipSpaces()
            let first = index
            var value: Int64 = 0, digits = 0
            while index < body.endIndex, (0x30...0x39).contains(body[index]), digits < 10 {
                value = value * 10 + Int64(body[index] - 0x30)
                digits += 1
                body.formIndex(after: &index)
            }
            // Leading zeros, and numbers past any lease time, are JSONDecoder's to judge.
            guard (1...9).contains(digits), digits == 1 || body[first] != 0x30 else { return nil }
            skipSpaces()
            guard take("}") else { return nil }
            ttlSeconds = value
        }
        skipSpaces()
        guard index == body.endIndex else { return nil }
        self.init(ttlSeconds: ttlSeconds)
    }
}

/// A lease as the API shows it.
public struct LeaseBody: Codable, Sendable, Hashable {
    public let id: Int64
    public let host: String
    public let address: IPv4Address
    /// The slice's index on its address.
    public let slice: Int
    public let ports: PortSet
    public let start: Int64
    public let expires: Int64
    /// The traits of the slice's address (absent in answers from older allocators).
    public let traits: Traits?

    public init(_ lease: Lease, traits: Traits?) {
        id = lease.id
        host = lease.host
        address = lease.slice.address
        slice = lease.slice.index
        ports = lease.ports
        start = lease.start.milliseconds
        expires = lease.expires.milliseconds
        self.traits = traits
    }

    public var sliceID: SliceID { SliceID(address: address, index: slice) }
    public var egressSlice: EgressSlice { EgressSlice(address: address, ports: ports) }
}

/// A prefix lease as the API shows it.
public struct PrefixLeaseBody: Codable, Sendable, Hashable {
    public let id: Int64
    public let host: String
    public let prefix: IPv6Prefix
    public let start: Int64
    public let expires: Int64
    /// The traits of the pool prefix it was cut from.
    public let traits: Traits?

    public init(_ lease: PrefixLease, traits: Traits?) {
        id = lease.id
        host = lease.host
        prefix = lease.prefix
        start = lease.start.milliseconds
        expires = lease.expires.milliseconds
        self.traits = traits
    }
}

/// Leases of slices and, from allocators that lease IPv6 prefixes, of prefixes: the answer of
/// listing, renewing and acquiring (acquiring prefixes answers an empty `leases`).
public struct LeaseList: Codable, Sendable, Hashable {
    public let leases: [LeaseBody]
    /// Absent in answers from allocators older than IPv6 prefixes.
    public let prefixLeases: [PrefixLeaseBody]?

    public init(leases: [LeaseBody], prefixLeases: [PrefixLeaseBody]? = nil) {
        self.leases = leases
        self.prefixLeases = prefixLeases
    }
}

/// `POST /v1/pool`: an address, its traits (beside the other fields, as in `AcquireRequest`)
/// and how to cut it: `sliceSize` ports per slice (2048 by default) or `slices` slices, over
/// `range` (1024-65535 by default).
public struct NewAddress: Codable, Sendable, Hashable {
    public let address: IPv4Address
    public let traits: Traits
    public let range: PortRange?
    public let sliceSize: Int?
    public let slices: Int?

    public init(address: IPv4Address, traits: Traits = .unknown, range: PortRange? = nil, sliceSize: Int? = nil, slices: Int? = nil) {
        self.address = address
        self.traits = traits
        self.range = range
        self.sliceSize = sliceSize
        self.slices = slices
    }

    enum CodingKeys: String, CodingKey { case address, range, sliceSize, slices }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        address = try container.decodeParsed(.address) { try IPv4Address(parsing: $0) }
        range = try container.decodeParsedIfPresent(.range) { try PortRange(parsing: $0) }
        sliceSize = try container.decodeIfPresent(Int.self, forKey: .sliceSize)
        slices = try container.decodeIfPresent(Int.self, forKey: .slices)
        traits = try FlatTraits(from: decoder).traits
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(address, forKey: .address)
        try container.encodeIfPresent(range?.description, forKey: .range)
        try container.encodeIfPresent(sliceSize, forKey: .sliceSize)
        try container.encodeIfPresent(slices, forKey: .slices)
        try FlatTraits(traits).encode(to: encoder)
    }
}

/// `POST /v1/prefixes`: an IPv6 prefix of the pool, its traits (beside the other fields, as
/// in `NewAddress`) and the length of the prefixes leased out of it (the allocator's
/// `--prefix-length`, 64 by default).
public struct NewPrefix: Codable, Sendable, Hashable {
    public let prefix: IPv6Prefix
    public let traits: Traits
    public let leaseLength: Int?

    public init(prefix: IPv6Prefix, traits: Traits = .unknown, leaseLength: Int? = nil) {
        self.prefix = prefix
        self.traits = traits
        self.leaseLength = leaseLength
    }

    enum CodingKeys: String, CodingKey { case prefix, leaseLength }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        prefix = try container.decodeParsed(.prefix) { try IPv6Prefix(parsing: $0) }
        leaseLength = try container.decodeIfPresent(Int.self, forKey: .leaseLength)
        traits = try FlatTraits(from: decoder).traits
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(prefix, forKey: .prefix)
        try container.encodeIfPresent(leaseLength, forKey: .leaseLength)
        try FlatTraits(traits).encode(to: encoder)
    }
}

/// An IPv6 prefix of the pool as `GET /v1/prefixes` shows it.
public struct PoolPrefixBody: Codable, Sendable, Hashable {
    public let prefix: IPv6Prefix
    public let traits: Traits
    /// `traits` in a line, as tables print it.
    public let summary: String
    public let leaseLength: Int
    /// Being drained: no new leases; it can be removed once its leases and quarantines end.
    public let draining: Bool

    public init(_ pool: PoolPrefix) {
        prefix = pool.prefix
        traits = pool.traits
        summary = pool.traits.summary
        leaseLength = pool.leaseLength
        draining = pool.draining
    }
}

public struct PrefixList: Codable, Sendable, Hashable {
    public let prefixes: [PoolPrefixBody]

    public init(prefixes: [PoolPrefixBody]) { self.prefixes = prefixes }
}

/// A host as `GET /v1/hosts` shows it.
public struct HostBody: Codable, Sendable, Hashable {
    public let name: String
    public let labels: [String: String]
    /// Slice leases it holds now.
    public let leases: Int
    /// IPv6 prefix leases it holds now.
    public let prefixLeases: Int
    /// When it last renewed (or acquired) a lease it holds now; absent when it holds none.
    public let lastRenewal: Int64?
    /// It holds leases and has not renewed for more than half the lease time it asked for
    /// (agents renew every third of it): its leases are at risk.
    public let renewalLate: Bool
    /// The trait classes its current leases were asked for.
    public let wants: [Traits]

    public init(name: String, labels: [String: String], leases: Int, prefixLeases: Int, lastRenewal: Int64?, renewalLate: Bool, wants: [Traits]) {
        self.name = name
        self.labels = labels
        self.leases = leases
        self.prefixLeases = prefixLeases
        self.lastRenewal = lastRenewal
        self.renewalLate = renewalLate
        self.wants = wants
    }
}

public struct HostList: Codable, Sendable, Hashable {
    public let hosts: [HostBody]

    public init(hosts: [HostBody]) { self.hosts = hosts }
}

/// An edge as `GET /v1/edges` shows it: the table version it reported applying when it last
/// polled `GET /v1/slices?applied=VERSION`.
public struct EdgeBody: Codable, Sendable, Hashable {
    public let name: String
    /// Absent until the edge reports.
    public let appliedVersion: Int64?
    /// When it last reported (milliseconds since 1970).
    public let lastReport: Int64?
    /// How many table versions it is behind the current one; absent until it reports.
    public let versionsBehind: Int64?

    public init(name: String, appliedVersion: Int64?, lastReport: Int64?, versionsBehind: Int64?) {
        self.name = name
        self.appliedVersion = appliedVersion
        self.lastReport = lastReport
        self.versionsBehind = versionsBehind
    }
}

public struct EdgeList: Codable, Sendable, Hashable {
    /// The slice table's version now.
    public let tableVersion: Int64
    public let edges: [EdgeBody]

    public init(tableVersion: Int64, edges: [EdgeBody]) {
        self.tableVersion = tableVersion
        self.edges = edges
    }
}

/// An address of the pool as `GET /v1/pool` shows it.
public struct PoolAddressBody: Codable, Sendable, Hashable {
    public let address: IPv4Address
    public let traits: Traits
    /// `traits` in a line, as tables print it: the trait class's name.
    public let summary: String
    /// Being drained: no new leases; it leaves the pool once its leases end.
    public let draining: Bool

    public init(address: IPv4Address, traits: Traits, draining: Bool) {
        self.address = address
        self.traits = traits
        summary = traits.summary
        self.draining = draining
    }
}

public struct PoolList: Codable, Sendable, Hashable {
    public let addresses: [PoolAddressBody]

    public init(addresses: [PoolAddressBody]) { self.addresses = addresses }
}

/// `GET /v1/who`: the assignment-log records covering that address (and port, for IPv4) and
/// moment: slice records for an IPv4 address, prefix records for an IPv6 one.
public struct Holders: Codable, Sendable, Hashable {
    public let records: [AssignmentRecord]
    /// Absent in answers about IPv4 addresses and from allocators older than IPv6 prefixes.
    public let prefixRecords: [PrefixAssignmentRecord]?

    public init(records: [AssignmentRecord], prefixRecords: [PrefixAssignmentRecord]? = nil) {
        self.records = records
        self.prefixRecords = prefixRecords
    }
}

/// Slices of one trait class per state, with a warning when few are left.
public struct ClassCapacity: Codable, Sendable, Hashable {
    public let traits: Traits
    /// `traits` in a line, as tables print it.
    public let summary: String
    public let free: Int
    public let leased: Int
    public let quarantined: Int
    public let draining: Int
    public let warning: String?

    public init(traits: Traits, free: Int, leased: Int, quarantined: Int, draining: Int, warning: String?) {
        self.traits = traits
        summary = traits.summary
        self.free = free
        self.leased = leased
        self.quarantined = quarantined
        self.draining = draining
        self.warning = warning
    }
}

/// `GET /v1/capacity`.
public struct CapacityReport: Codable, Sendable, Hashable {
    public let classes: [ClassCapacity]

    public init(classes: [ClassCapacity]) { self.classes = classes }
}

/// `GET /readyz`.
public struct Readiness: Codable, Sendable, Hashable {
    public let ready: Bool
    /// Why not, when not.
    public let reason: String?

    public init(ready: Bool, reason: String?) {
        self.ready = ready
        self.reason = reason
    }
}

// MARK: - Traits as fields of the enclosing object

/// The trait fields a request carries beside its own: each is checked as it is read, and a
/// refused one is named by the decoding error's coding path.
struct FlatTraits: Codable {
    let traits: Traits

    init(_ traits: Traits) { self.traits = traits }

    enum CodingKeys: String, CodingKey { case country, region, city, category, reputation, tags }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        let country = try container.decodeParsedIfPresent(.country) { try CountryCode(parsing: $0) }
        let region = try container.decodeParsedIfPresent(.region) { try RegionCode(parsing: $0, country: country) }
        let city = try container.decodeIfPresent(String.self, forKey: .city)
        let category = try container.decodeParsedIfPresent(.category) { try Category(parsing: $0) } ?? .unknown
        let reputation = try container.decodeParsedIfPresent(.reputation) { try ReputationTier(parsing: $0) }
        let tags = try container.decodeIfPresent([String].self, forKey: .tags) ?? []
        do {
            traits = try Traits(country: country, region: region, city: city, category: category, reputation: reputation, tags: tags)
        } catch {
            throw DecodingError.dataCorruptedError(forKey: .region, in: container, debugDescription: "\(error)")
        }
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encodeIfPresent(traits.country?.description, forKey: .country)
        try container.encodeIfPresent(traits.region?.description, forKey: .region)
        try container.encodeIfPresent(traits.city, forKey: .city)
        if traits.category != .unknown { try container.encode(traits.category.rawValue, forKey: .category) }
        try container.encodeIfPresent(traits.reputation?.rawValue, forKey: .reputation)
        if !traits.tags.isEmpty { try container.encode(traits.tags, forKey: .tags) }
    }
}

extension KeyedDecodingContainer {
    /// A string field read with `parse`; a refusal becomes a decoding error naming the field.
    func decodeParsedIfPresent<T>(_ key: Key, _ parse: (String) throws -> T) throws -> T? {
        guard let text = try decodeIfPresent(String.self, forKey: key) else { return nil }
        do {
            return try parse(text)
        } catch {
            throw DecodingError.dataCorruptedError(forKey: key, in: self, debugDescription: "\(error)")
        }
    }

    func decodeParsed<T>(_ key: Key, _ parse: (String) throws -> T) throws -> T {
        guard let value = try decodeParsedIfPresent(key, parse) else {
            throw DecodingError.keyNotFound(key, DecodingError.Context(codingPath: codingPath, debugDescription: "'\(key.stringValue)' is missing"))
        }
        return value
    }
}
