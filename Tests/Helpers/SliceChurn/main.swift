// slice-churn: a load generator for the concurrency test. Several threads open and close
// connected UDP flows from one slice towards a few destinations for a bounded time and count,
// then print what happened as one line of JSON. Run it inside the test's network namespace.
//
//   slice-churn SLICE SECONDS THREADS MAX_OPS DESTINATION...
import Foundation
import PortSliceCore
import PortSliceSockets
import Synchronization

/// An open flow; dropping it closes the socket.
final class Flow {
    let socket: ConnectedSocket
    init(_ socket: consuming ConnectedSocket) { self.socket = socket }
}

struct Tally: Codable {
    var opened = 0
    var exhausted = 0
    var failures: [String] = []
    var outsideSlice = 0
    var descriptorsBefore = 0
    var descriptorsAfter = 0
}

func openDescriptors() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1 }

let arguments = CommandLine.arguments
guard arguments.count >= 6, let seconds = Double(arguments[2]), let threads = Int(arguments[3]), let maxOperations = Int(arguments[4]) else {
    FileHandle.standardError.write(Data("usage: slice-churn SLICE SECONDS THREADS MAX_OPS DESTINATION...\n".utf8))
    exit(2)
}
let slice = try EgressSlice(parsing: arguments[1])
let destinations = try arguments[5...].map { try Endpoint(parsing: $0) }
let tally = Mutex(Tally())
do {
    let dialer = try SliceDialer(slice: slice)
    // Counted with the dialer (and its sock_diag socket) open: what changes after is flows.
    let before = openDescriptors()
    let deadline = ContinuousClock.now + .seconds(seconds)
    let done = DispatchGroup()
    for thread in 0..<threads {
        done.enter()
        Thread {
            var random = SplitMix64(seed: UInt64(thread) &* 7919 &+ UInt64(getpid()))
            var flows: [Flow] = []
            var local = Tally()
            var operations = 0
            while ContinuousClock.now < deadline && operations < maxOperations {
                operations += 1
                if !flows.isEmpty && (flows.count >= 8 || Bool.random(using: &random)) {
                    flows.remove(at: Int.random(in: 0..<flows.count, using: &random))
                    continue
                }
                do {
                    let socket = try dialer.connectUDP(to: destinations.randomElement(using: &random)!)
                    if !slice.ports.contains(socket.local.port) { local.outsideSlice += 1 }
                    flows.append(Flow(socket))
                    local.opened += 1
                } catch DialError.sliceExhausted {
                    local.exhausted += 1
                } catch {
                    local.failures.append("\(error)")
                }
            }
            flows.removeAll()
            tally.withLock {
                $0.opened += local.opened
                $0.exhausted += local.exhausted
                $0.outsideSlice += local.outsideSlice
                $0.failures += local.failures.prefix(5)
            }
            done.leave()
        }.start()
    }
    done.wait()
    tally.withLock {
        $0.descriptorsBefore = before
        $0.descriptorsAfter = openDescriptors()
    }
} catch {
    tally.withLock { $0.failures.append("\(error)") }
}
print(String(decoding: try JSONEncoder().encode(tally.withLock { $0 }), as: UTF8.self))
