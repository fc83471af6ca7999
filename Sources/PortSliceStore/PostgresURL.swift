import Foundation

/// A PostgreSQL connection URL as libpq reads it, with the parts the allocator uses:
/// `postgres://USER[:PASSWORD]@HOST[:PORT][,HOST[:PORT]...]/DATABASE[?sslmode=MODE&sslrootcert=FILE]`.
/// Several hosts are tried in order at each connection attempt, so a fail-over to a standby
/// needs no change of configuration.
public struct PostgresURL: Hashable, Sendable, CustomStringConvertible {
    public struct Server: Hashable, Sendable, CustomStringConvertible {
        public let host: String
        public let port: Int
        public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
    }

    /// libpq's `sslmode` values that change what is done here.
    public enum TLSMode: String, Hashable, Sendable, CaseIterable {
        /// Plain TCP.
        case disable
        /// TLS if the server offers it, unverified (libpq's default).
        case prefer
        /// TLS or nothing, unverified.
        case require
        /// TLS, the server's certificate signed by a trusted CA (any name).
        case verifyCA = "verify-ca"
        /// TLS, signed by a trusted CA and naming the host connected to.
        case verifyFull = "verify-full"
    }

    public let servers: [Server]
    public let user: String
    public let password: String?
    public let database: String?
    public let tlsMode: TLSMode
    /// PEM file of the CA to trust for verify-ca and verify-full; the system's roots otherwise.
    public let rootCertificateFile: String?

    /// The URL without its password, for messages.
    public var description: String {
        "postgres://\(user)@\(servers.map(\.description).joined(separator: ","))/\(database ?? "")"
            + (tlsMode == .prefer ? "" : "?sslmode=\(tlsMode.rawValue)")
    }

    /// - Throws: `StoreError` naming what is wrong with the URL.
    public init(parsing text: String) throws {
        func refuse(_ reason: String) -> StoreError {
            StoreError("database URL is not usable: \(reason); write postgres://USER[:PASSWORD]@HOST[:PORT][,HOST2[:PORT]]/DATABASE[?sslmode=require]")
        }
        var rest = Substring(text)
        guard let scheme = rest.range(of: "://"), ["postgres", "postgresql"].contains(rest[..<scheme.lowerBound]) else {
            throw refuse("it must start with postgres://")
        }
        rest = rest[scheme.upperBound...]
        var query = Substring("")
        if let mark = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: mark)...]
            rest = rest[..<mark]
        }
        var path = Substring("")
        if let slash = rest.firstIndex(of: "/") {
            path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
        }
        guard let at = rest.lastIndex(of: "@") else { throw refuse("it names no user (USER@ before the host)") }
        let userInfo = rest[..<at], hosts = rest[rest.index(after: at)...]
        let userParts = userInfo.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        guard let user = userParts.first.flatMap({ String($0).removingPercentEncoding }), !user.isEmpty else {
            throw refuse("the user is empty")
        }
        self.user = user
        password = userParts.count > 1 ? String(userParts[1]).removingPercentEncoding : nil
        var servers: [Server] = []
        for item in hosts.split(separator: ",", omittingEmptySubsequences: false) {
            var host = Substring(item), port = 5432
            if host.hasPrefix("["), let close = host.firstIndex(of: "]") {
                let after = host[host.index(after: close)...]
                host = host[host.index(after: host.startIndex)..<close]
                if after.hasPrefix(":") {
                    guard let number = Int(after.dropFirst()), (1...65535).contains(number) else { throw refuse("port '\(after.dropFirst())' is not 1-65535") }
                    port = number
                }
            } else if let colon = host.lastIndex(of: ":") {
                guard let number = Int(host[host.index(after: colon)...]), (1...65535).contains(number) else {
                    throw refuse("port '\(host[host.index(after: colon)...])' is not 1-65535")
                }
                port = number
                host = host[..<colon]
            }
            guard !host.isEmpty else { throw refuse("a host is empty") }
            servers.append(Server(host: String(host), port: port))
        }
        self.servers = servers
        let name = String(path).removingPercentEncoding ?? String(path)
        database = name.isEmpty ? nil : name
        var mode = TLSMode.prefer, rootCertificate: String?
        for pair in query.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map { String($0).removingPercentEncoding ?? String($0) }
            guard parts.count == 2 else { throw refuse("query item '\(pair)' is not KEY=VALUE") }
            switch parts[0] {
            case "sslmode":
                guard let known = TLSMode(rawValue: parts[1]) else {
                    throw refuse("sslmode '\(parts[1])' is not one of \(TLSMode.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                mode = known
            case "sslrootcert": rootCertificate = parts[1]
            case "application_name", "connect_timeout", "target_session_attrs": continue
            default: throw refuse("query item '\(parts[0])' is not supported (sslmode and sslrootcert are)")
            }
        }
        if rootCertificate != nil && ![TLSMode.verifyCA, .verifyFull].contains(mode) {
            throw refuse("sslrootcert is given but sslmode is \(mode.rawValue); use sslmode=verify-full (or verify-ca) so the certificate is checked")
        }
        tlsMode = mode
        rootCertificateFile = rootCertificate
    }
}
