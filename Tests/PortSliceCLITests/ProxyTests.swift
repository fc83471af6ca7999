import Foundation
import PortSliceCore
import PortSliceLab
import PortSliceSockets
import PortSliceTestSupport
import Testing

/// `portslice proxy` with real clients: curl through SOCKS5 and HTTP CONNECT, clients from
/// different geofeed entries, refused destinations and malformed bytes.
@Suite("portslice proxy")
struct ProxyTests {
    /// A running proxy on a port of its own, sending from two loopback egress addresses.
    final class Proxy: @unchecked Sendable {
        let command: RunningCommand
        let directory: TemporaryDirectory
        var port: Int { command.port }
        var process: Process { command.process }

        static let usSlice = "127.0.0.2:40000-40999"
        static let deSlice = "127.0.0.3:41000-41999"

        static let twoCountries = "127.0.0.2/32,US,US-CA,San Jose,,residential,high\n127.0.0.3/32,DE,DE-BE,Berlin,,residential,high\n"

        init(extra: [String] = [], slices: [String] = [usSlice, deSlice], pool poolText: String = twoCountries, environment: [String: String] = [:]) throws {
            directory = try TemporaryDirectory()
            let pool = try directory.write("pool.csv", poolText)
            let clients = try directory.write("clients.csv", "127.0.0.1/32,US,US-CA,San Jose,\n127.0.0.5/32,DE,DE-BE,Berlin,\n")
            command = try RunningCommand(["proxy", "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"] + slices.flatMap { ["--slice", $0] } + ["--pool", pool, "--clients", clients] + extra,
                                         readyPattern: #"listening on 127\.0\.0\.1:\d+"#, environment: environment)
        }

        var endpoint: Endpoint { Endpoint(IPv4Address(127, 0, 0, 1), UInt16(port)) }

        /// The port of the status page and metrics, from the ready line.
        var adminPort: Int {
            get throws {
                let output = command.readyOutput
                guard let range = output.range(of: #"status and metrics on http://127\.0\.0\.1:\d+/"#, options: .regularExpression),
                      let port = output[range].split(separator: ":").last.flatMap({ Int($0.dropLast()) }) else {
                    throw CommandRunner.RunnerError("no admin address in the ready line: \(output)")
                }
                return port
            }
        }

        /// `path` on the admin listener.
        func adminURL(_ path: String) throws -> String { "http://127.0.0.1:\(try adminPort)\(path)" }

        /// Descriptors the proxy process has open now.
        var openDescriptors: Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(process.processIdentifier)/fd"))?.count ?? 0 }
    }

    func curl(_ arguments: [String]) async throws -> (status: Int32, body: String) { try await CommandRunner.curl(arguments) }

    /// Runs a Python client script with `arguments`; returns its exit status and output.
    func python(_ script: String, _ arguments: String...) async throws -> (Int32, String) {
        try await offThePool {
            let python = Process()
            python.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            python.arguments = ["python3", "-c", script] + arguments
            let pipe = Pipe()
            python.standardOutput = pipe
            python.standardError = pipe
            try python.run()
            let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            python.waitUntilExit()
            return (python.terminationStatus, text)
        }
    }

    /// The echo server answers `GET` with the address and port it saw.
    func seenSource(_ body: String) throws -> Endpoint {
        try #require(try? Endpoint(parsing: body.trimmingCharacters(in: .whitespacesAndNewlines)), "body: \(body)")
    }

    /// Expects the echo server's answer to name 127.0.0.2 (where the client at 127.0.0.1, in
    /// San Jose, leaves from) and a port of its slice: an unsliced 127.0.0.1 would fail both.
    func expectLeftFromUSSlice(_ body: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let source = try seenSource(body)
        let slice = try EgressSlice(parsing: Proxy.usSlice)
        #expect(source.address == slice.address && slice.ports.contains(source.port), "left from \(source), not from \(slice)", sourceLocation: sourceLocation)
    }

    /// More than one CPU, each with its loop: no CPU quota makes the loops fewer than the CPUs.
    static let cpusToPin = ((try? CPUAffinity.allowedCPUs())?.count).map { $0 > 1 && $0 == ProcessInfo.processInfo.activeProcessorCount } ?? false

    /// The CPUs each of `process`'s connection loops may run on, by loop number, from
    /// /proc (the loops name their threads `proxy-loop-N`).
    static func loopPlacement(of process: Process) throws -> [Int: [Int]] {
        let tasks = "/proc/\(process.processIdentifier)/task"
        var placement: [Int: [Int]] = [:]
        for task in try FileManager.default.contentsOfDirectory(atPath: tasks) {
            // Other threads come and go (idle pool threads end): one gone since the listing is skipped.
            guard let name = try? String(contentsOfFile: "\(tasks)/\(task)/comm", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines),
                  name.hasPrefix("proxy-loop-"), let loop = Int(name.dropFirst("proxy-loop-".count)) else { continue }
            let status = try String(contentsOfFile: "\(tasks)/\(task)/status", encoding: .utf8)
            let line = try #require(status.split(separator: "\n").first { $0.hasPrefix("Cpus_allowed_list:") })
            // The kernel writes a CPU list (`0-3,6`) in a port set's syntax.
            placement[loop] = try PortSet(parsing: String(line.dropFirst("Cpus_allowed_list:".count))).ports.map(Int.init)
        }
        return placement
    }

    @Test("one connection loop per CPU the process may use, each kept on its own CPU; --no-pin-loops leaves them to the scheduler",
          .enabled(if: ProxyTests.cpusToPin, "needs more than one CPU and no CPU quota: otherwise pinned and unpinned loops look alike"))
    func loopsKeepToTheirCPUs() throws {
        let allowed = try CPUAffinity.allowedCPUs()
        let pinned = try Proxy()
        // The loops name and pin themselves before the proxy says it listens.
        let placement = try Self.loopPlacement(of: pinned.process)
        #expect(placement == Dictionary(uniqueKeysWithValues: allowed.enumerated().map { ($0.offset, [$0.element]) }), "allowed: \(allowed)")
        let free = try Proxy(extra: ["--no-pin-loops"])
        let unpinned = try Self.loopPlacement(of: free.process)
        #expect(unpinned == Dictionary(uniqueKeysWithValues: allowed.indices.map { ($0, allowed) }), "allowed: \(allowed)")
    }

    @Test("curl through SOCKS5, HTTP CONNECT and plain HTTP forwarding: the server sees the egress address and a port of its slice")
    func curlThroughBothProtocols() async throws {
        let server = try EchoServers(Endpoint(IPv4Address(127, 0, 0, 1), 0))
        let proxy = try Proxy(extra: ["--allow", "127.0.0.1/32"])
        let url = "http://127.0.0.1:\(server.endpoint.port)/whoami"
        let us = try EgressSlice(parsing: Proxy.usSlice)
        let modes = [["--socks5-hostname", "127.0.0.1:\(proxy.port)"], ["-p", "-x", "http://127.0.0.1:\(proxy.port)"], ["-x", "http://127.0.0.1:\(proxy.port)"]]
        for mode in modes {
            let (status, body) = try await curl(mode + [url])
            #expect(status == 0, "\(mode)")
            let source = try seenSource(body)
            #expect(source.address == us.address && us.ports.contains(source.port), "\(mode): the server saw \(source)")
        }
        // The proxy's counters, on its admin listener.
        let metrics = try await curl([try proxy.adminURL("/metrics")]).body
        let labels = #"egress="127.0.0.2",slice="40000-40999""#
        #expect(metrics.contains(#"portslice_proxy_flows_total{\#(labels),protocol="socks"} 1"#), "\(metrics)")
        #expect(metrics.contains(#"portslice_proxy_flows_total{\#(labels),protocol="http"} 2"#))
        #expect(metrics.contains("# HELP portslice_proxy_flows_total Flows opened"), "each metric says what it counts")
        let sent = metrics.split(separator: "\n").first { $0.hasPrefix("portslice_proxy_bytes_total{\(labels),direction=\"sent\"}") }
        #expect((sent?.split(separator: " ").last.flatMap { Double($0) } ?? 0) > 0, "\(sent ?? "no sent bytes")")
    }

    @Test("a client that shuts down its sending side still gets the whole answer")
    func halfClose() async throws {
        let server = try EchoServers(Endpoint(IPv4Address(127, 0, 0, 1), 0))
        let proxy = try Proxy(extra: ["--allow", "127.0.0.1/32"])
        let script = #"""
            import socket, struct, sys
            s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
            s.sendall(b"\x05\x01\x00"); assert s.recv(2) == b"\x05\x00"
            s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack("!H", int(sys.argv[2])))
            assert s.recv(10)[:2] == b"\x05\x00"
            s.sendall(b"GET / HTTP/1.0\r\n\r\n"); s.shutdown(socket.SHUT_WR)
            answer = b""
            while True:
                chunk = s.recv(4096)
                if not chunk: break
                answer += chunk
            print(answer.decode().split("\r\n\r\n")[-1].strip())
            """#
        let (status, output) = try await python(script, "\(proxy.port)", "\(server.endpoint.port)")
        #expect(status == 0, "\(output)")
        try expectLeftFromUSSlice(output)
    }

    @Test("bytes sent right behind the CONNECT head, before the 200, reach the destination first")
    func earlyDataAfterConnect() async throws {
        let server = try EchoServers(Endpoint(IPv4Address(127, 0, 0, 1), 0))
        let proxy = try Proxy(extra: ["--allow", "127.0.0.1/32"])
        let socket = try UnslicedConnect.tcp(to: proxy.endpoint)
        // In the same segment as the head, and in one of their own while the flow is opening.
        try socket.send(Array("CONNECT 127.0.0.1:\(server.endpoint.port) HTTP/1.1\r\n\r\nearly".utf8))
        try socket.send(Array(" bytes".utf8))
        var answer = ""
        let deadline = ContinuousClock.now + .seconds(5)
        while !answer.hasSuffix("early bytes") && ContinuousClock.now < deadline {
            answer += String(decoding: try socket.receive(timeout: .seconds(5)), as: UTF8.self)
        }
        #expect(answer == "HTTP/1.1 200 Connection established\r\n\r\nearly bytes", "\(answer)")
    }

    @Test("when the chosen address's slice is out of ports, an equally close address serves, then SOCKS reply 1")
    func exhaustedSliceFallsOver() async throws {
        let listener = try AcceptingListener(Endpoint(IPv4Address(127, 0, 0, 1), 0), holding: true)
        // Two addresses with the same traits, one port each: two flows to one destination fit.
        // Ports no other test's slice holds, below the local port range: inside it, the kernel's
        // own choice skips a port that any socket has bound explicitly, on any address, and a
        // listener of another test given port 0 could take one of these and fill a slice early.
        let proxy = try Proxy(extra: ["--allow", "127.0.0.1/32"], slices: ["127.0.0.2:22600-22600", "127.0.0.3:22601-22601"],
                              pool: "127.0.0.2/32,US,US-CA,San Jose,,residential,high\n127.0.0.3/32,US,US-CA,San Jose,,residential,high\n")
        let target = listener.endpoint
        let (a, b, c, d) = target.address.octets
        let request: [UInt8] = [5, 1, 0, 1, a, b, c, d, UInt8(target.port >> 8), UInt8(target.port & 0xff)]
        var held: [OpenFlow] = []
        var replies: [[UInt8]] = []
        for _ in 0..<3 {
            let flow = OpenFlow(try UnslicedConnect.tcp(to: proxy.endpoint))
            try flow.socket.send([5, 1, 0])
            #expect(try flow.socket.receive(timeout: .seconds(5)) == [5, 0])
            try flow.socket.send(request)
            replies.append(try flow.socket.receive(timeout: .seconds(5)))
            held.append(flow)
        }
        let sources = replies.prefix(2).map { Array($0[4..<10]) }
        #expect(replies.prefix(2).allSatisfy { $0.prefix(2) == [5, 0] }, "\(replies)")
        #expect(Set(sources.map { $0.prefix(4) }) == [[127, 0, 0, 2], [127, 0, 0, 3]], "both addresses served: \(sources)")
        #expect(replies[2].prefix(2) == [5, 1], "the third flow finds every slice full: \(replies[2])")
        let metrics = try await curl([try proxy.adminURL("/metrics")]).body
        #expect(metrics.contains("portslice_proxy_slice_exhausted_total"), "\(metrics)")
        held.removeAll()
    }

    @Test("clients from different geofeed entries leave from the matching address, and keep it")
    func traitsMirrored() async throws {
        let server = try EchoServers(Endpoint(IPv4Address(127, 0, 0, 1), 0))
        let proxy = try Proxy(extra: ["--allow", "127.0.0.1/32"])
        let url = "http://127.0.0.1:\(server.endpoint.port)/"
        let de = try EgressSlice(parsing: Proxy.deSlice)
        for _ in 0..<3 {
            let (status, body) = try await curl(["--interface", "127.0.0.5", "--socks5-hostname", "127.0.0.1:\(proxy.port)", url])
            #expect(status == 0)
            let source = try seenSource(body)
            #expect(source.address == de.address && de.ports.contains(source.port), "a client in Berlin left from \(source)")
        }
    }

    /// Sends `prefix` (a PROXY header, say), then a SOCKS5 CONNECT to `target` and an HTTP
    /// GET through it; returns the body the echo server sent back.
    func socksGet(via proxy: Proxy, prefix: [UInt8], target: Endpoint) throws -> String {
        let socket = try UnslicedConnect.tcp(to: proxy.endpoint)
        try socket.send(prefix + [5, 1, 0])
        #expect(try socket.receive(timeout: .seconds(5)) == [5, 0])
        let (a, b, c, d) = target.address.octets
        try socket.send([5, 1, 0, 1, a, b, c, d, UInt8(target.port >> 8), UInt8(target.port & 0xff)])
        let reply = try socket.receive(timeout: .seconds(5))
        guard reply.prefix(2) == [5, 0] else { return "SOCKS reply \(reply)" }
        try socket.send(Array("GET / HTTP/1.0\r\n\r\n".utf8))
        var answer: [UInt8] = []
        while true {
            let bytes = try socket.receive(timeout: .seconds(5))
            if bytes.isEmpty { break }
            answer += bytes
        }
        return String(decoding: answer, as: UTF8.self).components(separatedBy: "\r\n\r\n").last ?? ""
    }

    @Test("behind a trusted balancer the PROXY header names the client, whose traits choose the address")
    func proxyProtocolClients() async throws {
        let server = try EchoServers(Endpoint(IPv4Address(127, 0, 0, 1), 0))
        let proxy = try Proxy(extra: ["--allow", "127.0.0.1/32", "--trust-proxy-protocol", "--proxy-protocol-from", "127.0.0.1/32"])
        let us = try EgressSlice(parsing: Proxy.usSlice), de = try EgressSlice(parsing: Proxy.deSlice)
        let berlinV1 = Array("PROXY TCP4 127.0.0.5 127.0.0.1 50000 1080\r\n".utf8)
        let sanJoseV2: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x21, 0x11, 0, 12,
                                  127, 0, 0, 1, 127, 0, 0, 1, 0xc3, 0x50, 0x04, 0x38]
        for (header, slice) in [(berlinV1, de), (sanJoseV2, us), (berlinV1, de)] {
            let source = try seenSource(try await offThePool { [self] in try socksGet(via: proxy, prefix: header, target: server.endpoint) })
            #expect(source.address == slice.address && slice.ports.contains(source.port), "left from \(source)")
        }
        // Without a header the connection is closed: the listener trusts nothing else.
        let bare = try UnslicedConnect.tcp(to: proxy.endpoint)
        try bare.send([5, 1, 0])
        #expect(try bare.receive(timeout: .seconds(5)).isEmpty)
    }

    @Test("with --users (bcrypt hashes made by `portslice users add`), SOCKS needs RFC 1929 credentials and HTTP CONNECT needs Proxy-Authorization; a password with bytes added is refused, a plain-text file refused at start")
    func authentication() async throws {
        let server = try EchoServers(Endpoint(IPv4Address(127, 0, 0, 1), 0))
        let users = try TemporaryDirectory()
        let file = users.url.appendingPathComponent("users").path
        for (name, password) in [("alice", "s3cret"), ("bob", "hunter2")] {
            let added = try await CommandRunner.run(["users", "add", name, "--file", file], input: password + "\n")
            #expect(added.status == 0 && added.output.contains("added \(name) to \(file)"), "\(added.output)\(added.errorOutput)")
        }
        // The file holds bcrypt hashes, never the passwords, and only its owner may read it.
        let text = try String(contentsOfFile: file, encoding: .utf8)
        let lines = text.split(separator: "\n")
        #expect(lines.count == 2 && zip(lines, ["alice", "bob"]).allSatisfy { line, name in line.hasPrefix("\(name):$2b$12$") && line.count == name.count + 1 + 60 }, "\(text)")
        #expect(!text.contains("s3cret") && !text.contains("hunter2"))
        #expect(try FileManager.default.attributesOfItem(atPath: file)[.posixPermissions] as? Int == 0o600)

        let proxy = try Proxy(extra: ["--allow", "127.0.0.1/32", "--users", file])
        let url = "http://127.0.0.1:\(server.endpoint.port)/"
        let us = try EgressSlice(parsing: Proxy.usSlice)
        let good = try await curl(["--proxy", "socks5h://alice:s3cret@127.0.0.1:\(proxy.port)", url])
        #expect(good.status == 0)
        let socksSource = try seenSource(good.body)
        #expect(socksSource.address == us.address && us.ports.contains(socksSource.port), "the server saw \(socksSource)")
        let wrong = try await curl(["--proxy", "socks5h://alice:wrong@127.0.0.1:\(proxy.port)", url])
        #expect(wrong.status != 0)
        let anonymous = try await curl(["--socks5-hostname", "127.0.0.1:\(proxy.port)", url])
        #expect(anonymous.status != 0)
        // bcrypt reads 72 bytes at most: the right password with bytes after it must still fail
        // (RFC 1929 carries at most 255, so 200 for SOCKS).
        let socksLonger = try await curl(["--proxy", "socks5h://alice:s3cret\(String(repeating: "x", count: 200))@127.0.0.1:\(proxy.port)", url])
        #expect(socksLonger.status != 0, "\(socksLonger.body)")
        let http = try await curl(["-p", "-x", "http://127.0.0.1:\(proxy.port)", "-U", "bob:hunter2", url])
        #expect(http.status == 0)
        let httpSource = try seenSource(http.body)
        #expect(httpSource.address == us.address && us.ports.contains(httpSource.port), "the server saw \(httpSource)")
        let refused = try await curl(["-o", "/dev/null", "-w", "%{http_connect}", "-p", "-x", "http://127.0.0.1:\(proxy.port)", url])
        #expect(refused.body == "407")
        let httpLonger = try await curl(["-o", "/dev/null", "-w", "%{http_connect}", "-p", "-x", "http://127.0.0.1:\(proxy.port)",
                                         "-U", "bob:hunter2" + String(repeating: "x", count: 256), url])
        #expect(httpLonger.body == "407")

        // A users file of plain-text passwords, as before bcrypt: the proxy does not start, and
        // says how to make the line.
        let plain = try users.write("plain-users", "alice:s3cret\n")
        let pool = try users.write("pool.csv", Proxy.twoCountries)
        let stopped = try await CommandRunner.run(["proxy", "--listen", "127.0.0.1:0", "--slice", Proxy.usSlice, "--pool", pool, "--users", plain])
        #expect(stopped.status != 0)
        #expect(stopped.errorOutput.contains("\(plain) line 1: the password of 'alice' is not a bcrypt hash"), "\(stopped.errorOutput)")
        #expect(stopped.errorOutput.contains("`portslice users add alice --file \(plain)`"), "\(stopped.errorOutput)")
        #expect(!stopped.errorOutput.contains("s3cret"))
    }

    /// The start of a Python UDP ASSOCIATE client (argv: the proxy's port, the echo server's):
    /// the association asked for over TCP, `relay` its address, `udp` the client's socket.
    static let udpAssociation = #"""
        import socket, struct, sys
        proxy_port, target_port = int(sys.argv[1]), int(sys.argv[2])
        tcp = socket.create_connection(("127.0.0.1", proxy_port), timeout=5)
        tcp.sendall(b"\x05\x01\x00"); assert tcp.recv(2) == b"\x05\x00"
        tcp.sendall(b"\x05\x03\x00\x01" + socket.inet_aton("0.0.0.0") + struct.pack("!H", 0))
        reply = tcp.recv(10); assert reply[:2] == b"\x05\x00", reply
        relay = (socket.inet_ntoa(reply[4:8]), struct.unpack("!H", reply[8:10])[0])
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); udp.settimeout(5); udp.bind(("127.0.0.1", 0))

        """#

    /// A UDP ASSOCIATE client from Python's standard library: three datagrams to the echo
    /// server through the relay, each answer checked (header and payload).
    static let udpClient = udpAssociation + #"""
        header = b"\x00\x00\x00\x01" + socket.inet_aton("127.0.0.1") + struct.pack("!H", target_port)
        for i in range(3):
            payload = b"datagram %d" % i
            udp.sendto(header + payload, relay)
            data, _ = udp.recvfrom(65535)
            assert data == header + payload, data
        print("ok")
        """#

    @Test("UDP ASSOCIATE: a Python client's datagrams leave from one port of the slice and their answers come back")
    func udpAssociate() async throws {
        let server = try EchoServers(Endpoint(IPv4Address(127, 0, 0, 1), 0))
        let proxy = try Proxy(extra: ["--allow", "127.0.0.1/32"])
        let run = try await python(Self.udpClient, "\(proxy.port)", "\(server.endpoint.port)")
        #expect(run.0 == 0 && run.1.contains("ok"), "\(run.1)")
        let us = try EgressSlice(parsing: Proxy.usSlice)
        let sources = server.peers[.udp, default: []]
        #expect(sources.count == 3 && Set(sources).count == 1, "\(sources)")
        #expect(sources.allSatisfy { $0.address == us.address && us.ports.contains($0.port) }, "\(sources)")
    }

    /// A listener whose accept queue is full (backlog 0, one connection waiting, none
    /// accepted): the kernel drops further SYNs, so a handshake towards it never ends.
    static let fullListener = """
        import socket, sys, time
        s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(0)
        port = s.getsockname()[1]
        waiting = socket.create_connection(("127.0.0.1", port))
        print(port, flush=True)
        sys.stdin.read()
        """

    /// `fullListener` running; its port, and what stops it.
    func startFullListener() async throws -> (port: UInt16, stop: () -> Void) {
        let listener = Process()
        listener.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        listener.arguments = ["python3", "-c", Self.fullListener]
        let output = Pipe(), input = Pipe()
        listener.standardOutput = output
        listener.standardInput = input
        try listener.run()
        let stop = { try? input.fileHandleForWriting.close(); listener.waitUntilExit() }
        let line = try await offThePool { String(decoding: output.fileHandleForReading.availableData, as: UTF8.self) }
        guard let port = UInt16(line.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            stop()
            throw CommandRunner.RunnerError("the full listener said: \(line)")
        }
        return (port, stop)
    }

    @Test("a destination that never completes the handshake gets SOCKS reply 6 and HTTP 502 after --connect-timeout, and the proxy serves on")
    func connectTimeout() async throws {
        let (port, stopListener) = try await startFullListener()
        defer { stopListener() }
        let proxy = try Proxy(extra: ["--allow", "127.0.0.1/32", "--connect-timeout", "1"])
        // Timed on the client's own thread, from the request to the reply: a return to the
        // cooperative pool can wait seconds behind other tests, which is not the proxy's time.
        let (reply, waited) = try await offThePool { () -> ([UInt8], Duration) in
            let socks = try UnslicedConnect.tcp(to: proxy.endpoint)
            try socks.send([5, 1, 0])
            _ = try socks.receive(timeout: .seconds(5))
            let started = ContinuousClock.now
            try socks.send([5, 1, 0, 1, 127, 0, 0, 1, UInt8(port >> 8), UInt8(port & 0xff)])
            return (try socks.receive(timeout: .seconds(10)), ContinuousClock.now - started)
        }
        #expect(Array(reply.prefix(2)) == [5, 6], "reply \(reply)")
        #expect(waited >= .milliseconds(900) && waited < .seconds(5), "answered after \(waited)")
        let (_, status) = try await curl(["-o", "/dev/null", "-w", "%{http_connect}", "-p", "-x", "http://127.0.0.1:\(proxy.port)", "http://127.0.0.1:\(port)/"])
        #expect(status == "502")
        let server = try EchoServers(Endpoint(IPv4Address(127, 0, 0, 1), 0))
        let (ok, body) = try await curl(["--socks5-hostname", "127.0.0.1:\(proxy.port)", "http://127.0.0.1:\(server.endpoint.port)/"])
        #expect(ok == 0, "\(body)")
        try expectLeftFromUSSlice(body)
    }

    /// Sends 200 SOCKS5 CONNECTs to a destination that never answers (argv 2), then one to a
    /// live one (argv 3), through the proxy (argv 1); prints the seconds all 200 were sent in,
    /// the live reply code and how long it took, the first and last second a hanging one was
    /// answered (from the start), and the reply codes they got.
    static let manyHandshakesClient = """
        import socket, sys, time
        proxy, hanging, live = (int(a) for a in sys.argv[1:4])
        def request(port):
            s = socket.create_connection(("127.0.0.1", proxy)); s.settimeout(10)
            s.sendall(b"\\x05\\x01\\x00"); assert s.recv(2) == b"\\x05\\x00"
            s.sendall(b"\\x05\\x01\\x00\\x01\\x7f\\x00\\x00\\x01" + port.to_bytes(2, "big")); return s
        start = time.monotonic()
        waiting = [request(hanging) for _ in range(200)]
        sent = time.monotonic() - start
        asked = time.monotonic(); reply = request(live).recv(10); took = time.monotonic() - asked
        answers = []
        for s in waiting:
            r = s.recv(10); answers.append((r[1] if len(r) > 1 else 255, time.monotonic() - start))
        print(sent, reply[1], took, min(t for _, t in answers), max(t for _, t in answers), sorted({c for c, _ in answers}))
        """

    @Test("200 handshakes that never end are each answered with reply 6 at --connect-timeout, none queued behind the others, and a live destination is served meanwhile")
    func manyConnectTimeouts() async throws {
        let (port, stopListener) = try await startFullListener()
        defer { stopListener() }
        let server = try EchoServers(Endpoint(IPv4Address(127, 0, 0, 1), 0))
        let proxy = try Proxy(extra: ["--allow", "127.0.0.1/32", "--connect-timeout", "1", "--connections-per-client", "1000"])
        let (status, output) = try await python(Self.manyHandshakesClient, "\(proxy.port)", "\(port)", "\(server.endpoint.port)")
        try #require(status == 0, "\(output)")
        let fields = output.split(separator: " ", maxSplits: 5).map(String.init)
        let (sent, liveReply, liveTook) = (Double(fields[0]) ?? 99, fields[1], Double(fields[2]) ?? 99)
        let (first, last) = (Double(fields[3]) ?? 0, Double(fields[4]) ?? 99)
        #expect(fields[5].trimmingCharacters(in: .whitespacesAndNewlines) == "[6]", "reply codes: \(output)")
        #expect(liveReply == "0" && liveTook < 0.5, "the live destination waited behind the hanging ones: \(output)")
        #expect(first >= 0.9, "answered before the timeout: \(output)")
        // One thread per waiting handshake, as before, answered the last ones a whole timeout later.
        #expect(last < sent + 1.8, "the last hanging CONNECT was answered after \(last) s, sent within \(sent) s: \(output)")
    }

    @Test("internal destinations are refused with SOCKS reply 2 and HTTP 403 unless allowed")
    func refusedDestinations() async throws {
        let server = try EchoServers(Endpoint(IPv4Address(127, 0, 0, 1), 0))
        let proxy = try Proxy()
        let socks = try UnslicedConnect.tcp(to: proxy.endpoint)
        try socks.send([5, 1, 0])
        #expect(try socks.receive(timeout: .seconds(5)) == [5, 0])
        let port = server.endpoint.port
        try socks.send([5, 1, 0, 1, 127, 0, 0, 1, UInt8(port >> 8), UInt8(port & 0xff)])
        let reply = try socks.receive(timeout: .seconds(5))
        #expect(Array(reply.prefix(2)) == [5, 2], "reply \(reply)")
        let (_, body) = try await curl(["-o", "/dev/null", "-w", "%{http_connect}", "-p", "-x", "http://127.0.0.1:\(proxy.port)", "http://10.1.2.3/"])
        #expect(body == "403")
        #expect(server.peers[.tcp, default: []].isEmpty)
        let metrics = try await curl([try proxy.adminURL("/metrics")]).body
        #expect(metrics.contains(#"portslice_proxy_failures_total{reason="refused_by_policy",protocol="socks"} 1"#), "\(metrics)")
        // The policy's own counter says why: both addresses are special-purpose (loopback, private use).
        #expect(metrics.contains(#"portslice_proxy_refusals_total{reason="special_purpose",protocol="socks"} 1"# + "\n"), "\(metrics)")
        #expect(metrics.contains(#"portslice_proxy_refusals_total{reason="special_purpose",protocol="http"} 1"# + "\n"), "\(metrics)")
    }

    @Test("malformed SOCKS and HTTP bytes close the connection with the right answer, and the proxy goes on serving")
    func malformedInput() async throws {
        let server = try EchoServers(Endpoint(IPv4Address(127, 0, 0, 1), 0))
        let proxy = try Proxy(extra: ["--allow", "127.0.0.1/32"])
        // Fixed cases first: answers a client can act on.
        let unsupported = try UnslicedConnect.tcp(to: proxy.endpoint)
        try unsupported.send([5, 1, 0])
        _ = try unsupported.receive(timeout: .seconds(5))
        try unsupported.send([5, 2, 0, 1, 127, 0, 0, 1, 0, 80])  // BIND
        #expect(Array(try unsupported.receive(timeout: .seconds(5)).prefix(2)) == [5, 7])
        let noMethod = try UnslicedConnect.tcp(to: proxy.endpoint)
        try noMethod.send([5, 1, 2])  // only username/password offered
        #expect(try noMethod.receive(timeout: .seconds(5)) == [5, 0xff])
        let badHTTP = try UnslicedConnect.tcp(to: proxy.endpoint)
        try badHTTP.send(Array("GET /relative HTTP/1.1\r\nHost: x\r\n\r\n".utf8))
        #expect(String(decoding: try badHTTP.receive(timeout: .seconds(5)), as: UTF8.self).hasPrefix("HTTP/1.1 400"))
        let noPort = try UnslicedConnect.tcp(to: proxy.endpoint)
        try noPort.send(Array("CONNECT 127.0.0.1 HTTP/1.1\r\n\r\n".utf8))
        #expect(String(decoding: try noPort.receive(timeout: .seconds(5)), as: UTF8.self).hasPrefix("HTTP/1.1 400"))

        let descriptorsBefore = proxy.openDescriptors
        // Then random bytes, bounded in count and time: each connection must end (closed by
        // the proxy, or answered and closed), never hang or crash the proxy.
        var generator = SplitMix64(seed: 7)
        let deadline = ContinuousClock.now + .seconds(20)
        var sent = 0
        while sent < 200 && ContinuousClock.now < deadline {
            let length = Int(generator.next() % 300) + 1
            var bytes = (0..<length).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            if sent.isMultiple(of: 2) { bytes[0] = 5 }  // half of them look like SOCKS
            let connection = try UnslicedConnect.tcp(to: proxy.endpoint)
            try? connection.send(bytes)
            try connection.resetOnClose()
            sent += 1
        }
        #expect(proxy.process.isRunning)
        // Nothing leaks: the proxy's descriptors come back to where they were.
        try await waitUntil(checkingEvery: .milliseconds(50)) { proxy.openDescriptors <= descriptorsBefore }
        #expect(proxy.openDescriptors <= descriptorsBefore, "the proxy holds \(proxy.openDescriptors) descriptors, \(descriptorsBefore) before")
        let (status, body) = try await curl(["--socks5-hostname", "127.0.0.1:\(proxy.port)", "http://127.0.0.1:\(server.endpoint.port)/"])
        #expect(status == 0, "after \(sent) malformed connections")
        try expectLeftFromUSSlice(body)
    }
}
