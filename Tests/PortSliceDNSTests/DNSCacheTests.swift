import PortSliceCore
import Testing
@testable import PortSliceDNS

@Suite("DNS cache")
struct DNSCacheTests {
    let start = ContinuousClock.now
    let web: [IPAddress] = [.v4(IPv4Address(198, 51, 100, 10))]

    func name(_ text: String) throws -> DNSName { try DNSName(parsing: text) }

    @Test func keepsAnswersUntilTheirTTLIgnoringCase() throws {
        let cache = DNSCache(capacity: 10)
        cache.insert(.addresses(web), for: try name("WWW.Example.com"), type: .a, scope: nil, ttl: 60, now: start)
        #expect(cache.lookup(try name("www.example.COM"), type: .a, subnet: nil, now: start + .seconds(59)) == .addresses(web))
        #expect(cache.lookup(try name("www.example.com"), type: .aaaa, subnet: nil, now: start) == nil)
        #expect(cache.lookup(try name("www.example.com"), type: .a, subnet: nil, now: start + .seconds(60)) == nil)
        #expect(cache.count == 0)
    }

    @Test func capsAndFloorsTTLs() throws {
        let capped = DNSCache(capacity: 10, maximumTTL: 100)
        capped.insert(.addresses(web), for: try name("a.example"), type: .a, scope: nil, ttl: 1_000_000, now: start)
        #expect(capped.lookup(try name("a.example"), type: .a, subnet: nil, now: start + .seconds(99)) != nil)
        #expect(capped.lookup(try name("a.example"), type: .a, subnet: nil, now: start + .seconds(100)) == nil)
        capped.insert(.addresses(web), for: try name("zero.example"), type: .a, scope: nil, ttl: 0, now: start)
        #expect(capped.count == 0)
        let floored = DNSCache(capacity: 10, minimumTTL: 30)
        floored.insert(.addresses(web), for: try name("zero.example"), type: .a, scope: nil, ttl: 0, now: start)
        #expect(floored.lookup(try name("zero.example"), type: .a, subnet: nil, now: start + .seconds(29)) == .addresses(web))
    }

    @Test func keepsNegativeAnswersForTheirNegativeTTL() throws {
        let cache = DNSCache(capacity: 10, maximumNegativeTTL: 200)
        let nxdomain = try DNSResponse(parsing: Messages.nxdomain())  // negative TTL 300, capped to 200
        cache.store(nxdomain, now: start)
        let nope = try name("NOPE.example.com")
        #expect(cache.lookup(nope, type: .aaaa, subnet: nil, now: start + .seconds(199)) == .nameError)
        #expect(cache.lookup(nope, type: .aaaa, subnet: nil, now: start + .seconds(200)) == nil)
        cache.store(try DNSResponse(parsing: Messages.nxdomain(soaTTL: 0, rcode: 0x80)), now: start)  // NODATA for 16 s
        #expect(cache.lookup(nope, type: .aaaa, subnet: nil, now: start + .seconds(15)) == .noData)
        #expect(cache.lookup(nope, type: .aaaa, subnet: nil, now: start + .seconds(16)) == nil)
        cache.store(try DNSResponse(parsing: Messages.nxdomain(rcode: 0x82)), now: start)  // SERVFAIL: not kept
        var truncated = Array(Messages.cnameAnswer[..<33])
        truncated[2] = 0x83
        cache.store(try DNSResponse(parsing: truncated), now: start)
        #expect(cache.count == 0)
        cache.store(try DNSResponse(parsing: Messages.cnameAnswer), now: start)
        #expect(cache.lookup(try name("www.example.com"), type: .a, subnet: nil, now: start + .seconds(59))
            == .addresses([.v4(IPv4Address(198, 51, 100, 10)), .v4(IPv4Address(198, 51, 100, 11))]))
    }

    @Test func evictsTheLeastRecentlyUsedAtCapacity() throws {
        let cache = DNSCache(capacity: 3)
        for label in ["a", "b", "c"] {
            cache.insert(.addresses(web), for: try name("\(label).example"), type: .a, scope: nil, ttl: 60, now: start)
        }
        #expect(cache.lookup(try name("a.example"), type: .a, subnet: nil, now: start) != nil)
        cache.insert(.noData, for: try name("d.example"), type: .a, scope: nil, ttl: 60, now: start)
        #expect(cache.count == 3)
        #expect(cache.lookup(try name("b.example"), type: .a, subnet: nil, now: start) == nil)
        for label in ["a", "c", "d"] {
            #expect(cache.lookup(try name("\(label).example"), type: .a, subnet: nil, now: start) != nil)
        }
        // Replacing an entry does not grow the cache.
        cache.insert(.nameError, for: try name("C.example"), type: .a, scope: nil, ttl: 60, now: start)
        #expect(cache.count == 3)
        #expect(cache.lookup(try name("c.example"), type: .a, subnet: nil, now: start) == .nameError)
        cache.removeAll()
        #expect(cache.count == 0)
        #expect(cache.lookup(try name("c.example"), type: .a, subnet: nil, now: start) == nil)
    }

    @Test func keysOnTheClientSubnetScope() throws {
        let cache = DNSCache(capacity: 100)
        let near: [IPAddress] = [.v4(IPv4Address(203, 0, 113, 1))]
        let anywhere: [IPAddress] = [.v4(IPv4Address(203, 0, 113, 2))]
        let host = try name("cdn.example")
        func client(_ c: UInt8, _ d: UInt8) -> ClientSubnet { ClientSubnet(.v4(IPv4Address(198, 51, c, d))) }
        let scoped = ClientSubnet(validated: .v4(IPv4Address(198, 51, 100, 0)), source: 24, scope: 24)
        cache.insert(.addresses(near), for: host, type: .a, scope: scoped, ttl: 60, now: start)
        #expect(cache.lookup(host, type: .a, subnet: client(100, 7), now: start) == .addresses(near))
        #expect(cache.lookup(host, type: .a, subnet: client(101, 7), now: start) == nil)
        #expect(cache.lookup(host, type: .a, subnet: nil, now: start) == nil)
        #expect(cache.lookup(host, type: .a, subnet: ClientSubnet(.v6(try IPv6Address(parsing: "2001:db8::1"))), now: start) == nil)
        // Scope 0 serves everyone; the narrower entry still wins inside its network.
        let global = ClientSubnet(validated: .v4(IPv4Address(198, 51, 101, 0)), source: 24, scope: 0)
        cache.insert(.addresses(anywhere), for: host, type: .a, scope: global, ttl: 60, now: start)
        #expect(cache.lookup(host, type: .a, subnet: client(101, 7), now: start) == .addresses(anywhere))
        #expect(cache.lookup(host, type: .a, subnet: nil, now: start) == .addresses(anywhere))
        #expect(cache.lookup(host, type: .a, subnet: client(100, 200), now: start) == .addresses(near))
        // A /16 scope covers the neighbouring /24s; a scope beyond the source is cut to it.
        let wide = ClientSubnet(validated: .v4(IPv4Address(192, 0, 2, 0)), source: 24, scope: 16)
        cache.insert(.noData, for: host, type: .a, scope: wide, ttl: 60, now: start)
        #expect(cache.lookup(host, type: .a, subnet: ClientSubnet(.v4(IPv4Address(192, 0, 77, 1))), now: start) == .noData)
        let tooNarrow = ClientSubnet(validated: .v4(IPv4Address(10, 1, 2, 0)), source: 24, scope: 32)
        cache.insert(.nameError, for: host, type: .a, scope: tooNarrow, ttl: 60, now: start)
        #expect(cache.lookup(host, type: .a, subnet: ClientSubnet(.v4(IPv4Address(10, 1, 2, 99))), now: start) == .nameError)
        #expect(cache.count == 4)
        // Store through a parsed answer: scope 20 from the ECS option.
        cache.store(try DNSResponse(parsing: Messages.ecsAnswer(scope: 20)), now: start)
        #expect(cache.lookup(try name("www.example.com"), type: .a, subnet: client(111, 1), now: start) != nil)
        #expect(cache.lookup(try name("www.example.com"), type: .a, subnet: client(112, 1), now: start) == nil)
    }

    @Test func boundsTheScopesKeptPerName() throws {
        let cache = DNSCache(capacity: 100)
        let host = try name("cdn.example")
        for third in 0..<UInt8(20) {
            let scope = ClientSubnet(validated: .v4(IPv4Address(198, 51, third, 0)), source: 24, scope: 24)
            cache.insert(.noData, for: host, type: .a, scope: scope, ttl: 60, now: start)
        }
        #expect(cache.count == DNSCache.maximumScopesPerName)
        #expect(cache.lookup(host, type: .a, subnet: ClientSubnet(.v4(IPv4Address(198, 51, 19, 1))), now: start) == .noData)
    }

    /// The cache against a plain least-recently-used list over random inserts, replacements,
    /// expiries and lookups: the same answers, the same evictions.
    @Test func agreesWithASimpleModelUnderRandomUse() throws {
        var random = SplitMix64(seed: 0xD15C)
        let capacity = 50
        let cache = DNSCache(capacity: capacity)
        var model: [(name: DNSName, answer: DNSCachedAnswer, expiry: ContinuousClock.Instant)] = []  // newest first
        let names = try (0..<120).map { try name("n\($0).Example") }
        var now = start
        for round in 0..<20_000 {
            let name = names.randomElement(using: &random)!
            if Bool.random(using: &random) {
                let ttl = UInt32.random(in: 0...30, using: &random)
                let answer: DNSCachedAnswer = [.noData, .nameError, .addresses([.v4(IPv4Address(bits: UInt32(round)))])].randomElement(using: &random)!
                cache.insert(answer, for: name.lowercased(), type: .a, scope: nil, ttl: ttl, now: now)
                if ttl > 0 {
                    if let index = model.firstIndex(where: { $0.name == name }) {
                        model.remove(at: index)
                    } else if model.count == capacity {
                        model.removeLast()
                    }
                    model.insert((name, answer, now + .seconds(Int64(ttl))), at: 0)
                }
            } else {
                var expected: DNSCachedAnswer?
                if let index = model.firstIndex(where: { $0.name == name }) {
                    let entry = model.remove(at: index)
                    if entry.expiry > now {
                        expected = entry.answer
                        model.insert(entry, at: 0)
                    }
                }
                #expect(cache.lookup(name, type: .a, subnet: nil, now: now) == expected)
            }
            now += .milliseconds(Int.random(in: 0...200, using: &random))
            #expect(cache.count == model.count)
        }
    }
}
