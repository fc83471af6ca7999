import Foundation
import PortSliceCore
import PortSliceDNS
import PortSliceSockets

/// How the proxy looks names up: which servers, the search rules of resolv.conf, the hosts
/// file, and whether queries carry the egress address's subnet.
public struct ResolverSettings: Sendable {
    /// Asked in order, each for the configuration's timeout, for its number of rounds.
    public var servers: [Endpoint]
    /// Search domains, ndots, timeout and attempts (its own name servers are `servers`).
    public var configuration: ResolverConfiguration
    /// The hosts file, consulted before DNS as glibc's `files` source is, and read again when
    /// it changes (looked at no more than every 100 ms, where glibc reads it at every lookup);
    /// nil for none.
    public var hostsFile: String?
    /// Send an EDNS Client Subnet option (RFC 7871) naming the egress address the flow will
    /// leave from (its /24), so a geo-DNS answers for where the flow leaves, not for where
    /// the proxy runs.
    public var sendsClientSubnet: Bool
    /// Lookups one client may have waiting for a server at once; more are refused at once,
    /// so one client asking for many names on a slow server holds nothing of anyone else's.
    public var lookupsPerClient: Int
    /// Answers kept per loop.
    public var cacheCapacity: Int
    /// IPv6 name servers resolv.conf named, which the engine's IPv4 sockets cannot ask (the
    /// proxy warns of them at start).
    public var unusableServers: [IPv6Address] = []

    public init(servers: [Endpoint], configuration: ResolverConfiguration = ResolverConfiguration(), hostsFile: String? = nil,
                sendsClientSubnet: Bool = true, lookupsPerClient: Int = 32, cacheCapacity: Int = 10_000) {
        precondition(!servers.isEmpty, "a resolver needs a name server")
        self.servers = servers
        self.configuration = configuration
        self.hostsFile = hostsFile
        self.sendsClientSubnet = sendsClientSubnet
        self.lookupsPerClient = lookupsPerClient
        self.cacheCapacity = cacheCapacity
    }

    /// Everything from this host's files: the IPv4 name servers of `resolvConf` (port 53), its
    /// search rules, and `hostsFile`; 127.0.0.1 when it names no IPv4 server, as glibc does
    /// with none at all. IPv6 name servers are left out: the engine's sockets are IPv4 only.
    public static func system(resolvConf: String = "/etc/resolv.conf", hostsFile: String = "/etc/hosts") -> ResolverSettings {
        let text = { (path: String) in FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) } ?? "" }
        let configuration = ResolverConfiguration(parsing: text(resolvConf), hostname: ProcessInfo.processInfo.hostName)
        let servers = configuration.nameservers.compactMap { address -> Endpoint? in
            if case .v4(let v4) = address { Endpoint(v4, 53) } else { nil }
        }
        var settings = ResolverSettings(servers: servers.isEmpty ? [Endpoint(IPv4Address(127, 0, 0, 1), 53)] : servers,
                                        configuration: configuration, hostsFile: hostsFile)
        settings.unusableServers = configuration.nameservers.compactMap { address in
            if case .v6(let v6) = address { v6 } else { nil }
        }
        return settings
    }
}

/// Why a name gave no address to connect to.
public enum LookupFailure: Error, Hashable, Sendable, CustomStringConvertible {
    /// NXDOMAIN for the name and every search-list form of it.
    case noSuchName
    /// The name exists but has no address of a family this client can leave from.
    case noAddress
    /// A server answered with an error (SERVFAIL, REFUSED...) and none answered better.
    case serverFailure(String)
    /// No server answered within the timeout, in any round.
    case noAnswer(servers: Int, rounds: Int, secondsEach: Int)
    /// The client already has this many lookups waiting.
    case tooManyLookups(Int)
    case invalidName(String)
    /// The proxy stopped before the lookup ended.
    case stopping

    public var description: String {
        switch self {
        case .noSuchName: "no such name"
        case .noAddress: "the name has no address this client's flows can reach"
        case .serverFailure(let code): "the name server answered \(code)"
        case .noAnswer(let servers, let rounds, let seconds):
            "no answer from \(servers == 1 ? "the name server" : "any of \(servers) name servers") in \(rounds) round(s) of \(seconds) s"
        case .tooManyLookups(let limit): "this client already has \(limit) lookups waiting for the name server"
        case .invalidName(let reason): "not a valid name: \(reason)"
        case .stopping: "the proxy is stopping"
        }
    }
}

/// A name's addresses, each family in the order the server gave them.
struct ResolvedAddresses: Equatable {
    var ipv4: [IPv4Address] = []
    var ipv6: [IPv6Address] = []

    var isEmpty: Bool { ipv4.isEmpty && ipv6.isEmpty }
}

/// The proxy engine's stub resolver: one per loop, confined to its thread, its sockets in the
/// loop's epoll set, so a lookup holds no thread while the name server thinks.
///
/// A lookup tries the hosts file, then each search-list form of the name (resolv.conf's
/// rules) against the cache and then the servers: A (and AAAA when the client can leave over
/// IPv6) queries over UDP from a fresh connected socket (random ID, the kernel's random source
/// port; an answer must match ID, name, type and the subnet sent, and anything else on the
/// socket is ignored), TCP when the answer comes truncated, the next server on an error or
/// after the timeout, for the configured rounds. Lookups of the same name, type and subnet
/// share one query. Answers and negative answers are cached for their TTLs, keyed by the
/// subnet scope the server gave (RFC 7871 section 7.3).
final class EngineResolver {
    typealias Completion = (Result<ResolvedAddresses, LookupFailure>) -> Void

    /// Epoll tokens of resolver sockets have the top bit set; connections' tokens never do.
    static let tokenMark: UInt64 = 1 << 63
    /// The largest answer read: 64 KiB over TCP, a datagram of up to 4 KiB over UDP (a server
    /// honours the 1232-byte payload size the query offers; larger datagrams are not ours).
    static let maximumTCPAnswer = 65_537
    static let datagramBuffer = 4096

    private let settings: ResolverSettings
    private let poller: EventPoller
    private let cache: DNSCache
    private var random = SystemRandomNumberGenerator()
    private var queries: [CInt: Query] = [:]
    private var asking: [Question: Query] = [:]
    /// Set by `closeAll`: the loop is stopping, and every lookup is answered so at once.
    private var closed = false
    private var waitingPerClient: [IPAddress: Int] = [:]
    private var hosts = HostsFile(parsing: "")
    /// The hosts file's modification time, size and inode when last read.
    private var hostsStamp: FileStamp?
    private var hostsRead = false
    /// The loop's millisecond when the hosts file was last looked at: at most once per
    /// `hostsCheckInterval`, so a busy loop pays one `stat` (a few microseconds, measured: a
    /// tenth of a connection's cost to the proxy when paid per millisecond) for many lookups,
    /// and a change made by hand is still seen within moments.
    private var hostsCheckedAt: Int64?
    static let hostsCheckInterval: Int64 = 100
    private let datagram = UnsafeMutableRawBufferPointer.allocate(byteCount: datagramBuffer, alignment: 8)

    private struct Question: Hashable {
        let name: DNSName
        let type: DNSQuery.AddressType
        let subnet: ClientSubnet?
    }

    /// The EDNS Client Subnet a lookup sends with each type: its IPv4 egress's with A, its
    /// IPv6 egress's with AAAA (nil: none).
    private struct Subnets {
        var a: ClientSubnet?
        var aaaa: ClientSubnet?

        subscript(type: DNSQuery.AddressType) -> ClientSubnet? {
            switch type {
            case .a: a
            case .aaaa: aaaa
            }
        }
    }

    /// The types a lookup asks for: A alone, or AAAA before A (as RFC 8305 asks) when the
    /// client can leave over IPv6; made once rather than per lookup.
    private static let onlyA: [DNSQuery.AddressType] = [.a]
    private static let aaaaThenA: [DNSQuery.AddressType] = [.aaaa, .a]

    private final class Lookup {
        let client: IPAddress
        let candidates: [DNSName]
        let types: [DNSQuery.AddressType]
        let subnets: Subnets
        let completion: Completion
        var next = 0
        /// Queries of the current form not answered yet, and what the answered ones gave.
        var pending = 0
        var found = ResolvedAddresses()
        var failure: LookupFailure?
        /// Whether some form of the name existed (NODATA rather than NXDOMAIN at the end).
        var nameExisted = false
        /// Counted among its client's lookups waiting for a server.
        var counted = false
        var finished = false

        init(client: IPAddress, candidates: [DNSName], types: [DNSQuery.AddressType], subnets: Subnets,
             completion: @escaping Completion) {
            self.client = client
            self.candidates = candidates
            self.types = types
            self.subnets = subnets
            self.completion = completion
        }
    }

    private final class Query {
        let question: Question
        var message: DNSQuery
        var waiters: [Lookup] = []
        /// Tries made so far; the server asked is `tries % servers`.
        var tries = 0
        var socket: CInt = -1
        var overTCP = false
        var deadline: Int64 = 0
        var outgoing: [UInt8] = []
        var written = 0
        var incoming: [UInt8] = []
        /// The last error a server answered, reported if no server does better.
        var lastServerFailure: String?

        init(question: Question, message: DNSQuery) {
            self.question = question
            self.message = message
        }
    }

    init(settings: ResolverSettings, poller: EventPoller) {
        self.settings = settings
        self.poller = poller
        cache = DNSCache(capacity: settings.cacheCapacity)
    }

    deinit { datagram.deallocate() }

    /// Looks `name` up for `client`, whose flows leave from `egress4` (and `egress6`, whose
    /// presence also asks for AAAA); `completion` runs on the loop, at once when the hosts file
    /// or the cache answers.
    func lookUp(_ name: String, for client: IPAddress, egress4: IPv4Address?, egress6: IPv6Address?, now: Int64,
                completion: @escaping Completion) {
        if closed { return completion(.failure(.stopping)) }
        if let listed = currentHosts(now: now).addresses(for: name) {
            let found = ResolvedAddresses(ipv4: listed.ipv4, ipv6: egress6 == nil ? [] : listed.ipv6)
            return completion(found.isEmpty ? .failure(.noAddress) : .success(found))
        }
        let candidates: [DNSName]
        switch forms(of: name) {
        case .success(let known): candidates = known
        case .failure(let failure): return completion(.failure(failure))
        }
        var subnets = Subnets()
        if settings.sendsClientSubnet {
            subnets.a = egress4.map { ClientSubnet(.v4($0)) }
            subnets.aaaa = egress6.map { ClientSubnet(.v6($0)) }
        }
        let types = egress6 == nil ? Self.onlyA : Self.aaaaThenA
        if let first = candidates.first, let cached = cachedAnswer(first, types: types, subnets: subnets) { return completion(.success(cached)) }
        let lookup = Lookup(client: client, candidates: candidates, types: types, subnets: subnets, completion: completion)
        advance(lookup, now: now)
    }

    /// The common case, with nothing allocated for it: the name's first form has addresses in
    /// the cache for every type asked (or for some, and a negative answer for the others).
    private func cachedAnswer(_ name: DNSName, types: [DNSQuery.AddressType], subnets: Subnets) -> ResolvedAddresses? {
        let instant = ContinuousClock.now
        var found = ResolvedAddresses()
        for type in types {
            switch cache.lookup(name, type: type.recordType, subnet: subnets[type], now: instant) {
            case .addresses(let addresses)?:
                for address in addresses {
                    switch address {
                    case .v4(let v4) where type == .a: found.ipv4.append(v4)
                    case .v6(let v6) where type == .aaaa: found.ipv6.append(v6)
                    default: break
                    }
                }
            case .noData?, .nameError?:
                continue
            case nil:
                return nil
            }
        }
        return found.isEmpty ? nil : found
    }

    /// The names to ask for `name` (resolv.conf's search rules), kept per loop for the names
    /// clients ask again and again: at most `maximumForms` names, forgotten all at once when full.
    private func forms(of name: String) -> Result<[DNSName], LookupFailure> {
        if let known = knownForms[name] { return .success(known) }
        do {
            let candidates = try settings.configuration.candidates(for: name)
            if knownForms.count >= Self.maximumForms { knownForms.removeAll(keepingCapacity: true) }
            knownForms[name] = candidates
            return .success(candidates)
        } catch {
            return .failure(.invalidName("\(error)"))
        }
    }

    private var knownForms: [String: [DNSName]] = [:]
    static let maximumForms = 4096

    /// The hosts file as it is now: read again when its modification time, size or inode
    /// changed (one `stat`, at most every `hostsCheckInterval`).
    private func currentHosts(now: Int64) -> HostsFile {
        guard let path = settings.hostsFile, hostsCheckedAt.map({ now - $0 >= Self.hostsCheckInterval }) ?? true else { return hosts }
        hostsCheckedAt = now
        let stamp = FileStamp.of(path)
        if stamp != hostsStamp || !hostsRead {
            hostsStamp = stamp
            hostsRead = true
            hosts = HostsFile(parsing: FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) } ?? "")
        }
        return hosts
    }

    /// Starts the lookup's current form: each type from the cache, or asked.
    private func advance(_ lookup: Lookup, now: Int64) {
        guard lookup.next < lookup.candidates.count else {
            return finish(lookup, .failure(lookup.failure ?? (lookup.nameExisted ? .noAddress : .noSuchName)))
        }
        let form = lookup.next
        let name = lookup.candidates[form]
        let instant = ContinuousClock.now
        lookup.pending = lookup.types.count
        for type in lookup.types {
            let recordType = type.recordType
            switch cache.lookup(name, type: recordType, subnet: lookup.subnets[type], now: instant) {
            case let cached?: answered(lookup, type, .success(cached), now: now)
            case nil: ask(name, type, for: lookup, now: now)
            }
            // Answered from the cache, the form may be done already, and the lookup with it or
            // gone on to the next form.
            if lookup.finished || lookup.next != form { return }
        }
    }

    /// One type of the lookup's current form has its answer (or its failure); once every type
    /// has, the lookup ends with what was found, or goes on to the next form.
    private func answered(_ lookup: Lookup, _ type: DNSQuery.AddressType, _ answer: Result<DNSCachedAnswer, LookupFailure>, now: Int64) {
        guard !lookup.finished else { return }
        switch answer {
        case .success(.addresses(let addresses)):
            for address in addresses {
                switch address {
                case .v4(let v4) where type == .a: lookup.found.ipv4.append(v4)
                case .v6(let v6) where type == .aaaa: lookup.found.ipv6.append(v6)
                default: break
                }
            }
        case .success(.noData):
            lookup.nameExisted = true
        case .success(.nameError):
            break
        case .failure(let failure):
            lookup.failure = failure
        }
        lookup.pending -= 1
        guard lookup.pending == 0 else { return }
        if !lookup.found.isEmpty { return finish(lookup, .success(lookup.found)) }
        // A server that failed ends the search: the next form would only guess (as glibc stops).
        if let failure = lookup.failure { return finish(lookup, .failure(failure)) }
        lookup.next += 1
        advance(lookup, now: now)
    }

    private func ask(_ name: DNSName, _ type: DNSQuery.AddressType, for lookup: Lookup, now: Int64) {
        if !lookup.counted {
            let waiting = waitingPerClient[lookup.client, default: 0]
            guard waiting < settings.lookupsPerClient else {
                return finish(lookup, .failure(.tooManyLookups(settings.lookupsPerClient)))
            }
            waitingPerClient[lookup.client] = waiting + 1
            lookup.counted = true
        }
        let question = Question(name: name, type: type, subnet: lookup.subnets[type])
        if let query = asking[question] {
            query.waiters.append(lookup)
            return
        }
        let query = Query(question: question, message: DNSQuery(id: random.next(), name: name, type: type, clientSubnet: question.subnet))
        query.waiters = [lookup]
        asking[question] = query
        send(query, now: now)
    }

    /// Sends the query to the server whose turn it is, over UDP; a socket that cannot be made
    /// counts as a try that failed.
    private func send(_ query: Query, now: Int64) {
        let server = settings.servers[query.tries % settings.servers.count]
        query.deadline = now + Int64(settings.configuration.timeoutSeconds) * 1000
        switch NameServerSocket.udp(to: server) {
        case .success(let socket):
            query.socket = socket
            queries[socket] = query
            let bytes = query.message.encoded()
            let sent = bytes.withUnsafeBytes { NameServerSocket.send(socket, $0) }
            do {
                try poller.watch(socket, token: Self.tokenMark | UInt64(socket), for: .readable)
            } catch {
                return retry(query, now: now)
            }
            if case .failure = sent { retry(query, now: now) }
        case .failure:
            retry(query, now: now)
        }
    }

    /// Asks the same server again over TCP: the answer did not fit a datagram.
    private func sendOverTCP(_ query: Query, now: Int64) {
        let server = settings.servers[query.tries % settings.servers.count]
        closeSocket(of: query)
        query.overTCP = true
        query.deadline = now + Int64(settings.configuration.timeoutSeconds) * 1000
        guard case .success(let socket) = NameServerSocket.tcp(to: server),
              let framed = try? DNSTCPFraming.frame(query.message.encoded())
        else { return retry(query, now: now) }
        query.socket = socket
        queries[socket] = query
        query.outgoing = framed
        query.written = 0
        query.incoming = []
        do {
            try poller.watch(socket, token: Self.tokenMark | UInt64(socket), for: .stream)
        } catch {
            retry(query, now: now)
        }
    }

    /// The try failed (no answer in time, an error answer, a broken socket): the next server,
    /// with a new ID, or the end when every round is spent.
    private func retry(_ query: Query, now: Int64) {
        closeSocket(of: query)
        query.tries += 1
        query.overTCP = false
        let rounds = settings.configuration.attempts, servers = settings.servers.count
        guard query.tries < rounds * servers else {
            let failure: LookupFailure = query.lastServerFailure.map(LookupFailure.serverFailure)
                ?? .noAnswer(servers: servers, rounds: rounds, secondsEach: settings.configuration.timeoutSeconds)
            return end(query, .failure(failure), now: now)
        }
        query.message.id = random.next()
        send(query, now: now)
    }

    /// A resolver socket is ready.
    func handle(_ token: UInt64, _ readiness: Readiness, now: Int64) {
        let socket = CInt(truncatingIfNeeded: token & ~Self.tokenMark)
        guard let query = queries[socket] else { return }
        if query.overTCP {
            exchangeOverTCP(query, readiness, now: now)
        } else {
            receiveDatagrams(query, now: now)
        }
    }

    private func receiveDatagrams(_ query: Query, now: Int64) {
        let socket = query.socket
        while query.socket == socket {
            switch StreamIO.read(socket, into: datagram) {
            case .transferred(let count):
                // Anything that does not parse or does not answer this query is someone else's
                // (or a forgery): dropped, and the query goes on waiting.
                guard let response = try? DNSResponse(parsing: UnsafeRawBufferPointer(rebasing: datagram[..<count])),
                      response.matches(query.message)
                else { continue }
                received(query, response, now: now)
            case .wouldBlock:
                return
            case .endOfStream, .failed:
                // An ICMP port unreachable (nothing listens there) surfaces as a failed read.
                return retry(query, now: now)
            }
        }
    }

    private func exchangeOverTCP(_ query: Query, _ readiness: Readiness, now: Int64) {
        if readiness.failed { return retry(query, now: now) }
        if query.written < query.outgoing.count {
            switch query.outgoing.withUnsafeBytes({ StreamIO.writeSome(query.socket, UnsafeRawBufferPointer(rebasing: $0[query.written...])) }) {
            case .success(let count): query.written += count
            case .failure: return retry(query, now: now)
            }
        }
        while true {
            let room = min(Self.datagramBuffer, Self.maximumTCPAnswer - query.incoming.count)
            guard room > 0 else { return retry(query, now: now) }  // longer than any DNS message
            switch StreamIO.read(query.socket, into: UnsafeMutableRawBufferPointer(rebasing: datagram[..<room])) {
            case .transferred(let count):
                query.incoming.append(contentsOf: UnsafeRawBufferPointer(rebasing: datagram[..<count]))
                let whole = query.incoming.withUnsafeBytes { DNSTCPFraming.firstMessage(in: $0) }
                guard let whole else { continue }
                let response = query.incoming.withUnsafeBytes { try? DNSResponse(parsing: UnsafeRawBufferPointer(rebasing: $0[whole.message])) }
                guard let response, response.matches(query.message), !response.header.isTruncated else { return retry(query, now: now) }
                return received(query, response, now: now)
            case .wouldBlock:
                return
            case .endOfStream, .failed:
                return retry(query, now: now)
            }
        }
    }

    /// A matching answer: truncated ones go to TCP, server errors to the next server; anything
    /// else is cached and given to every lookup waiting for it.
    private func received(_ query: Query, _ response: DNSResponse, now: Int64) {
        if response.header.isTruncated && !query.overTCP { return sendOverTCP(query, now: now) }
        guard response.responseCode == .noError || response.responseCode == .nameError else {
            query.lastServerFailure = "\(response.responseCode)"
            return retry(query, now: now)
        }
        cache.store(response, now: ContinuousClock.now)
        let answer: DNSCachedAnswer = if !response.addresses.isEmpty {
            .addresses(response.addresses)
        } else if response.responseCode == .nameError {
            .nameError
        } else {
            .noData
        }
        end(query, .success(answer), now: now)
    }

    /// Takes the query out of flight and gives its answer to every lookup waiting for it.
    private func end(_ query: Query, _ answer: Result<DNSCachedAnswer, LookupFailure>, now: Int64) {
        closeSocket(of: query)
        asking[query.question] = nil
        for lookup in query.waiters { answered(lookup, query.question.type, answer, now: now) }
    }

    private func finish(_ lookup: Lookup, _ result: Result<ResolvedAddresses, LookupFailure>) {
        guard !lookup.finished else { return }
        lookup.finished = true
        if lookup.counted {
            let left = waitingPerClient[lookup.client, default: 1] - 1
            waitingPerClient[lookup.client] = left > 0 ? left : nil
        }
        lookup.completion(result)
    }

    private func closeSocket(of query: Query) {
        guard query.socket >= 0 else { return }
        queries[query.socket] = nil
        poller.unwatch(query.socket)
        StreamIO.close(query.socket)
        query.socket = -1
    }

    /// Gives up on the tries whose server did not answer in time.
    func expire(now: Int64) {
        // Each query has one socket at a time, so each is listed once.
        for query in Array(queries.values) where now >= query.deadline { retry(query, now: now) }
    }

    /// Closes every socket (the loop is stopping) and answers every waiting lookup, and every
    /// later one, so.
    func closeAll() {
        closed = true
        let waiting = asking.values.flatMap(\.waiters)
        for query in Array(queries.values) { closeSocket(of: query) }
        asking.removeAll()
        for lookup in waiting { finish(lookup, .failure(.stopping)) }
    }
}
