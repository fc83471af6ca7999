import PortSliceCore

/// The stub resolver's settings, read from `/etc/resolv.conf` text the way glibc's
/// `res_init` reads it, so the proxy resolves exactly as every other program on the host.
public struct ResolverConfiguration: Hashable, Sendable {
    /// glibc's MAXNS: nameservers beyond the third are ignored.
    public static let maximumNameservers = 3
    /// glibc's caps for `options` (RES_MAXNDOTS, RES_MAXRETRANS, RES_MAXRETRY).
    public static let maximumNdots = 15
    public static let maximumTimeout = 30
    public static let maximumAttempts = 5

    /// In file order; 127.0.0.1 when the file names none, as glibc does.
    public var nameservers: [IPAddress]
    /// Domains tried for names that are not absolute; from the last `search` or `domain` line.
    public var searchDomains: [DNSName]
    /// A name with at least this many dots is tried as it stands before the search list.
    public var ndots: Int
    /// Seconds to wait for one answer from one server (glibc's RES_TIMEOUT default 5).
    public var timeoutSeconds: Int
    /// Rounds through the server list (glibc's RES_DFLRETRY default 2).
    public var attempts: Int

    public init(
        nameservers: [IPAddress] = [.v4(IPv4Address(127, 0, 0, 1))], searchDomains: [DNSName] = [],
        ndots: Int = 1, timeoutSeconds: Int = 5, attempts: Int = 2
    ) {
        self.nameservers = nameservers
        self.searchDomains = searchDomains
        self.ndots = ndots
        self.timeoutSeconds = timeoutSeconds
        self.attempts = attempts
    }

    /// Reads resolv.conf text. Like glibc, a line is a keyword and its arguments separated by
    /// spaces or tabs; unknown keywords and options, unparsable addresses and invalid domain
    /// names are skipped rather than refused, because one odd line must not leave a host
    /// unable to resolve. `#` and `;` start a comment anywhere on a line (glibc honours them
    /// only at the start, but neither can be part of an address or a valid domain).
    /// - Parameters:
    ///   - text: the file's contents.
    ///   - hostname: the host's name; when the file has no `search` or `domain` line, glibc
    ///     searches the part of it after the first dot.
    public init(parsing text: String, hostname: String? = nil) {
        self.init(nameservers: [])
        var searchSet = false
        for rawLine in text.split(omittingEmptySubsequences: true, whereSeparator: { $0 == "\n" || $0 == "\r" }) {
            let line = rawLine.prefix { $0 != "#" && $0 != ";" }
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard let keyword = fields.first else { continue }
            let arguments = fields.dropFirst()
            switch keyword {
            case "nameserver":
                guard nameservers.count < Self.maximumNameservers, let text = arguments.first,
                      let address = IPAddress(String(text))
                else { continue }
                nameservers.append(address)
            case "domain", "search":
                // The last of either wins; `domain` takes one name.
                let names = keyword == "domain" ? Array(arguments.prefix(1)) : Array(arguments)
                searchDomains = names.compactMap { try? DNSName(parsing: String($0)) }
                searchSet = true
            case "options":
                for option in arguments { apply(option: option) }
            default:
                continue
            }
        }
        if nameservers.isEmpty { nameservers = [.v4(IPv4Address(127, 0, 0, 1))] }
        if !searchSet, let hostname, let dot = hostname.firstIndex(of: "."),
           let domain = try? DNSName(parsing: String(hostname[hostname.index(after: dot)...])), domain != .root {
            searchDomains = [domain]
        }
    }

    private mutating func apply(option: Substring) {
        let parts = option.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        guard parts.count == 2, let value = Int(parts[1]), value >= 0 else { return }
        switch parts[0] {
        case "ndots": ndots = min(value, Self.maximumNdots)
        case "timeout": timeoutSeconds = min(value, Self.maximumTimeout)
        case "attempts": attempts = min(value, Self.maximumAttempts)
        default: return
        }
    }

    /// The names to query for `text`, in order, as glibc's `res_search` tries them: a name
    /// ending in a dot is absolute and tried alone; one with at least `ndots` dots is tried as
    /// it stands first, then with each search domain; one with fewer dots is tried with each
    /// search domain first and as it stands last. Candidates longer than 255 bytes are left out.
    /// - Throws: `DNSNameError` when `text` itself is not a name.
    public func candidates(for text: String) throws(DNSNameError) -> [DNSName] {
        let name = try DNSName(parsing: text)
        if text.hasSuffix(".") || name == .root { return [name] }
        let dots = name.labelCount - 1
        var result: [DNSName] = []
        if dots >= ndots { result.append(name) }
        for domain in searchDomains {
            guard let candidate = try? name.appending(domain), !result.contains(candidate) else { continue }
            result.append(candidate)
        }
        if dots < ndots && !result.contains(name) { result.append(name) }
        return result
    }
}
