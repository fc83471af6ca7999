import Foundation
import PortSliceCore
import Synchronization

/// An authoritative name server for one zone, on UDP at 127.0.0.1 (a free port), for the
/// by-name rows of `bench proxy`: every A query for a name in the zone gets `address` with a
/// TTL of 300 s, AAAA and other types NOERROR without records, names outside the zone
/// REFUSED. The question is echoed; an EDNS OPT record in the query is ignored and the answer
/// carries none (the proxy's resolver takes that as a server without Client Subnet support,
/// whose answers serve every client).
///
/// One thread answers each datagram as it comes, waking at least every 100 ms to see whether
/// to stop; `stop` (or the release of the value) ends it and closes the socket. Plain
/// `socket`/`recvfrom`/`sendto`, as `PollSet` calls `poll`: PortSliceSockets has no unconnected
/// UDP server socket, and a name server for a benchmark does not deserve one.
final class BenchmarkNameServer: Sendable {
    static let ttl: UInt32 = 300

    let endpoint: Endpoint
    /// Lowercased, without a trailing dot.
    let zone: String
    let address: IPv4Address
    private let descriptor: CInt
    private let stopping = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    private let stopped = Once()
    private let answered = Mutex<[String: Int]>([:])

    /// Binds 127.0.0.1 on a port the kernel picks and starts answering.
    /// - Throws: `BenchmarkFailure` naming the call that failed.
    init(zone: String, answering address: IPv4Address) throws {
        self.zone = zone.lowercased().hasSuffix(".") ? String(zone.lowercased().dropLast()) : zone.lowercased()
        self.address = address
        let socket = Glibc.socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard socket >= 0 else { throw BenchmarkFailure("name server: socket: errno \(errno)") }
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        local.sin_addr.s_addr = IPv4Address(127, 0, 0, 1).bits.bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &local) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                bind(socket, address, length) == 0 && getsockname(socket, address, &length) == 0
            }
        }
        guard bound else {
            let failure = errno
            close(socket)
            throw BenchmarkFailure("name server: bind or getsockname on 127.0.0.1: errno \(failure)")
        }
        descriptor = socket
        endpoint = Endpoint(IPv4Address(127, 0, 0, 1), UInt16(bigEndian: local.sin_port))
        Thread { [self] in serve() }.start()
    }

    deinit { stop() }

    /// Ends the thread and closes the socket; later calls do nothing.
    func stop() {
        guard stopped.claim() else { return }
        stopping.store(true, ordering: .relaxed)
        finished.wait()
        close(descriptor)
    }

    /// A queries answered with the address so far, by lowercased name.
    var answeredQueries: [String: Int] { answered.withLock { $0 } }

    private func serve() {
        defer { finished.signal() }
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !stopping.load(ordering: .relaxed) {
            guard !PollSet.ready([descriptor], timeoutMilliseconds: 100).isEmpty else { continue }
            while true {
                var peer = sockaddr_in()
                var peerLength = socklen_t(MemoryLayout<sockaddr_in>.size)
                let count = buffer.withUnsafeMutableBytes { bytes in
                    withUnsafeMutablePointer(to: &peer) { pointer in
                        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(descriptor, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT), $0, &peerLength) }
                    }
                }
                guard count >= 0 else { break }  // drained (or a transient error: poll again)
                guard let reply = buffer.withUnsafeBytes({ Self.answer(to: UnsafeRawBufferPointer(rebasing: $0[..<count]), zone: zone, address: address) })
                else { continue }
                if let name = reply.answeredName { answered.withLock { $0[name, default: 0] += 1 } }
                _ = reply.message.withUnsafeBytes { bytes in
                    withUnsafePointer(to: &peer) { pointer in
                        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(descriptor, bytes.baseAddress, bytes.count, 0, $0, peerLength) }
                    }
                }
            }
        }
    }

    /// The reply to one query message, and the (lowercased) name when it was an A query
    /// answered with `address`; nil for what gets no reply: a response, a message too short or
    /// malformed to echo its question. The question is read by hand (one uncompressed name,
    /// type and class after the 12-byte header, RFC 1035 section 4.1); whatever follows it,
    /// such as an OPT record, is ignored.
    static func answer(to query: UnsafeRawBufferPointer, zone: String, address: IPv4Address) -> (message: [UInt8], answeredName: String?)? {
        guard query.count >= 12, query[2] & 0x80 == 0 else { return nil }
        let flags = UInt16(query[2]) << 8 | UInt16(query[3])
        let opcode = (flags >> 11) & 0x0F
        let questions = UInt16(query[4]) << 8 | UInt16(query[5])
        var header: [UInt8] = [query[0], query[1]]
        // QR, the opcode and RD copied; AA when we answer for the zone.
        let replyFlags = { (authoritative: Bool, rcode: UInt16) -> UInt16 in
            0x8000 | (flags & 0x7900) | (authoritative ? 0x0400 : 0) | rcode
        }
        guard opcode == 0, questions == 1 else {
            header.appendBigEndian(replyFlags(false, opcode == 0 ? 1 : 4))  // FORMERR, NOTIMP
            return (header + [0, 0, 0, 0, 0, 0, 0, 0], nil)
        }
        var position = 12
        var labels: [String] = []
        while true {
            guard position < query.count else { return nil }
            let length = Int(query[position])
            position += 1
            if length == 0 { break }
            // A query's only name starts the message: nothing before it to point at.
            guard length <= 63, position + length <= query.count, position - 12 + length <= 255 else { return nil }
            labels.append(String(decoding: UnsafeRawBufferPointer(rebasing: query[position..<(position + length)]), as: UTF8.self).lowercased())
            position += length
        }
        guard position + 4 <= query.count else { return nil }
        let type = UInt16(query[position]) << 8 | UInt16(query[position + 1])
        let recordClass = UInt16(query[position + 2]) << 8 | UInt16(query[position + 3])
        let question = Array(query[12..<(position + 4)])
        let name = labels.joined(separator: ".")
        guard name == zone || name.hasSuffix("." + zone) else {
            header.appendBigEndian(replyFlags(false, 5))  // REFUSED: not our zone
            return (header + [0, 1, 0, 0, 0, 0, 0, 0] + question, nil)
        }
        let answersA = type == 1 && recordClass == 1
        header.appendBigEndian(replyFlags(true, 0))
        var message = header + [0, 1, 0, answersA ? 1 : 0, 0, 0, 0, 0] + question
        guard answersA else { return (message, nil) }  // NOERROR, no records (AAAA and the rest)
        message += [0xC0, 12, 0, 1, 0, 1]  // the question's name, A, IN
        message.appendBigEndian(UInt16(truncatingIfNeeded: ttl >> 16))
        message.appendBigEndian(UInt16(truncatingIfNeeded: ttl))
        let (a, b, c, d) = address.octets
        message += [0, 4, a, b, c, d]
        return (message, name)
    }
}

extension [UInt8] {
    fileprivate mutating func appendBigEndian(_ value: UInt16) {
        append(UInt8(truncatingIfNeeded: value >> 8))
        append(UInt8(truncatingIfNeeded: value))
    }
}
