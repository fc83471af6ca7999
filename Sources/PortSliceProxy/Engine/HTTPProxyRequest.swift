import Foundation
import PortSliceCore

/// What an HTTP proxy request head asks for (pure functions over its text): a tunnel
/// (CONNECT, RFC 9110 section 9.3.6), or one request with an absolute `http://` URI forwarded
/// to its origin, the head rewritten to origin form without the proxy's own headers and with
/// `Connection: close` (one request per connection keeps every flow on one slice's 4-tuple).
enum HTTPProxyRequest: Equatable {
    case tunnel(host: String, port: UInt16)
    case forward(host: String, port: UInt16, head: String)

    /// The length of the head at the start of `bytes` (through the blank line), or nil while
    /// it has not all arrived.
    static func headLength<Bytes: RandomAccessCollection<UInt8>>(in bytes: Bytes) -> Int? where Bytes.Index == Int {
        guard bytes.count >= 4 else { return nil }
        var index = bytes.startIndex
        while index + 3 < bytes.endIndex {
            if bytes[index + 3] == 10 && bytes[index + 2] == 13 && bytes[index + 1] == 10 && bytes[index] == 13 { return index + 4 - bytes.startIndex }
            index += 1
        }
        return nil
    }

    /// The request in a head, or the status and reason to refuse it with.
    static func parse(head text: String) -> Result<HTTPProxyRequest, HTTPRefusal> {
        let lines = text.components(separatedBy: "\r\n")
        let parts = lines[0].split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1."), !parts[0].isEmpty else { return .failure(HTTPRefusal(400, "malformed request line")) }
        if parts[0] == "CONNECT" {
            return authority(parts[1], defaultPort: nil).map { .tunnel(host: $0.host, port: $0.port) }
        }
        guard parts[1].lowercased().hasPrefix("http://") else {
            return .failure(HTTPRefusal(400, "a proxy request needs an absolute http:// URI or CONNECT (https goes through CONNECT); "
                + "the status page and /metrics are on the admin listener (--admin-listen, 127.0.0.1:1081 by default)"))
        }
        let rest = parts[1].dropFirst("http://".count)
        let pathStart = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        let path = rest[pathStart...].isEmpty ? "/" : (rest[pathStart...].first == "?" ? "/" + rest[pathStart...] : String(rest[pathStart...]))
        return authority(rest[..<pathStart], defaultPort: 80).map { target in
            let dropped = ["proxy-authorization:", "proxy-connection:", "connection:", "keep-alive:"]
            let headers = lines.dropFirst().filter { line in !line.isEmpty && !dropped.contains { line.lowercased().hasPrefix($0) } }
            let head = (["\(parts[0]) \(path) \(parts[2])"] + headers + ["Connection: close", "", ""]).joined(separator: "\r\n")
            return .forward(host: target.host, port: target.port, head: head)
        }
    }

    /// `host:port` (or `host` with a default port); an IPv6 literal in brackets (RFC 3986),
    /// `[2001:db8::1]:443`, comes back without them.
    static func authority(_ text: Substring, defaultPort: UInt16?) -> Result<(host: String, port: UInt16), HTTPRefusal> {
        let host: Substring, port: UInt16?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return .failure(HTTPRefusal(400, "an IPv6 literal must end with ']'")) }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            if rest.isEmpty {
                port = defaultPort
            } else {
                guard rest.hasPrefix(":") else { return .failure(HTTPRefusal(400, "after ']' comes ':PORT' or nothing")) }
                port = UInt16(rest.dropFirst())
            }
            guard (try? IPv6Address(parsing: String(host))) != nil else { return .failure(HTTPRefusal(400, "[\(host)] is not an IPv6 address")) }
        } else if let colon = text.lastIndex(of: ":") {
            host = text[..<colon]
            port = UInt16(text[text.index(after: colon)...])
        } else {
            host = text
            port = defaultPort
        }
        guard !host.isEmpty, let port, port != 0 else { return .failure(HTTPRefusal(400, "the request needs host:port with a port from 1 to 65535")) }
        return .success((String(host), port))
    }

    /// The name and password of the head's `Proxy-Authorization: Basic`, as sent (bytes); nil
    /// without one.
    static func basicCredentials(ofHead text: String) -> (user: [UInt8], password: [UInt8])? {
        let header = text.split(separator: "\r\n").dropFirst().first { $0.lowercased().hasPrefix("proxy-authorization:") }
        let value = header.map { $0.dropFirst("proxy-authorization:".count).trimmingCharacters(in: .whitespaces) } ?? ""
        guard value.lowercased().hasPrefix("basic "), let decoded = Data(base64Encoded: String(value.dropFirst(6))).map(Array.init),
              let colon = decoded.firstIndex(of: UInt8(ascii: ":")) else { return nil }
        return (Array(decoded[..<colon]), Array(decoded[(colon + 1)...]))
    }
}

/// An HTTP error answer: status and a reason for the body.
struct HTTPRefusal: Error, Equatable {
    let status: Int
    let reason: String

    init(_ status: Int, _ reason: String) {
        self.status = status
        self.reason = reason
    }

    init(for failure: OpenFailure) {
        switch failure {
        case .refused(let refusal): self.init(403, "\(refusal)")
        case .unresolved, .connectionRefused, .timedOut, .failed, .noEgress: self.init(502, "\(failure)")
        case .exhausted: self.init(503, "\(failure)")
        }
    }

    var phrase: String {
        switch status {
        case 400: "Bad Request"
        case 403: "Forbidden"
        case 407: "Proxy Authentication Required"
        case 413: "Content Too Large"
        case 431: "Request Header Fields Too Large"
        case 501: "Not Implemented"
        case 502: "Bad Gateway"
        case 503: "Service Unavailable"
        default: "Error"
        }
    }

    /// The whole answer: status line, the Basic challenge with a 407, the reason as the body.
    var response: [UInt8] {
        let body = reason + "\n"
        let challenge = status == 407 ? "Proxy-Authenticate: Basic realm=\"portslice\"\r\n" : ""
        return Array("HTTP/1.1 \(status) \(phrase)\r\n\(challenge)Content-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)".utf8)
    }
}
