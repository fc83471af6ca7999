import PortSliceCore
import PortSliceSockets

/// One class of slices the agent keeps: how many, and of which traits (the allocator grants
/// the closest it has).
public struct LeaseWant: Hashable, Sendable, CustomStringConvertible {
    public let count: Int
    public let traits: Traits

    public init(count: Int, traits: Traits = .unknown) {
        self.count = count
        self.traits = traits
    }

    /// Parses `COUNT[,KEY=VALUE...]` with keys country, region, city, category, reputation and
    /// tag (repeatable), such as `2,country=DE,category=hosting`.
    public init(parsing text: String) throws(AgentError) {
        let fields = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard let count = Int(fields[0]), (1...64).contains(count) else {
            throw AgentError("'\(text)': start with the number of slices, 1 to 64, such as 2,country=DE,category=hosting")
        }
        var values: [String: String] = [:]
        var tags: [String] = []
        for field in fields.dropFirst() {
            let pair = field.split(separator: "=", maxSplits: 1).map(String.init)
            guard pair.count == 2, ["country", "region", "city", "category", "reputation", "tag"].contains(pair[0]) else {
                throw AgentError("'\(text)': '\(field)' is not KEY=VALUE with a key of country, region, city, category, reputation or tag")
            }
            if pair[0] == "tag" { tags.append(pair[1]) } else { values[pair[0]] = pair[1] }
        }
        do {
            let country = try values["country"].map { try CountryCode(parsing: $0) }
            traits = try Traits(
                country: country, region: try values["region"].map { try RegionCode(parsing: $0, country: country) }, city: values["city"],
                category: try values["category"].map { try Category(parsing: $0) } ?? .unknown,
                reputation: try values["reputation"].map { try ReputationTier(parsing: $0) }, tags: tags)
        } catch {
            throw AgentError("'\(text)': \(error)")
        }
        self.count = count
    }

    public var description: String { "\(count) slice(s) of \(traits.summary)" }
}

/// A slice this host holds now, from one of its leases.
public struct HeldSlice: Hashable, Sendable, CustomStringConvertible {
    public let leaseID: Int64
    public let host: String
    public let slice: EgressSlice
    /// The slice's number within its address's plan.
    public let index: Int
    /// The traits of the slice's address.
    public let traits: Traits

    public init(leaseID: Int64, host: String, slice: EgressSlice, index: Int, traits: Traits) {
        self.leaseID = leaseID
        self.host = host
        self.slice = slice
        self.index = index
        self.traits = traits
    }

    public var description: String { "lease \(leaseID) (\(slice))" }
}

/// An IPv6 prefix this host holds now, from one of its prefix leases: each client of the proxy
/// leaves from an address of its own inside it.
public struct HeldPrefix: Hashable, Sendable, CustomStringConvertible {
    public let leaseID: Int64
    public let host: String
    public let prefix: IPv6Prefix
    /// The traits of the pool prefix it was cut from.
    public let traits: Traits

    public init(leaseID: Int64, host: String, prefix: IPv6Prefix, traits: Traits) {
        self.leaseID = leaseID
        self.host = host
        self.prefix = prefix
        self.traits = traits
    }

    public var description: String { "prefix lease \(leaseID) (\(prefix))" }
}

/// What the agent holds at one moment and hands to the proxy: slices for IPv4 flows, prefixes
/// for IPv6 ones, each sorted by lease.
public struct Holdings: Hashable, Sendable {
    public var slices: [HeldSlice]
    public var prefixes: [HeldPrefix]

    public init(slices: [HeldSlice] = [], prefixes: [HeldPrefix] = []) {
        self.slices = slices.sorted { $0.leaseID < $1.leaseID }
        self.prefixes = prefixes.sorted { $0.leaseID < $1.leaseID }
    }
}

/// An agent setting or step that failed, worded for the operator or the log.
public struct AgentError: Error, Hashable, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
