import PortSliceCore

/// What the cache holds for a name and type.
public enum DNSCachedAnswer: Hashable, Sendable {
    case addresses([IPAddress])
    /// NXDOMAIN: the name does not exist.
    case nameError
    /// NOERROR without records of the type asked (RFC 2308's NODATA).
    case noData
}

/// A bounded cache of answers for a stub resolver: positive answers until their TTL, negative
/// ones (RFC 2308) for their negative TTL, least recently used evicted first, every operation
/// O(1).
///
/// Entries are keyed by the lowercased name, the type and, when the upstream answered with an
/// EDNS Client Subnet scope, by the client network that scope covers (RFC 7871 section 7.3.1):
/// an answer scoped to 198.51.100.0/24 serves clients in that /24 only, one with scope 0 or no
/// ECS serves everyone.
///
/// Not thread-safe, by design: it belongs to one event loop, which is why it is a class that
/// is explicitly not `Sendable` and time is passed in rather than read inside.
public final class DNSCache {
    /// Different scopes kept per name and type; bounds the scan a lookup does.
    public static let maximumScopesPerName = 8

    public let capacity: Int
    /// TTLs are cut to this (a day by default), so a record with a huge TTL cannot pin a stale
    /// answer.
    public let maximumTTL: UInt32
    /// TTLs are raised to this; 0 keeps the upstream's TTLs, and then a TTL of 0 is not cached.
    public let minimumTTL: UInt32
    /// RFC 2308 section 5 suggests one to three hours at most for negative answers.
    public let maximumNegativeTTL: UInt32

    public private(set) var count = 0

    private struct Key: Hashable {
        let name: DNSName
        let type: UInt16
    }

    /// The client network an entry serves: `length` 0 means every client.
    private struct Scope: Equatable {
        let isIPv6: Bool
        let length: UInt8
        let bits: UInt128

        static let everyone = Scope(isIPv6: false, length: 0, bits: 0)

        func covers(_ client: ClientSubnet?) -> Bool {
            if length == 0 { return true }
            guard let client, client.address.isIPv6 == isIPv6 else { return false }
            return client.address.leftAlignedBits & leftAlignedMask(length) == bits
        }
    }

    /// An entry's plain-data part. Names and answers live in arrays of their own so that
    /// walking buckets and the recency list copies no reference and costs no retain.
    private struct Node {
        var scope: Scope
        var expiry: ContinuousClock.Instant
        var newer: Int32
        var older: Int32
        var nextInBucket: Int32
    }

    private static let none: Int32 = -1
    private static let vacantKey = Key(name: .root, type: 0)

    private var nodes: [Node] = []
    private var keys: [Key] = []
    private var answers: [DNSCachedAnswer] = []
    private var freeNodes: [Int32] = []
    private var buckets: [Key: Int32] = [:]
    private var newest = DNSCache.none
    private var oldest = DNSCache.none

    /// - Parameters:
    ///   - capacity: entries kept at most (each name, type and scope is one entry).
    public init(
        capacity: Int, maximumTTL: UInt32 = 86_400, minimumTTL: UInt32 = 0, maximumNegativeTTL: UInt32 = 10_800
    ) {
        precondition(capacity > 0 && capacity < Int(Int32.max), "cache capacity must be 1..<2^31")
        self.capacity = capacity
        self.maximumTTL = maximumTTL
        self.minimumTTL = min(minimumTTL, maximumTTL)
        self.maximumNegativeTTL = maximumNegativeTTL
        buckets.reserveCapacity(min(capacity, 1 << 16))
    }

    /// The live answer for `name` and `type` that covers `subnet` (the one the query would
    /// send; nil without ECS), preferring the narrowest scope; nil on a miss.
    public func lookup(
        _ name: DNSName, type: DNSRecordType, subnet: ClientSubnet?, now: ContinuousClock.Instant
    ) -> DNSCachedAnswer? {
        let key = Key(name: name, type: type.rawValue)
        var index = buckets[key] ?? Self.none
        var best = Self.none
        while index != Self.none {
            let next = nodes[Int(index)].nextInBucket
            if nodes[Int(index)].expiry <= now {
                remove(index)
            } else if nodes[Int(index)].scope.covers(subnet)
                && (best == Self.none || nodes[Int(index)].scope.length > nodes[Int(best)].scope.length) {
                best = index
            }
            index = next
        }
        guard best != Self.none else { return nil }
        moveToNewest(best)
        return answers[Int(best)]
    }

    /// Keeps what a response says, if it may be kept: addresses for their TTL; NXDOMAIN and
    /// NODATA for their negative TTL when an SOA gave one (RFC 2308 section 5: without it a
    /// negative answer is not cached); nothing for truncated answers or server failures.
    /// Call it only with a response that `matches` its query.
    public func store(_ response: DNSResponse, now: ContinuousClock.Instant) {
        guard !response.header.isTruncated else { return }
        let answer: DNSCachedAnswer
        let ttl: UInt32
        if !response.addresses.isEmpty, let positiveTTL = response.ttl {
            answer = .addresses(response.addresses)
            ttl = positiveTTL
        } else if let negativeTTL = response.negativeTTL {
            answer = response.responseCode == .nameError ? .nameError : .noData
            ttl = negativeTTL
        } else {
            return
        }
        insert(answer, for: response.question.name, type: response.question.type, scope: response.clientSubnet, ttl: ttl, now: now)
    }

    /// Keeps `answer` for `ttl` seconds (within the cache's limits) for the clients `scope`
    /// covers: the ECS option of the answer, whose scope prefix (cut to its source prefix,
    /// as an answer cannot be more specific than the question) decides; nil or scope 0 means
    /// every client. Replaces an entry with the same name, type and scope.
    public func insert(
        _ answer: DNSCachedAnswer, for name: DNSName, type: DNSRecordType, scope: ClientSubnet?, ttl: UInt32,
        now: ContinuousClock.Instant
    ) {
        let isNegative = if case .addresses = answer { false } else { true }
        let kept = max(minimumTTL, min(ttl, isNegative ? min(maximumNegativeTTL, maximumTTL) : maximumTTL))
        guard kept > 0 else { return }
        let expiry = now + .seconds(Int64(kept))
        let entryScope: Scope
        if let scope {
            let length = min(scope.scopePrefixLength, scope.sourcePrefixLength)
            entryScope = length == 0
                ? .everyone
                : Scope(isIPv6: scope.address.isIPv6, length: length,
                        bits: scope.address.leftAlignedBits & leftAlignedMask(length))
        } else {
            entryScope = .everyone
        }

        let key = Key(name: name, type: type.rawValue)
        var index = buckets[key] ?? Self.none
        var scopes = 0
        var lastInBucket = Self.none
        while index != Self.none {
            if nodes[Int(index)].scope == entryScope {
                answers[Int(index)] = answer
                nodes[Int(index)].expiry = expiry
                moveToNewest(index)
                return
            }
            scopes += 1
            lastInBucket = index
            index = nodes[Int(index)].nextInBucket
        }
        if scopes >= Self.maximumScopesPerName {
            remove(lastInBucket)
        } else if count >= capacity {
            remove(oldest)
        }
        let storedKey = Key(name: name.lowercased(), type: type.rawValue)
        let node = Node(
            scope: entryScope, expiry: expiry, newer: Self.none, older: newest,
            nextInBucket: buckets[storedKey] ?? Self.none)
        let slot: Int32
        if let free = freeNodes.popLast() {
            slot = free
            nodes[Int(slot)] = node
            keys[Int(slot)] = storedKey
            answers[Int(slot)] = answer
        } else {
            slot = Int32(nodes.count)
            nodes.append(node)
            keys.append(storedKey)
            answers.append(answer)
        }
        if newest != Self.none { nodes[Int(newest)].newer = slot }
        newest = slot
        if oldest == Self.none { oldest = slot }
        buckets[storedKey] = slot
        count += 1
    }

    /// Forgets everything, as after the resolver configuration changes.
    public func removeAll() {
        nodes.removeAll(keepingCapacity: true)
        keys.removeAll(keepingCapacity: true)
        answers.removeAll(keepingCapacity: true)
        freeNodes.removeAll(keepingCapacity: true)
        buckets.removeAll(keepingCapacity: true)
        newest = Self.none
        oldest = Self.none
        count = 0
    }

    private func unlinkFromRecency(_ index: Int32) {
        let newer = nodes[Int(index)].newer
        let older = nodes[Int(index)].older
        if newer != Self.none { nodes[Int(newer)].older = older } else { newest = older }
        if older != Self.none { nodes[Int(older)].newer = newer } else { oldest = newer }
    }

    private func moveToNewest(_ index: Int32) {
        guard newest != index else { return }
        unlinkFromRecency(index)
        nodes[Int(index)].older = newest
        nodes[Int(index)].newer = Self.none
        nodes[Int(newest)].newer = index
        newest = index
        if oldest == Self.none { oldest = index }
    }

    private func remove(_ index: Int32) {
        unlinkFromRecency(index)
        let key = keys[Int(index)]
        let next = nodes[Int(index)].nextInBucket
        var cursor = buckets[key] ?? Self.none
        if cursor == index {
            if next == Self.none { buckets[key] = nil } else { buckets[key] = next }
        } else {
            while cursor != Self.none {
                let following = nodes[Int(cursor)].nextInBucket
                if following == index {
                    nodes[Int(cursor)].nextInBucket = next
                    break
                }
                cursor = following
            }
        }
        // Drop the references so a freed slot holds no name or addresses.
        keys[Int(index)] = Self.vacantKey
        answers[Int(index)] = .noData
        freeNodes.append(index)
        count -= 1
    }
}

@available(*, unavailable, message: "DNSCache belongs to one event loop")
extension DNSCache: Sendable {}

extension IPAddress {
    var isIPv6: Bool {
        if case .v6 = self { true } else { false }
    }
}
