import Foundation
import PortSliceCore
import PortSliceLab
import PortSliceSockets
import PortSliceTestSupport
import Testing

/// Ten thousand client connections held open on the proxy at once, and new clients served
/// meanwhile.
extension ProxyTests {
    /// Holds `slow` connections that never finish their greeting (half send its first byte)
    /// and `relays` idle SOCKS relays to a listener of its own, says `held S R A` (A: relays
    /// its listener accepted), waits for a line, times 200 new SOCKS connections to the echo
    /// server and says `latency P50 P99 MAX` (seconds), then waits for its standard input to
    /// close. It runs apart from the test process: with thousands of descriptors open, a
    /// process that spawns others (as tests beside this one do) cannot do so safely.
    static let holdingClient = #"""
        import socket, struct, sys, time
        proxy_port, slow_count, relay_count, echo_port = map(int, sys.argv[1:5])
        def socks(port):
            s = socket.create_connection(("127.0.0.1", proxy_port), timeout=5)
            s.sendall(b"\x05\x01\x00"); assert s.recv(2) == b"\x05\x00"
            s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack("!H", port))
            reply = s.recv(10); assert reply[:2] == b"\x05\x00", reply
            return s
        destination = socket.socket(); destination.bind(("127.0.0.1", 0)); destination.listen(4096); destination.setblocking(False)
        slow, relays, accepted = [], [], []
        def accept_pending():
            while True:
                try: accepted.append(destination.accept()[0])
                except BlockingIOError: return
        for i in range(slow_count):
            s = socket.create_connection(("127.0.0.1", proxy_port), timeout=5)
            if i % 2 == 0: s.sendall(b"\x05")
            slow.append(s)
        for i in range(relay_count):
            relays.append(socks(destination.getsockname()[1])); accept_pending()
        deadline = time.time() + 10
        while len(accepted) < relay_count and time.time() < deadline:
            accept_pending(); time.sleep(0.01)
        print("held", len(slow), len(relays), len(accepted), flush=True)
        sys.stdin.readline()
        latencies = []
        for i in range(200):
            started = time.perf_counter()
            s = socks(echo_port); s.sendall(b"GET / HTTP/1.0\r\n\r\n"); s.recv(100); s.close()
            latencies.append(time.perf_counter() - started)
        latencies.sort()
        print("latency", latencies[100], latencies[197], latencies[199], flush=True)
        sys.stdin.read()
        """#

    @Test("10,000 client connections held (8,000 that never finish their greeting, 2,000 idle relays; fewer where the open-file limit is lower), and new clients are still served")
    func tenThousandHeld() async throws {
        // The holding client has every client and the relays' far ends (12,000 descriptors of
        // the 20,000 a process may have here); the proxy as many (a relay takes two).
        let limit = Int(HostNetwork.raiseOpenFileLimit(to: 20_000))
        try #require(limit >= 3_000, "the open-file limit is \(limit); this test needs at least 3,000")
        let scale = min(1.0, Double(limit - 2_000) / 12_000)
        let slowCount = Int(8_000 * scale), relayCount = Int(2_000 * scale)
        let echo = try EchoServers(Endpoint(IPv4Address(127, 0, 0, 1), 0))
        // A slice of its own, larger than the relays, away from the other tests' slices.
        let proxy = try Proxy(extra: ["--allow", "127.0.0.1/32", "--connections-per-client", "100000"], slices: ["127.0.0.2:43000-46999", Proxy.deSlice])
        let fresh = (kib: try residentKiB(proxy.process), descriptors: proxy.openDescriptors)

        let client = Process()
        client.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        client.arguments = ["python3", "-c", Self.holdingClient, "\(proxy.port)", "\(slowCount)", "\(relayCount)", "\(echo.endpoint.port)"]
        let input = Pipe(), output = Pipe()
        client.standardInput = input
        client.standardOutput = output
        try client.run()
        defer {
            try? input.fileHandleForWriting.close()
            client.waitUntilExit()
        }
        let lines = LineReader(output.fileHandleForReading)
        let held = try await offThePool { lines.next() }
        #expect(held == "held \(slowCount) \(relayCount) \(relayCount)", "the client said: \(held ?? "nothing")")
        let holding = (kib: try residentKiB(proxy.process), descriptors: proxy.openDescriptors)
        #expect(holding.descriptors - fresh.descriptors == slowCount + 2 * relayCount,
                "the proxy holds \(holding.descriptors) descriptors, \(fresh.descriptors) before")

        // New clients while all of that is held: every one served, and each one timed.
        input.fileHandleForWriting.write(Data("\n".utf8))
        let timing = try await offThePool { lines.next() }
        let seconds = try #require(timing?.split(separator: " ").dropFirst().compactMap { Double($0) }, "the client said: \(timing ?? "nothing")")
        #expect(seconds.count == 3, "\(timing ?? "")")
        let perConnection = Double(holding.kib - fresh.kib) / Double(slowCount + relayCount)
        print("""
            held \(slowCount) slow clients and \(relayCount) relays: proxy RSS \(fresh.kib) KiB -> \(holding.kib) KiB \
            (\(String(format: "%.2f", perConnection)) KiB per held connection); 200 new clients meanwhile (seconds): \
            p50, p99, max \(seconds)
            """)
    }
}

/// Lines of a child's standard output, as they come.
final class LineReader: @unchecked Sendable {
    private let handle: FileHandle
    private var pending = ""

    init(_ handle: FileHandle) { self.handle = handle }

    /// The next whole line, without its newline; nil at the end of the output.
    func next() -> String? {
        while true {
            if let newline = pending.firstIndex(of: "\n") {
                let line = String(pending[..<newline])
                pending = String(pending[pending.index(after: newline)...])
                return line
            }
            let data = handle.availableData
            if data.isEmpty { return nil }
            pending += String(decoding: data, as: UTF8.self)
        }
    }
}
