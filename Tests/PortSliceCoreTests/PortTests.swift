import Testing
@testable import PortSliceCore

@Suite("Port ranges, port sets and slice plans")
struct PortTests {
    @Test func parsesRanges() throws {
        #expect(try PortRange(parsing: "1024-65535") == PortRange(1024, 65535))
        #expect(try PortRange(parsing: "80").count == 1)
        #expect(PortRange.nonSystemPorts.count == 64512)
    }

    @Test(arguments: [
        ("70000", PortRangeError.badPort(port: "70000", text: "70000")),
        ("2000-1000", .reversed(text: "2000-1000")),
        ("08-10", .badPort(port: "08", text: "08-10")),
        ("a-b", .badPort(port: "a", text: "a-b")),
        ("-5", .badPort(port: "", text: "-5")),
    ])
    func rejectsBadRanges(text: String, error: PortRangeError) {
        #expect(throws: error) { try PortRange(parsing: text) }
    }

    @Test func rfc7597AppendixAVector() throws {
        // a = 6, k = 8, PSID 0x34: 63 runs of 4 ports, 1232-1235, 2256-2259, ..., 64720-64723.
        let set = try PortSetID(offsetBits: 6, psidLength: 8, psid: 0x34).ports
        #expect(set.runs.count == 63)
        #expect(set.count == 252)
        #expect(set.runs.allSatisfy { $0.count == 4 })
        #expect(set.runs.first == (try PortRange(parsing: "1232-1235")))
        #expect(set.runs[1] == (try PortRange(parsing: "2256-2259")))
        #expect(set.runs.last == (try PortRange(parsing: "64720-64723")))
        #expect(!set.contains(1231) && set.contains(1232) && set.contains(1235) && !set.contains(1236))
    }

    @Test func rfc7597SetsPartitionTheNonSystemPorts() throws {
        var union = PortSet.empty
        for psid in 0..<256 {
            let set = try PortSetID(offsetBits: 6, psidLength: 8, psid: psid).ports
            #expect(union.isDisjoint(with: set))
            union = union.union(set)
        }
        #expect(union == PortSet(PortRange.nonSystemPorts))
    }

    @Test func rejectsBadPortSetParameters() {
        #expect(throws: SlicePlanError.badPortSetParameters(offsetBits: 10, psidLength: 8)) {
            try PortSetID(offsetBits: 10, psidLength: 8, psid: 0)
        }
        #expect(throws: SlicePlanError.psidOutOfRange(psid: 256, psidLength: 8)) {
            try PortSetID(offsetBits: 6, psidLength: 8, psid: 256)
        }
    }

    /// A plain set of ports, the reference the run-based PortSet is checked against.
    private func reference(_ set: PortSet) -> Set<UInt16> { Set(set.ports) }

    private func randomSet(_ random: inout SplitMix64) -> PortSet {
        PortSet((0..<Int.random(in: 0...6, using: &random)).map { _ in
            let lower = UInt16.random(in: 0...65000, using: &random)
            return PortRange(uncheckedLower: lower, upper: lower + UInt16.random(in: 0...500, using: &random))
        })
    }

    @Test func portSetOperationsMatchPlainSets() throws {
        var random = SplitMix64(seed: 17)
        for _ in 0..<300 {
            let a = randomSet(&random), b = randomSet(&random)
            let plainA = reference(a), plainB = reference(b)
            #expect(reference(a.union(b)) == plainA.union(plainB))
            #expect(reference(a.intersection(b)) == plainA.intersection(plainB))
            #expect(reference(a.subtracting(b)) == plainA.subtracting(plainB))
            #expect(a.count == plainA.count)
            let port = UInt16.random(in: 0...65535, using: &random)
            #expect(a.contains(port) == plainA.contains(port))
            #expect(try PortSet(parsing: a.description) == a)
            // Runs stay sorted, disjoint and non-adjacent.
            for (left, right) in zip(a.runs, a.runs.dropFirst()) { #expect(Int(left.upper) + 1 < Int(right.lower)) }
        }
    }

    /// Text in any order, overlapping or adjacent, is merged as ranges are; text as
    /// `description` writes it is taken as it is.
    @Test func parsedPortSetsAreNormalized() throws {
        #expect(try PortSet(parsing: "9000-9010, 8080,9005-9020 ,8081").runs == [PortRange(8080, 8081), PortRange(9000, 9020)])
        #expect(try PortSet(parsing: "1-5,6-9").runs == [PortRange(1, 9)])
        #expect(try PortSet(parsing: "1-5,7-9").runs == [PortRange(1, 5), PortRange(7, 9)])
        #expect(try PortSet(parsing: " , ").isEmpty)
        #expect(throws: PortRangeError.badPort(port: "x", text: "7-x")) { try PortSet(parsing: "1-5, 7-x") }
        #expect(throws: PortRangeError.reversed(text: "9-7")) { try PortSet(parsing: "1-5,9-7") }
    }

    @Test func defaultPlanSplitsNonSystemPorts() throws {
        let plan = try SlicePlan(layout: .portsPerSlice(2048))
        #expect(plan.slices.count == 31)
        #expect(plan.slices.first?.ports.description == "1024-3071")
        #expect(plan.slices.last?.ports.description == "62464-64511")
        #expect(plan.unusedPorts.description == "64512-65535")
    }

    @Test func holdsBackTheLowestSlice() throws {
        // The whole space in 2048-port slices: 32 slices, 31 hosts, the one with the system ports kept out.
        let plan = try SlicePlan(range: PortRange(0, 65535), layout: .portsPerSlice(2048), holdBackLowest: true)
        #expect(plan.slices.count == 32)
        #expect(plan.allocatable.count == 31)
        #expect(plan.slices[0].heldBack && plan.slices[0].ports.description == "0-2047")
    }

    @Test func portSetPlanLeavesOutSystemPortsByHandWhenAIsZero() throws {
        let plan = try SlicePlan(layout: .portSets(offsetBits: 0, psidLength: 5))
        // PSID 0 is 0-2047; only 1024-2047 of it lies in the default range.
        #expect(plan.slices.first?.psid == 0)
        #expect(plan.slices.first?.ports.description == "1024-2047")
        #expect(plan.slices.count == 32)
    }

    @Test func planErrorsNameTheProblem() throws {
        #expect(throws: SlicePlanError.badSliceSize(0)) { try SlicePlan(layout: .portsPerSlice(0)) }
        #expect(throws: SlicePlanError.badSliceCount(-1)) { try SlicePlan(layout: .sliceCount(-1)) }
        #expect(throws: SlicePlanError.nothingFits(range: try PortRange(1024, 2000), usablePorts: 977, wanted: "a slice of 2048 ports")) {
            try SlicePlan(range: try PortRange(1024, 2000), layout: .portsPerSlice(2048))
        }
        #expect(throws: SlicePlanError.nothingFits(range: try PortRange(1024, 1030), usablePorts: 7, wanted: "8 slices")) {
            try SlicePlan(range: try PortRange(1024, 1030), layout: .sliceCount(8))
        }
    }

    /// Plan properties over many random parameters: every slice inside the range, none
    /// overlapping, no reserved port in any slice, sizes and counts as asked.
    @Test func planPropertiesHoldForRandomParameters() throws {
        var random = SplitMix64(seed: 2024)
        var checked = 0
        while checked < 400 {
            let lower = UInt16.random(in: 0...60000, using: &random)
            let range = PortRange(uncheckedLower: lower, upper: UInt16.random(in: lower...65535, using: &random))
            let reserved = randomSet(&random)
            let layout: SlicePlan.Layout
            switch Int.random(in: 0..<3, using: &random) {
            case 0: layout = .portsPerSlice(Int.random(in: 1...4096, using: &random))
            case 1: layout = .sliceCount(Int.random(in: 1...64, using: &random))
            default:
                let a = Int.random(in: 0...8, using: &random)
                layout = .portSets(offsetBits: a, psidLength: Int.random(in: 0...min(8, 16 - a), using: &random))
            }
            guard let plan = try? SlicePlan(range: range, layout: layout, reserved: reserved) else { continue }
            checked += 1
            for slice in plan.slices {
                #expect(slice.ports.runs.allSatisfy { range.contains($0) })
                #expect(slice.ports.isDisjoint(with: reserved))
            }
            // No port in two slices, nor in a slice and the unused ports: all their runs, in
            // order, end before the next begins (runs rather than sets of ports, which made
            // this test take seconds of the suite's two threads).
            let runs = (plan.slices.flatMap(\.ports.runs) + plan.unusedPorts.runs).sorted { $0.lower < $1.lower }
            for (left, right) in zip(runs, runs.dropFirst()) { #expect(left.upper < right.lower, "\(left) and \(right) share ports") }
            switch layout {
            case .portsPerSlice(let size):
                #expect(plan.slices.allSatisfy { $0.ports.count == size && $0.ports.isContiguous })
            case .sliceCount(let count):
                #expect(plan.slices.count == count)
                #expect(Set(plan.slices.map(\.ports.count)).count == 1)
                // No larger size would still give `count` slices.
                let size = plan.slices[0].ports.count
                let usable = PortSet(range).subtracting(reserved)
                #expect(usable.runs.reduce(0) { $0 + $1.count / (size + 1) } < count)
            case .portSets:
                #expect(plan.slices.allSatisfy { $0.psid != nil })
            }
        }
    }

    @Test func hostCheckSaysWhatToChange() throws {
        let plan = try SlicePlan(layout: .portsPerSlice(2048))
        let host = try HostPortSettings(localPortRange: "32768\t60999\n", reservedPorts: "8080,9000-9010\n")
        let findings = plan.check(against: host)
        let error = try #require(findings.first { $0.severity == .error })
        #expect(error.message.contains("net.ipv4.ip_local_port_range is 32768-60999 but slices use 1024-64511"))
        #expect(error.fix.first == "sysctl -w net.ipv4.ip_local_port_range=\"1024 64511\"")
        let warning = try #require(findings.first { $0.severity == .warning })
        #expect(warning.message.hasPrefix("ports 8080,9000-9010 are in net.ipv4.ip_local_reserved_ports"))
        #expect(warning.fix == ["sysctl -w net.ipv4.ip_local_reserved_ports=\"\""])

        let wide = try HostPortSettings(localPortRange: "1024 65535", reservedPorts: "")
        let replanned = try SlicePlan(layout: .portsPerSlice(2048), reserved: host.reservedPorts)
        #expect(!replanned.check(against: wide).contains { $0.severity >= .warning })
    }

    @Test func hostSettingsRejectGarbage() {
        #expect(throws: PortRangeError.self) { try HostPortSettings(localPortRange: "32768", reservedPorts: "") }
        #expect(throws: PortRangeError.self) { try HostPortSettings(localPortRange: "1 2", reservedPorts: "x") }
    }
}
