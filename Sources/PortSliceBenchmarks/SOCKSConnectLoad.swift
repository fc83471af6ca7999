import Foundation
import PortSliceCore
import PortSliceSockets
import Synchronization

/// SOCKS5 CONNECT exchanges through a proxy (greeting, CONNECT without authentication, reply),
/// many in flight at once, driven by readiness: each of a few threads keeps its share of the
/// exchanges going and sleeps in one `poll` for all of them.
///
/// The load generator shares the machine with the proxy under test, so its own CPU per
/// connection should be little more than the kernel's work for its ends of loopback TCP. A
/// blocking thread per client (as it was) wakes three times per connection; with 64 clients on
/// two cores that cost about 10% more CPU per connection, in thread switches, and the proxies
/// served 5-10% fewer connections. Here a thread sleeps only when none of its exchanges can
/// move.
struct SOCKSConnectLoad: Sendable {
    let proxy: Endpoint
    /// Where each CONNECT goes: this address and port, or with `names` its port only.
    let target: Endpoint
    /// Names to CONNECT to instead of `target`'s address (SOCKS5 address type 3), each
    /// exchange the next in turn over all threads; empty for the address itself.
    var names: [String] = []
    /// Exchanges in flight at once, over all threads.
    let concurrency: Int
    /// What becomes of a connection once the proxy has answered CONNECT.
    let completion: Completion
    /// Where connections come from: this dialer's slice, or (nil) a port the kernel picks.
    var dialer: SliceDialer?

    init(proxy: Endpoint, target: Endpoint, names: [String] = [], concurrency: Int, completion: Completion, dialer: SliceDialer? = nil) {
        self.proxy = proxy
        self.target = target
        self.names = names
        self.concurrency = concurrency
        self.completion = completion
        self.dialer = dialer
    }

    enum Completion: Sendable {
        /// Closed at once with a reset, so neither side keeps the 4-tuple (the rate loops).
        case reset
        /// Closed with a reset once the proxy has passed on the destination's close: the
        /// destination closed first, so the proxy's outbound socket closes passively and keeps
        /// no TIME_WAIT on its port. Needed from a nearly full slice, whose few free ports a
        /// proxy closing first would each park in TIME_WAIT for a second or more; resetting
        /// at once races the destination's close and often loses.
        case resetAfterDestinationCloses
        /// Kept open and idle, a relay the proxy must hold (the held-connection rows); reset
        /// when released, so that this side keeps no TIME_WAIT on thousands of ports (a run
        /// soon after would find the ephemeral range used up).
        case keep
    }

    /// The longest one exchange may take before the run counts the proxy as stuck.
    static let exchangeTimeout = Duration.seconds(10)

    struct Outcome: Sendable {
        /// Exchanges the proxy answered with success.
        var completed = 0
        /// From the start until the last exchange ended.
        var seconds = 0.0
        /// The connections kept (`.keep`); closed when the last reference goes.
        var kept: [HeldSocket] = []
        /// Why the run stopped early: the first failure of any thread.
        var failure: String?
    }

    /// One thread per core at most: more would only take turns on the same cores.
    var threadCount: Int { max(1, min(concurrency, ProcessInfo.processInfo.activeProcessorCount)) }

    /// Starts exchanges until `duration` has passed or `limit` have started, whichever comes
    /// first, and returns once the last one under way has ended. A failure stops new starts
    /// everywhere; exchanges already completed (and kept) stay in the outcome.
    func run(for duration: Duration, limit: Int) throws -> Outcome {
        let shared = Shared(limit: limit, deadline: .now + duration)
        let threads = threadCount
        let requests = names.isEmpty
            ? [ProxyBenchmark.socksConnectRequest(to: target)]
            : try names.map { try ProxyBenchmark.socksConnectRequest(toName: $0, port: target.port) }
        let elapsed = try onThreads(threads) { index in
            // Exchanges spread as evenly as they go: 64 over 2 threads is 32 each.
            let slots = concurrency / threads + (index < concurrency % threads ? 1 : 0)
            Driver(load: self, requests: requests, slots: slots, shared: shared).run()
        }
        var outcome = shared.outcome.withLock { $0 }
        outcome.seconds = elapsed
        return outcome
    }

    /// What the threads share: how many exchanges may still start, and their results.
    private final class Shared: Sendable {
        let deadline: ContinuousClock.Instant
        private let limit: Int
        private let startsLeft: Atomic<Int>
        private let stopped = Atomic<Bool>(false)
        let outcome = Mutex(Outcome())

        init(limit: Int, deadline: ContinuousClock.Instant) {
            self.limit = limit
            startsLeft = Atomic(limit)
            self.deadline = deadline
        }

        /// Whether one more exchange may start, as its number in the run (0, 1, ...); takes it
        /// from the budget if so.
        func claimStart() -> Int? {
            guard !stopped.load(ordering: .relaxed), ContinuousClock.now < deadline else { return nil }
            let left = startsLeft.wrappingSubtract(1, ordering: .relaxed).newValue
            return left >= 0 ? limit - 1 - left : nil
        }

        func finish(completed: Int, kept: [HeldSocket], failure: String?) {
            if failure != nil { stopped.store(true, ordering: .relaxed) }
            outcome.withLock { outcome in
                outcome.completed += completed
                outcome.kept += kept
                outcome.failure = outcome.failure ?? failure
            }
        }
    }

    /// One thread's exchanges; lives on that thread only.
    private final class Driver {
        let load: SOCKSConnectLoad
        /// The CONNECT requests, one per name (or the one for the address), taken in turn.
        let requests: [[UInt8]]
        let slots: Int
        let shared: Shared
        var inFlight: [Exchange] = []
        var completed = 0
        var kept: [HeldSocket] = []

        init(load: SOCKSConnectLoad, requests: [[UInt8]], slots: Int, shared: Shared) {
            self.load = load
            self.requests = requests
            self.slots = slots
            self.shared = shared
        }

        func run() {
            var failure: String?
            do {
                try startWhileAllowed()
                while !inFlight.isEmpty {
                    // Woken at least every 100 ms, to notice a stuck exchange.
                    let ready = PollSet.ready(inFlight.map(\.descriptor), timeoutMilliseconds: 100)
                    var ended = Set<Int>()
                    for position in ready where try advance(inFlight[position]) { ended.insert(position) }
                    if let stuck = inFlight.first(where: { ContinuousClock.now - $0.started > SOCKSConnectLoad.exchangeTimeout }) {
                        throw BenchmarkFailure("waited \(SOCKSConnectLoad.exchangeTimeout) for the proxy's \(stuck.stage)")
                    }
                    if !ended.isEmpty { inFlight = inFlight.indices.filter { !ended.contains($0) }.map { inFlight[$0] } }
                    try startWhileAllowed()
                }
            } catch {
                failure = "\(error)"
            }
            shared.finish(completed: completed, kept: kept, failure: failure)
        }

        private func startWhileAllowed() throws {
            while inFlight.count < slots, let number = shared.claimStart() {
                let connection = HeldSocket(try connect())
                try connection.socket.send(ProxyBenchmark.socksGreeting)
                inFlight.append(Exchange(connection, request: number % requests.count))
            }
        }

        private func connect() throws(DialError) -> ConnectedSocket {
            guard let dialer = load.dialer else { return try UnslicedConnect.tcp(to: load.proxy, timeout: SOCKSConnectLoad.exchangeTimeout) }
            return try dialer.connectTCP(to: load.proxy, timeout: SOCKSConnectLoad.exchangeTimeout, nonBlocking: true)
        }

        /// Reads what has arrived for `exchange` and takes the next step; true once it has ended.
        private func advance(_ exchange: Exchange) throws -> Bool {
            // Readable already, so this does not wait.
            let bytes = try exchange.connection.socket.receive(upTo: max(exchange.stage.length - exchange.received.count, 1), timeout: .seconds(1))
            switch exchange.stage {
            case .destinationClose:
                guard bytes.isEmpty else { throw BenchmarkFailure("the destination sent data; it should only close") }
            case .greeting, .reply:
                guard !bytes.isEmpty else { throw BenchmarkFailure("the proxy closed the connection before its \(exchange.stage)") }
                exchange.received += bytes
                guard exchange.received.count == exchange.stage.length else { return false }
            }
            return try step(exchange)
        }

        /// Takes the step after `exchange`'s stage is complete; true once it has ended.
        private func step(_ exchange: Exchange) throws -> Bool {
            switch exchange.stage {
            case .greeting:
                guard exchange.received == [5, 0] else { throw BenchmarkFailure("the proxy refused SOCKS5 without authentication") }
                try exchange.connection.socket.send(requests[exchange.request])
                exchange.stage = .reply
                exchange.received = []
                return false
            case .reply:
                guard exchange.received[1] == 0 else { throw BenchmarkFailure("the proxy answered CONNECT with reply \(exchange.received[1])") }
                switch load.completion {
                case .keep:
                    try exchange.connection.socket.resetOnClose()
                    kept.append(exchange.connection)
                case .reset:
                    try exchange.connection.socket.resetOnClose()
                case .resetAfterDestinationCloses:
                    exchange.stage = .destinationClose
                    return false
                }
                completed += 1
                return true
            case .destinationClose:
                try exchange.connection.socket.resetOnClose()
                completed += 1
                return true
            }
        }
    }

    private final class Exchange {
        enum Stage: CustomStringConvertible {
            case greeting, reply, destinationClose

            /// Bytes the stage waits for (the destination's close is the end of the stream).
            var length: Int {
                switch self {
                case .greeting: 2
                case .reply: 10
                case .destinationClose: 0
                }
            }

            var description: String {
                switch self {
                case .greeting: "answer to the SOCKS greeting"
                case .reply: "CONNECT reply"
                case .destinationClose: "close, passed on from the destination"
                }
            }
        }

        let connection: HeldSocket
        /// Which of the driver's requests it sends.
        let request: Int
        let started = ContinuousClock.now
        var stage = Stage.greeting
        var received: [UInt8] = []

        init(_ connection: HeldSocket, request: Int) {
            self.connection = connection
            self.request = request
        }

        var descriptor: CInt { connection.descriptor }
    }
}

/// A connection kept open for as long as this value lives: a reference, so thousands can sit
/// in an array (a `ConnectedSocket` cannot be copied) and be closed together by dropping it.
final class HeldSocket: Sendable {
    let socket: ConnectedSocket

    init(_ socket: consuming ConnectedSocket) { self.socket = socket }

    var descriptor: CInt { socket.descriptor }
}

/// Runs `body` on `count` threads at once, each given its number (0..<count); returns the
/// seconds they took together, or throws the first failure of any of them.
func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) throws -> Void) throws -> Double {
    let failure = Mutex<String?>(nil)
    let group = DispatchGroup()
    let started = ContinuousClock.now
    for index in 0..<count {
        group.enter()
        Thread {
            defer { group.leave() }
            do { try body(index) } catch { failure.withLock { $0 = $0 ?? "\(error)" } }
        }.start()
    }
    group.wait()
    let elapsed = ContinuousClock.now - started
    if let message = failure.withLock({ $0 }) { throw BenchmarkFailure(message) }
    return elapsed.seconds
}
