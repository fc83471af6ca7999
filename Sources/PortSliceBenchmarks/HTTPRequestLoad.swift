import Foundation
import PortSliceAPI
import PortSliceCore
import PortSliceSockets
import Synchronization

/// HTTP/1.1 requests from `clients` concurrent clients over connections kept open, each client
/// sending its next request once its last is answered: `bench alloc`'s closed loops through
/// HTTP (acquires, releases), for us and the peer alike.
///
/// Not AsyncHTTPClient (`LoadClient`, which the paced renewal round keeps): the load shares the
/// machine's two cores with the allocator under test, and AsyncHTTPClient spent about 125 us
/// of CPU per request, half a core at 3,700 acquires a second, while the allocator's event
/// loops spent a third of the acquire phase runnable but waiting for a core (read from
/// `/proc/PID/task/*/schedstat`). Here every request is written out before the clock starts
/// and each thread sleeps in one `poll` for all its clients, as the proxy benchmark's load
/// does (`SOCKSConnectLoad`), so the load costs little more than the kernel's work for its
/// ends of loopback TCP.
struct HTTPRequestLoad: Sendable {
    /// One request, whole, and which of the servers it goes to.
    struct Request: Sendable {
        let server: Int
        let bytes: [UInt8]
    }

    let servers: [Endpoint]
    let clients: Int

    /// The longest one request may wait for its answer before the run counts the server as stuck.
    static let answerTimeout = Duration.seconds(30)
    /// Past this an answer's head, or its body, is not an allocator's answer.
    static let largestHead = 64 * 1024
    static let largestBody = 16 * 1024 * 1024

    /// `route` as `AllocatorClient` sends it, to server `server`: the path with its parameters,
    /// the token, and `body` as JSON.
    func request(_ route: APIRoute, _ parameters: [String: String] = [:], to server: Int, token: String, body: (some Encodable)?) throws -> Request {
        var head = "\(route.method.rawValue) \(route.path(parameters)) HTTP/1.1\r\nHost: \(servers[server])\r\nAuthorization: Bearer \(token)\r\n"
        var content: [UInt8] = []
        if let body {
            content = Array(try JSONEncoder().encode(body))
            head += "Content-Type: application/json\r\n"
        }
        head += "Content-Length: \(content.count)\r\n\r\n"
        return Request(server: server, bytes: Array(head.utf8) + content)
    }

    /// Sends every request, `clients` at a time, each client on its own connection to each
    /// server; returns the answers' bodies in the order of `requests` and each one's time, from
    /// its first byte sent to its last byte read. The load runs on threads of its own, never on
    /// Swift's cooperative pool.
    /// - Throws: `BenchmarkFailure` at the first answer whose status is not `expect` (every
    ///   thread stops sending), or the first request not answered within `answerTimeout`.
    func run(_ requests: [Request], expect: Int) async throws -> (bodies: [[UInt8]], timings: Timings) {
        try await withCheckedThrowingContinuation { answered in
            Thread { answered.resume(with: Result { try runOnThreads(requests, expect: expect) }) }.start()
        }
    }

    private func runOnThreads(_ requests: [Request], expect: Int) throws -> (bodies: [[UInt8]], timings: Timings) {
        let shared = Shared(requests: requests, expect: expect)
        let began = ContinuousClock.now
        let clients = max(1, min(self.clients, requests.count))
        let threads = max(1, min(clients, ProcessInfo.processInfo.activeProcessorCount))
        _ = try onThreads(threads) { thread in
            // Clients spread as evenly as they go: 32 over 2 threads is 16 each.
            let share = clients / threads + (thread < clients % threads ? 1 : 0)
            do {
                let done = try Driver(load: self, shared: shared, clients: share).run()
                shared.finished.withLock { $0 += done }
            } catch {
                shared.stopped.store(true, ordering: .relaxed)
                throw error
            }
        }
        let done = shared.finished.withLock { $0 }.sorted { $0.index < $1.index }
        guard done.count == requests.count else { throw BenchmarkFailure("\(requests.count - done.count) requests were not answered") }
        return (done.map(\.body), Timings(times: done.map(\.time), elapsed: ContinuousClock.now - began, sent: done.map { $0.sent - began }))
    }

    /// What the threads share: the requests, which one is next, and what was answered.
    private final class Shared: Sendable {
        let requests: [Request]
        let expect: Int
        let next = Counter()
        /// Set by a thread that failed: the others send nothing more.
        let stopped = Atomic(false)
        let finished = Mutex<[(index: Int, body: [UInt8], sent: ContinuousClock.Instant, time: Duration)]>([])

        init(requests: [Request], expect: Int) {
            self.requests = requests
            self.expect = expect
        }
    }

    /// One thread's clients; lives on that thread only.
    private final class Driver {
        let load: HTTPRequestLoad
        let shared: Shared
        var clients: [Client]
        var done: [(index: Int, body: [UInt8], sent: ContinuousClock.Instant, time: Duration)] = []
        /// Where every read lands before it is added to its client's answer.
        let readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16 * 1024, alignment: 1)

        deinit { readBuffer.deallocate() }

        init(load: HTTPRequestLoad, shared: Shared, clients: Int) {
            self.load = load
            self.shared = shared
            self.clients = (0..<clients).map { _ in Client(servers: load.servers.count) }
        }

        func run() throws -> [(index: Int, body: [UInt8], sent: ContinuousClock.Instant, time: Duration)] {
            for client in clients { try send(client) }
            while case let busy = clients.filter({ $0.request != nil }), !busy.isEmpty {
                // Woken at least every 100 ms, to notice a stuck request.
                for position in PollSet.ready(busy.map(\.descriptor), timeoutMilliseconds: 100) {
                    let client = busy[position], index = client.request!
                    guard let answer = try read(client) else { continue }
                    guard answer.head.status == shared.expect else {
                        throw BenchmarkFailure(
                            "\(Self.requestLine(shared.requests[index])) answered \(answer.head.status): \(String(decoding: answer.body.prefix(300), as: UTF8.self))")
                    }
                    done.append((index, answer.body, client.sent, ContinuousClock.now - client.sent))
                    // The server said it closes this connection: the next request opens another.
                    if answer.head.closes { client.connections[client.server] = nil }
                    try send(client)
                }
                if let stuck = busy.first(where: { $0.request != nil && ContinuousClock.now - $0.sent > HTTPRequestLoad.answerTimeout }) {
                    throw BenchmarkFailure("waited \(HTTPRequestLoad.answerTimeout) for the answer to \(Self.requestLine(shared.requests[stuck.request!]))")
                }
            }
            return done
        }

        /// Sends `client` the next request, if any is left and no thread failed; connects to
        /// its server first, once.
        private func send(_ client: Client) throws {
            let index = shared.stopped.load(ordering: .relaxed) ? shared.requests.count : shared.next.take()
            guard index < shared.requests.count else {
                client.request = nil
                return
            }
            let request = shared.requests[index]
            if client.connections[request.server] == nil {
                client.connections[request.server] = HeldSocket(try UnslicedConnect.tcp(to: load.servers[request.server]))
            }
            client.request = index
            client.server = request.server
            client.received = []
            client.head = nil
            client.sent = ContinuousClock.now
            try client.connections[request.server]!.socket.send(request.bytes)
        }

        /// Reads what has arrived for `client`; its answer once the whole of it has.
        private func read(_ client: Client) throws -> (head: AnswerHead, body: [UInt8])? {
            let request = shared.requests[client.request!]
            // Readable, as `poll` said: one `recv`, which does not wait.
            switch StreamIO.read(client.descriptor, into: readBuffer) {
            case .transferred(let count): client.received += readBuffer.prefix(count)
            case .wouldBlock: return nil
            case .endOfStream: throw BenchmarkFailure("the server closed the connection before answering \(Self.requestLine(request))")
            case .failed(let errno): throw BenchmarkFailure("reading the answer to \(Self.requestLine(request)): \(errno)")
            }
            // The head is read once, when it is whole; the body's bytes only counted after.
            if client.head == nil { client.head = try AnswerHead(of: client.received) }
            guard let head = client.head else { return nil }
            guard client.received.count >= head.length + head.contentLength else { return nil }
            guard client.received.count == head.length + head.contentLength else {
                throw BenchmarkFailure("the server sent more than its answer to \(Self.requestLine(request))")
            }
            return (head, Array(client.received[head.length...]))
        }

        static func requestLine(_ request: Request) -> String {
            String(decoding: request.bytes.prefix { $0 != 13 }, as: UTF8.self)
        }
    }

    /// The head of an HTTP/1.1 answer: what the load needs to find the answer's end.
    struct AnswerHead: Equatable {
        let status: Int
        /// Bytes of the head, its blank line included.
        let length: Int
        let contentLength: Int
        /// `Connection: close`: the server ends the connection after this answer.
        let closes: Bool

        /// The head of the answer `received` begins with; nil until it has arrived whole.
        /// - Throws: `BenchmarkFailure` for what is not an allocator's answer: not HTTP/1.1,
        ///   chunked, without a length (other than 204), or past the size limits.
        init?(of received: [UInt8]) throws {
            let blankLine: [UInt8] = Array("\r\n\r\n".utf8)
            guard let end = received.indices.dropLast(3).first(where: { received[$0..<$0 + 4].elementsEqual(blankLine) }) else {
                guard received.count <= HTTPRequestLoad.largestHead else { throw BenchmarkFailure("an answer's head passed \(HTTPRequestLoad.largestHead) bytes") }
                return nil
            }
            let lines = String(decoding: received[..<end], as: UTF8.self).components(separatedBy: "\r\n")
            let statusLine = lines[0].split(separator: " ")
            guard statusLine.count >= 2, statusLine[0] == "HTTP/1.1", let status = Int(statusLine[1]) else {
                throw BenchmarkFailure("not an HTTP/1.1 answer: \(lines[0].prefix(100))")
            }
            var contentLength: Int?, closes = false
            for line in lines.dropFirst() {
                guard let colon = line.firstIndex(of: ":") else { continue }
                let name = line[..<colon].lowercased(), value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                switch name {
                case "content-length": contentLength = Int(value)
                case "connection": closes = value.lowercased() == "close"
                case "transfer-encoding": throw BenchmarkFailure("an answer came \(value); the load reads only answers with a Content-Length")
                default: break
                }
            }
            // 204 No Content has no body, and need not say so.
            if status == 204 { contentLength = contentLength ?? 0 }
            guard let contentLength, (0...HTTPRequestLoad.largestBody).contains(contentLength) else {
                throw BenchmarkFailure("an answer's Content-Length is missing or past \(HTTPRequestLoad.largestBody) bytes")
            }
            self.init(status: status, length: end + 4, contentLength: contentLength, closes: closes)
        }

        init(status: Int, length: Int, contentLength: Int, closes: Bool) {
            (self.status, self.length, self.contentLength, self.closes) = (status, length, contentLength, closes)
        }
    }

    /// One client: a connection to each server it has sent to, and its request in flight.
    private final class Client {
        var connections: [HeldSocket?]
        /// The request in flight (its position in the run), nil once none is left.
        var request: Int?
        var server = 0
        var sent = ContinuousClock.now
        var received: [UInt8] = []
        /// The answer's head, once it has arrived whole.
        var head: AnswerHead?

        init(servers: Int) {
            connections = Array(repeating: nil, count: servers)
        }

        var descriptor: CInt { connections[server]!.descriptor }
    }
}
