import Testing
@testable import PortSliceCore

@Suite("Allocator model")
struct AllocatorModelTests {
    static let start = Moment(milliseconds: 1_800_000_000_000)
    static let minute = Duration.seconds(60)

    private func traits(_ country: String, _ category: Category = .residential) throws -> Traits {
        try Traits(country: try CountryCode(parsing: country), category: category)
    }

    /// Two US residential addresses and one DE hosting address, 4 slices each.
    private func model(quarantine: Duration = .seconds(240)) throws -> AllocatorModel {
        var model = try AllocatorModel(quarantine: quarantine)
        let plan = try SlicePlan(range: try PortRange(20000, 23999), layout: .sliceCount(4))
        try model.add(EgressAddress(address: IPv4Address(203, 0, 113, 10), traits: try traits("US")), plan: plan)
        try model.add(EgressAddress(address: IPv4Address(203, 0, 113, 11), traits: try traits("US")), plan: plan)
        try model.add(EgressAddress(address: IPv4Address(203, 0, 113, 12), traits: try traits("DE", .hosting)), plan: plan)
        return model
    }

    @Test func placesOnMatchingTraitsAndSpreadsAHostOverAddresses() throws {
        var model = try model()
        let us = try model.acquire(host: "h1", traits: try traits("US"), count: 4, timeToLive: Self.minute, now: Self.start)
        #expect(us.allSatisfy { $0.slice.address != IPv4Address(203, 0, 113, 12) })
        let perAddress = Dictionary(grouping: us, by: \.slice.address).mapValues(\.count)
        #expect(perAddress.values.sorted() == [2, 2], "one host's slices are spread: \(perAddress)")
        let de = try model.acquire(host: "h2", traits: try traits("DE", .hosting), timeToLive: Self.minute, now: Self.start)
        #expect(de.first?.slice.address == IPv4Address(203, 0, 113, 12))
        #expect(de.first?.ports.isContiguous == true)
    }

    @Test func requestsAreAllOrNothing() throws {
        var model = try model()
        _ = try model.acquire(host: "h1", traits: try traits("US"), count: 7, timeToLive: Self.minute, now: Self.start)
        // 12 slices in all, 5 free: a request for 6 gets none, and leaves the pool as it was.
        #expect(throws: AllocationError.noCapacity(wanted: 6, granted: 5, traits: try traits("DE").summary)) {
            _ = try model.acquire(host: "h2", traits: try traits("DE"), count: 6, timeToLive: Self.minute, now: Self.start)
        }
        #expect(model.leases(of: "h2").isEmpty)
        #expect(try model.acquire(host: "h2", traits: try traits("DE"), count: 5, timeToLive: Self.minute, now: Self.start).count == 5)
    }

    @Test func releasedAndExpiredSlicesWaitOutTheQuarantine() throws {
        var model = try model()
        let minute = Self.minute
        let all = try model.acquire(host: "h1", traits: try traits("US"), count: 12, timeToLive: minute, now: Self.start)
        let released = all[0]
        try model.release(released.id, host: "h1", now: Self.start + .seconds(10))
        #expect(model.state(of: released.slice) == .quarantined(until: Self.start + .seconds(250)))
        #expect(throws: AllocationError.self) {
            _ = try model.acquire(host: "h2", traits: try traits("US"), timeToLive: minute, now: Self.start + .seconds(249))
        }
        // At 250 s the released slice is free again; the others expired at 60 s and wait until 300 s.
        let again = try model.acquire(host: "h2", traits: try traits("US"), timeToLive: minute, now: Self.start + .seconds(250))
        #expect(again.map(\.slice) == [released.slice])
        #expect(model.state(of: all[1].slice) == .quarantined(until: Self.start + .seconds(300)))
        #expect(throws: AllocationError.leaseExpired(all[1].id)) {
            _ = try model.renew(all[1].id, host: "h1", timeToLive: minute, now: Self.start + .seconds(250))
        }
    }

    @Test func onlyTheHolderRenewsOrReleases() throws {
        var model = try model()
        let lease = try #require(try model.acquire(host: "h1", traits: try traits("US"), timeToLive: Self.minute, now: Self.start).first)
        #expect(throws: AllocationError.notYourLease(lease.id, host: "h2")) {
            _ = try model.renew(lease.id, host: "h2", timeToLive: Self.minute, now: Self.start)
        }
        #expect(throws: AllocationError.notYourLease(lease.id, host: "h2")) { try model.release(lease.id, host: "h2", now: Self.start) }
        #expect(throws: AllocationError.unknownLease(999)) { try model.release(999, host: "h1", now: Self.start) }
        let renewed = try model.renew(lease.id, host: "h1", timeToLive: .seconds(120), now: Self.start + .seconds(50))
        #expect(renewed.expires == Self.start + .seconds(170))
        let other = try model.acquire(host: "h2", traits: try traits("DE"), count: 2, timeToLive: Self.minute, now: Self.start + .seconds(60))
        let all = try model.renewAll(host: "h2", timeToLive: .seconds(30), now: Self.start + .seconds(70)).slices
        #expect(all.map(\.id) == other.map(\.id) && all.allSatisfy { $0.expires == Self.start + .seconds(100) })
        #expect(model.leases(of: "h1").map(\.expires) == [Self.start + .seconds(170)], "another host's renewal leaves h1's lease alone")
    }

    @Test func badParametersAreRefused() throws {
        #expect(throws: AllocationError.quarantineTooShort(seconds: 119)) { try AllocatorModel(quarantine: .seconds(119)) }
        var model = try model()
        #expect(throws: AllocationError.badCount(0)) {
            _ = try model.acquire(host: "h", traits: .unknown, count: 0, timeToLive: Self.minute, now: Self.start)
        }
        #expect(throws: AllocationError.badTimeToLive(seconds: 5)) {
            _ = try model.acquire(host: "h", traits: .unknown, timeToLive: .seconds(5), now: Self.start)
        }
        let plan = try SlicePlan(layout: .sliceCount(2))
        #expect(throws: AllocationError.duplicateAddress(IPv4Address(203, 0, 113, 10))) {
            try model.add(EgressAddress(address: IPv4Address(203, 0, 113, 10), traits: .unknown), plan: plan)
        }
    }

    @Test func drainingAddressesRunOutAndCanThenBeRemoved() throws {
        var model = try model()
        let address = IPv4Address(203, 0, 113, 12)
        let lease = try #require(try model.acquire(host: "h1", traits: try traits("DE", .hosting), timeToLive: Self.minute, now: Self.start).first)
        #expect(lease.slice.address == address)
        try model.drain(address, now: Self.start)
        #expect(model.capacity()[try traits("DE", .hosting)] == AllocatorModel.Capacity(free: 0, leased: 1, quarantined: 0, draining: 3))
        let next = try model.acquire(host: "h2", traits: try traits("DE", .hosting), timeToLive: Self.minute, now: Self.start)
        #expect(next.first?.slice.address != address)
        #expect(throws: AllocationError.addressInUse(address, leases: 1, quarantined: 0)) { try model.remove(address, now: Self.start) }
        #expect(throws: AllocationError.addressInUse(address, leases: 0, quarantined: 1)) {
            try model.remove(address, now: Self.start + .seconds(61))
        }
        try model.remove(address, now: Self.start + .seconds(300))
        #expect(model.pool[address] == nil)
    }

    /// Random sequences of acquire, renew, release and clock jumps. After every step, read from
    /// the append-only log alone: no two holders of a slice overlap in time, each new holder
    /// starts at least one quarantine after the previous one ended, and `who` names exactly
    /// the holder of a port at any moment.
    @Test func invariantsHoldOverRandomSequences() throws {
        var random = SplitMix64(seed: 6888)
        for _ in 0..<20 {
            var model = try model(quarantine: .seconds(120))
            var now = Self.start
            let hosts = ["h1", "h2", "h3", "h4", "h5"]
            for _ in 0..<300 {
                now = now + .milliseconds(Int64.random(in: 0...40_000, using: &random))
                let host = hosts.randomElement(using: &random)!
                switch Int.random(in: 0..<10, using: &random) {
                case 0..<4:
                    _ = try? model.acquire(
                        host: host, traits: try traits(Bool.random(using: &random) ? "US" : "DE"),
                        count: Int.random(in: 1...3, using: &random), timeToLive: .seconds(Int64.random(in: 10...90, using: &random)), now: now)
                case 4..<9:
                    // A lease may have run out since the last call; only then may this fail.
                    if let lease = model.leases(of: host).randomElement(using: &random) {
                        do {
                            if Bool.random(using: &random) {
                                _ = try model.renew(lease.id, host: host, timeToLive: .seconds(60), now: now)
                            } else {
                                try model.release(lease.id, host: host, now: now)
                            }
                        } catch {
                            #expect(error == .leaseExpired(lease.id) && lease.expires <= now)
                        }
                    }
                default:
                    model.advance(to: now)
                }
                model.advance(to: now)  // queries see time as of the last call
                checkLog(model, now: now)
            }
        }
    }

    /// Every slice's records in order, each ended and quarantined before the next holder, and
    /// every live lease the one holder its first port answers with. What is wrong is gathered
    /// and expected once: an `#expect` per record pair per step was most of this test's time.
    private func checkLog(_ model: AllocatorModel, now: Moment) {
        var problems: [String] = []
        for (slice, records) in Dictionary(grouping: model.log, by: \.slice) {
            let ordered = records.sorted { $0.start < $1.start }
            for (earlier, later) in zip(ordered, ordered.dropFirst()) {
                guard let ended = earlier.end else {
                    problems.append("\(slice): a later holder exists while the earlier record is open")
                    continue
                }
                if later.start < ended + model.quarantine { problems.append("\(slice): reused before the quarantine ended") }
            }
        }
        for lease in model.allLeases {
            if lease.expires <= now { problems.append("an expired lease is still held: \(lease.id)") }
            let holders = model.who(address: lease.slice.address, port: lease.ports.runs[0].lower, at: now).map(\.leaseID)
            if holders != [lease.id] { problems.append("lease \(lease.id)'s first port is held by \(holders)") }
        }
        #expect(problems.isEmpty, "\(problems)")
    }
}
