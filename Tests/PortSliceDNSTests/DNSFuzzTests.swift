import PortSliceCore
import Testing
@testable import PortSliceDNS

@Suite("DNS parser fuzzing")
struct DNSFuzzTests {
    /// Seeded random bytes and mutations of real answers (bytes flipped, cut, repeated,
    /// spliced, counts raised) for 200,000 rounds or 10 seconds, whichever ends first: every
    /// one must end in a response or a `DNSParseError`, and a response must keep the caps.
    @Test func randomAndMutatedPacketsNeverCrash() {
        var random = SplitMix64(seed: 0xF0220)
        let seeds = [Messages.cnameAnswer, Messages.aaaaAnswer, Messages.nxdomain(), Messages.ecsAnswer(scope: 24)]
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(10)
        var parsed = 0
        var refused = 0
        var rounds = 0
        // Packets whose response broke a cap, gathered and expected once (an `#expect` per
        // round was most of the test's time).
        var pastACap: [[UInt8]] = []
        while rounds < 200_000 && (rounds % 1_000 != 0 || clock.now < deadline) {
            rounds += 1
            let packet = Self.packet(from: seeds, using: &random)
            do {
                let response = try DNSResponse(parsing: packet)
                parsed += 1
                if response.addresses.count > DNSResponse.maximumAddresses || response.cnameCount > DNSResponse.maximumCNAMEChain
                    || response.question.name.wire.count > DNSName.maximumWireLength
                {
                    pastACap.append(packet)
                }
            } catch {
                refused += 1
            }
        }
        #expect(pastACap.isEmpty, "\(pastACap.count) responses past a cap, the first from \(pastACap.first ?? [])")
        #expect(parsed + refused == rounds)
        #expect(parsed > 0 && refused > 0)
    }

    private static func packet(from seeds: [[UInt8]], using random: inout SplitMix64) -> [UInt8] {
        if random.next() % 8 == 0 {
            let length = Int.random(in: 0...300, using: &random)
            // A byte from each draw: `UInt8.random(in:using:)` per byte was a third of the test's time.
            var bytes = [UInt8](repeating: 0, count: length)
            for index in bytes.indices { bytes[index] = UInt8(truncatingIfNeeded: random.next()) }
            if bytes.count > 3 { bytes[2] |= 0x80 }  // get past the QR check now and then
            return bytes
        }
        var bytes = seeds.randomElement(using: &random)!
        for _ in 0..<Int.random(in: 1...4, using: &random) {
            guard !bytes.isEmpty else { break }
            let position = Int.random(in: 0..<bytes.count, using: &random)
            switch random.next() % 7 {
            case 0: bytes[position] = UInt8.random(in: 0...255, using: &random)
            case 1: bytes[position] ^= 1 << UInt8.random(in: 0...7, using: &random)
            case 2: bytes.removeSubrange(position...)
            case 3: bytes.insert(contentsOf: bytes[position...].prefix(12), at: position)
            case 4: bytes[position] = [0xC0, 0x00, 0x3F, 0x40, 0xFF].randomElement(using: &random)!
            case 5 where bytes.count >= 12: bytes[5 + 2 * Int.random(in: 0...3, using: &random)] &+= UInt8.random(in: 1...3, using: &random)
            default: bytes.remove(at: position)
            }
        }
        return bytes
    }
}
