import Foundation
import PortSliceCore
import PortSliceSockets

/// `portslice bench connect`: flows opened per second from a slice that is already 0%, 50%,
/// 90% or 99% full towards the same destination, beside the plain kernel connect (no slice,
/// the limit), measured in one run against a loopback listener.
public struct ConnectBenchmark: Sendable {
    /// Ports in the slice.
    public var slicePorts = 1_000
    /// Seconds each cell is measured, spread over several rounds that alternate the methods.
    public var secondsPerCell = 1.0
    public var fills: [Double] = [0, 0.5, 0.9, 0.99]

    public init() {}

    public struct Row: Sendable, Encodable {
        public let transport: String
        public let method: String
        public let fill: Int
        public let operationsPerSecond: Double
        public let ratioToLimit: Double
        public let target: String
        public let meetsTarget: Bool?
    }

    /// Where to run: a fresh namespace when root, else this namespace on 127.0.0.1.
    public struct Place: Sendable {
        let shared: IPv4Address
        let destination: IPv4Address
        let slice: PortRange
        /// The namespace to enter, or nil for the current one.
        let namespacePath: String?
        public let summary: String
    }

    /// Sets up the place to measure. With root, a namespace with documentation addresses is
    /// created and must be removed with `tearDown`.
    public func prepare(namespaceName: String) throws -> Place {
        let size = UInt16(slicePorts)
        if getuid() == 0 {
            try Self.command("ip", "netns", "add", namespaceName)
            let inside = ["ip", "netns", "exec", namespaceName]
            try Self.command(inside + ["ip", "link", "set", "lo", "up"])
            try Self.command(inside + ["ip", "address", "add", "203.0.113.10/32", "dev", "lo"])
            try Self.command(inside + ["ip", "address", "add", "198.51.100.1/32", "dev", "lo"])
            // Slice 20000-...; the rest of the range serves the unsliced baseline.
            try Self.command(inside + ["sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=1024 65535"])
            return Place(
                shared: IPv4Address(203, 0, 113, 10), destination: IPv4Address(198, 51, 100, 1),
                slice: try PortRange(20000, 20000 + size - 1), namespacePath: NetworkNamespace.path(named: namespaceName),
                summary: "fresh network namespace \(namespaceName), 203.0.113.10 -> 198.51.100.1 on loopback")
        }
        let range = try HostNetwork.portSettings().localPortRange
        guard range.count > Int(size) * 2 else {
            throw BenchmarkFailure("net.ipv4.ip_local_port_range \(range) is too small for a \(size)-port slice and a baseline; run as root for a fresh namespace")
        }
        let lower = range.upper - size + 1
        return Place(
            shared: IPv4Address(127, 0, 0, 1), destination: IPv4Address(127, 0, 0, 1),
            slice: try PortRange(lower, range.upper), namespacePath: nil,
            summary: "not root: this namespace, 127.0.0.1, slice at the top of \(range); numbers are noisier")
    }

    public func tearDown(_ place: Place, namespaceName: String) {
        if place.namespacePath != nil { try? Self.command("ip", "netns", "delete", namespaceName) }
    }

    public func run(in place: Place, progress: @escaping @Sendable (String) -> Void) throws -> [Row] {
        let body: @Sendable () throws -> [Row] = { try self.measure(place, progress: progress) }
        if let path = place.namespacePath { return try NetworkNamespace.run(at: path, body) }
        return try body()
    }

    private enum Method: Int, Comparable {
        case limit, kernelRange, portSearch, udpLimit, udpChecked

        var label: String {
            switch self {
            case .limit, .udpLimit: "kernel connect, no slice (limit)"
            case .kernelRange: "slice: kernel range (fast path)"
            case .portSearch: "slice: port search (fallback)"
            case .udpChecked: "slice: lock and sock_diag check"
            }
        }

        static func < (lhs: Method, rhs: Method) -> Bool { lhs.rawValue < rhs.rawValue }
    }

    private func measure(_ place: Place, progress: @Sendable (String) -> Void) throws -> [Row] {
        HostNetwork.raiseOpenFileLimit(to: 65_536)
        let listener = try AcceptingListener(Endpoint(place.destination, 0))
        let tcpTarget = listener.endpoint
        let udpTarget = Endpoint(place.destination, 9)
        let slice = EgressSlice(address: place.shared, ports: PortSet(place.slice))
        let sockDiag = try SockDiag()
        let fast = try SliceDialer(slice: slice, strategy: .kernelRange, sockDiag: sockDiag)
        let search = try SliceDialer(slice: slice, strategy: .portSearch, sockDiag: sockDiag)
        var rows: [Row] = []
        for fill in fills {
            let held = Int((Double(slicePorts) * fill).rounded())
            progress("TCP with the slice \(Int(fill * 100))% full")
            let tcpFill = try Holder(count: held) { () throws(DialError) in try fast.connectTCP(to: tcpTarget) }
            let tcp = try alternate([
                .limit: { try UnslicedConnect.tcp(to: tcpTarget).resetOnClose() },
                .kernelRange: { try fast.connectTCP(to: tcpTarget, nonBlocking: true).resetOnClose() },
                .portSearch: { try search.connectTCP(to: tcpTarget, nonBlocking: true).resetOnClose() },
            ])
            withExtendedLifetime(tcpFill) {}
            progress("UDP with the slice \(Int(fill * 100))% full")
            let udpFill = try Holder(count: held) { () throws(DialError) in try search.connectUDP(to: udpTarget) }
            let udp = try alternate([
                .udpLimit: { _ = try UnslicedConnect.udp(to: udpTarget) },
                .udpChecked: { _ = try search.connectUDP(to: udpTarget) },
            ])
            withExtendedLifetime(udpFill) {}
            let percent = Int((fill * 100).rounded())
            for method in [Method.limit, .kernelRange, .portSearch] {
                let ratio = self.ratio(tcp[method]!, to: tcp[.limit]!)
                let (target, met): (String, Bool?) = switch method {
                case .kernelRange: (">= 0.9", ratio >= 0.9)
                case .portSearch where percent == 90: (">= 0.5", ratio >= 0.5)
                default: ("-", nil)
                }
                rows.append(Row(transport: "tcp", method: method.label, fill: percent, operationsPerSecond: tcp[method]!.rate,
                                ratioToLimit: ratio, target: target, meetsTarget: met))
            }
            for method in [Method.udpLimit, .udpChecked] {
                let ratio = self.ratio(udp[method]!, to: udp[.udpLimit]!)
                let checked = method == .udpChecked && percent == 0
                rows.append(Row(transport: "udp", method: method.label, fill: percent,
                                operationsPerSecond: udp[method]!.rate, ratioToLimit: ratio,
                                target: checked ? ">= 0.4" : "-", meetsTarget: checked ? ratio >= 0.4 : nil))
            }
        }
        rows += try capacityRows(slice: slice, sockDiag: sockDiag, tcpTarget: tcpTarget, udpTarget: udpTarget)
        return rows
    }

    /// Exactly N flows per destination: fill the slice, then one more must be refused.
    private func capacityRows(slice: EgressSlice, sockDiag: SockDiag, tcpTarget: Endpoint, udpTarget: Endpoint) throws -> [Row] {
        let dialers = [
            ("tcp", "capacity: kernel range", try SliceDialer(slice: slice, strategy: .kernelRange, sockDiag: sockDiag), true),
            ("udp", "capacity: lock and sock_diag check", try SliceDialer(slice: slice, sockDiag: sockDiag), false),
        ]
        return try dialers.map { transport, method, dialer, tcp in
            let open = { () throws(DialError) in
                tcp ? try dialer.connectTCP(to: tcpTarget) : try dialer.connectUDP(to: udpTarget)
            }
            let holder = try Holder(count: slicePorts, open)
            var refused = false
            do { _ = try open() } catch { if case DialError.sliceExhausted = error { refused = true } }
            withExtendedLifetime(holder) {}
            let exact = holder.count == slicePorts && refused
            return Row(transport: transport, method: method, fill: 100, operationsPerSecond: Double(holder.count),
                       ratioToLimit: 1, target: "exactly \(slicePorts), then refused", meetsTarget: exact)
        }
    }

    /// What `alternate` measured for one method.
    private struct Measured {
        var operations = 0
        var elapsed = Duration.zero
        /// Operations per second in each round.
        var roundRates: [Double] = []

        var rate: Double { Double(operations) / elapsed.seconds }
    }

    /// Runs each method in turn for many short rounds, so drift on a shared machine hits every
    /// method alike.
    private func alternate(_ methods: [Method: () throws -> Void]) throws -> [Method: Measured] {
        let rounds = max(10, Int(secondsPerCell * 20))
        let clock = ContinuousClock()
        var measured: [Method: Measured] = [:]
        for _ in 0..<rounds {
            for (method, body) in methods.sorted(by: { $0.key < $1.key }) {
                let start = clock.now
                var count = 0
                repeat {
                    try body()
                    count += 1
                } while clock.now - start < .seconds(secondsPerCell / Double(rounds)) && count < 1_000_000
                let elapsed = clock.now - start
                measured[method, default: Measured()].operations += count
                measured[method, default: Measured()].elapsed += elapsed
                measured[method, default: Measured()].roundRates.append(Double(count) / elapsed.seconds)
            }
        }
        return measured
    }

    /// The median over rounds of a method's rate divided by the limit's rate in the same
    /// round: robust against the bursts of other load that a total would absorb.
    private func ratio(_ method: Measured, to limit: Measured) -> Double {
        let ratios = zip(method.roundRates, limit.roundRates).map { $0 / $1 }.sorted()
        return ratios.isEmpty ? 0 : ratios[ratios.count / 2]
    }

    static func command(_ arguments: String...) throws { try command(arguments) }

    static func command(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            let text = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            throw BenchmarkFailure("\(arguments.joined(separator: " ")) failed: \(text)")
        }
    }
}

/// Flows held open to fill a slice, closed together when released.
private final class Holder {
    private var sockets: [Box] = []

    private final class Box {
        let socket: ConnectedSocket
        init(_ socket: consuming ConnectedSocket) { self.socket = socket }
    }

    init(count: Int, _ open: () throws(DialError) -> ConnectedSocket) throws(DialError) {
        for _ in 0..<count { sockets.append(Box(try open())) }
    }

    var count: Int { sockets.count }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
