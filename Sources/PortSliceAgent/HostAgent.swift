import Foundation
import Logging
import PortSliceAPI
import PortSliceCore
import PortSliceSockets

/// Keeps this host's leases: adopts the ones it already has, acquires what each `LeaseWant`
/// lacks (its slices, and one IPv6 prefix when the allocator has prefixes to lease), and renews
/// them all in one request every third of the lease time (give or take a fifth, so a fleet
/// started together does not renew together). Slices and prefixes are kept alike: the same
/// deadlines, adoption and release apply to both.
///
/// Every lease has a local deadline: the moment its renewal (or acquisition) request was sent,
/// plus the lease time asked for. The allocator's expiry is never earlier, since it counts from
/// when it handled the request, so a host that stops using a slice at its deadline never sends
/// from it after the allocator could give it to someone else, whatever the two clocks say.
/// When the allocator cannot be reached the agent keeps the leases it has until their
/// deadlines and tries again every `retryInterval`; a lease the allocator no longer lists is
/// dropped at once.
public actor HostAgent {
    public struct Settings: Sendable {
        public var wants: [LeaseWant]
        /// The lease time asked for on every acquisition and renewal, in whole seconds (the
        /// API's unit; a fraction is dropped), 10 s to 1 day.
        public var leaseTime: Duration
        /// How soon to try again after the allocator failed to answer.
        public var retryInterval: Duration

        public init(wants: [LeaseWant], leaseTime: Duration = .seconds(60), retryInterval: Duration = .seconds(1)) {
            precondition(leaseTime >= .seconds(10) && leaseTime <= .seconds(86_400), "a lease time is 10 s to 1 day")
            self.wants = wants
            // Deadlines count the time the allocator is asked for, not a fraction more.
            self.leaseTime = .seconds(leaseTime.components.seconds)
            self.retryInterval = retryInterval
        }
    }

    private struct Kept {
        var held: HeldLease
        /// Which want it counts towards; nil for a lease adopted beyond every want.
        var want: Int?
        var deadline: ContinuousClock.Instant
    }

    public let settings: Settings
    private let client: AllocatorClient
    private let network: HostNetworkSetup?
    private let use: @Sendable (Holdings) throws -> Void
    private let logger: Logger
    private var kept: [LeaseKey: Kept] = [:]
    /// The leases last handed to `use`, and to the host setup.
    private var published: Set<HeldLease> = []
    private var configured: Set<HeldLease> = []
    private var publishing = false
    /// The last failure reaching the allocator, logged once until it answers again.
    private var outage: String?
    /// Set when the allocator refused this host's token: no lease can come until it changes.
    private var tokenRefused: APIFailure?

    /// - Parameters:
    ///   - client: the allocator, with this host's token.
    ///   - network: puts the addresses (and the prefixes' local routes) on loopback and applies
    ///     the host guard; nil leaves all of it to the operator.
    ///   - use: told the slices and prefixes new flows may leave from, whenever they change.
    ///     When leases are lost it is told first (before the guard, addresses and routes
    ///     change); when leases are gained it is told last (after their addresses and routes
    ///     are in place). When it throws, the change is offered again on the next pass.
    ///   - logger: where leases gained (info), lost or expired (warning), and the allocator's
    ///     outages (warning as one begins, notice as it ends) are told, with the lease, slice
    ///     and traits as metadata.
    public init(client: AllocatorClient, settings: Settings, network: HostNetworkSetup? = nil,
                use: @escaping @Sendable (Holdings) throws -> Void, logger: Logger) {
        self.client = client
        self.settings = settings
        self.network = network
        self.use = use
        self.logger = logger
    }

    /// The slices held now.
    public var slices: [HeldSlice] { Holdings(kept.values.map(\.held)).slices }
    /// The IPv6 prefixes held now.
    public var prefixes: [HeldPrefix] { Holdings(kept.values.map(\.held)).prefixes }

    /// When to talk to the allocator next.
    private var nextContact = ContinuousClock.now

    /// Keeps the leases until cancelled: one loop talks to the allocator, another drops
    /// leases at their deadlines, so a request that hangs cannot keep a slice in use too long.
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.keepInContact() }
            group.addTask { await self.enforceDeadlines() }
        }
    }

    private func keepInContact() async {
        while !Task.isCancelled {
            await refresh()
            try? await Task.sleep(until: nextContact, clock: .continuous)
        }
    }

    private func enforceDeadlines() async {
        while !Task.isCancelled {
            dropExpired()
            await publish()
            // Leases gained later expire later than those held, so the earliest deadline is
            // known except while none is held.
            let wake = kept.values.map(\.deadline).min() ?? ContinuousClock.now + .milliseconds(250)
            try? await Task.sleep(until: wake, clock: .continuous)
        }
    }

    /// Talks to the allocator if it is time, drops expired leases and hands on any change:
    /// one step of `run`, also used to hold slices before a proxy starts serving. (When a
    /// hand-on pass is already running elsewhere, gains reach `use` when that pass ends.)
    public func refresh() async {
        if ContinuousClock.now >= nextContact {
            nextContact = await contactAllocator()
        }
        dropExpired()
        await publish()
    }

    /// The first round with the allocator, before a proxy serves from the slices. A token the
    /// allocator refuses is an error here, since no slice could ever come; an allocator that
    /// does not answer is not (it is retried, and a previous run's leases adopted once it does).
    public func start() async throws {
        await refresh()
        if let tokenRefused {
            throw AgentError("\(tokenRefused); give this host's own token (from `portslice hosts add`) with --token or PORTSLICE_TOKEN, and check --server")
        }
    }

    /// How long one request may take: a hung allocator counts as unreachable well before
    /// the leases run out.
    private var requestTimeout: Duration { min(.seconds(5), settings.leaseTime / 4) }

    /// One round with the allocator: renew, adopt, top up. - Returns: when to talk to it next.
    func contactAllocator() async -> ContinuousClock.Instant {
        do {
            try await renewAndAdopt()
            await acquireMissing()
            tokenRefused = nil
            if let outage {
                logger.notice("the allocator answers again (after: \(outage)); holding \(kept.count) lease(s)", metadata: ["leases": "\(kept.count)"])
                self.outage = nil
            }
            var random = SystemRandomNumberGenerator()
            return ContinuousClock.now + settings.leaseTime / 3 * Double.random(in: 0.8...1.2, using: &random)
        } catch is CancellationError {
            return ContinuousClock.now
        } catch {
            if let failure = error as? APIFailure, failure.status == 401 || failure.status == 403 { tokenRefused = failure }
            if outage == nil {
                let soonest = kept.values.map(\.deadline).min().map { " until \(Self.describe($0 - ContinuousClock.now)) from now at the latest" } ?? ""
                logger.warning("cannot renew leases: \(error); keeping the \(kept.count) lease(s) held\(soonest), trying again every \(Self.describe(settings.retryInterval))",
                               metadata: ["leases": "\(kept.count)", "error": "\(error)"])
            }
            outage = "\(error)"
            return ContinuousClock.now + settings.retryInterval
        }
    }

    private var leaseSeconds: Int64 { settings.leaseTime.components.seconds }

    /// Renews every lease, slices and prefixes in one request; the answer lists every live
    /// lease of this host, so those it no longer lists are dropped, and those the agent does
    /// not know (a previous run's) are adopted while a want has room, else released.
    private func renewAndAdopt() async throws {
        let sent = ContinuousClock.now
        let answer = try await client.renewAllLeases(ttlSeconds: leaseSeconds, timeout: requestTimeout)
        let listed = answer.leases.map { (key: LeaseKey(kind: .slice, id: $0.id), body: $0) }
        // An allocator older than IPv6 prefixes lists none (nil): this host holds none there.
        let listedPrefixes = (answer.prefixLeases ?? []).map { HeldLease.prefix(HeldPrefix(body: $0)) }
        let listedKeys = Set(listed.map(\.key) + listedPrefixes.map(\.key))
        for (key, lost) in kept where !listedKeys.contains(key) {
            kept[key] = nil
            logger.warning("\(lost.held) lost: the allocator no longer lists it (expired or taken back); no new flow leaves from it", metadata: lost.held.metadata)
        }
        withdrawLost()
        var unknown: [HeldLease] = []
        for (key, body) in listed where kept[key] == nil {
            if let held = readable(body) { unknown.append(.slice(held)) }
        }
        unknown += listedPrefixes.filter { kept[$0.key] == nil }
        for key in listedKeys where kept[key] != nil {
            kept[key]?.deadline = sent + settings.leaseTime
        }
        // The closest lease and want first, so each want keeps the leases that suit it best.
        while let (index, want) = bestPairing(of: unknown) {
            let held = unknown.remove(at: index)
            kept[held.key] = Kept(held: held, want: want, deadline: sent + settings.leaseTime)
            logger.info("\(held): adopted (held by this host, not known to this run)", metadata: held.metadata)
        }
        for held in unknown {
            logger.info("\(held): held by this host beyond every --want; releasing it", metadata: held.metadata)
            await release(held)
        }
    }

    /// How many more leases of `kind` want `want` has room for: its count of slices, and one
    /// prefix (a /64 gives every client an address of its own already).
    private func room(in want: Int, for kind: LeaseKind) -> Int {
        let wanted = kind == .slice ? settings.wants[want].count : 1
        return wanted - kept.values.count { $0.want == want && $0.held.kind == kind }
    }

    /// Of `leases` and the wants with room for them, the closest pair in traits; nil when none
    /// is left.
    private func bestPairing(of leases: [HeldLease]) -> (lease: Int, want: Int)? {
        leases.indices.flatMap { lease in settings.wants.indices.filter { room(in: $0, for: leases[lease].kind) > 0 }.map { (lease: lease, want: $0) } }
            .max { Closeness(of: leases[$0.lease].traits, to: settings.wants[$0.want].traits) < Closeness(of: leases[$1.lease].traits, to: settings.wants[$1.want].traits) }
    }

    /// The slice of a lease the allocator sent, or nil (logged) when it cannot be read: one
    /// bad lease must not stop the others from being kept.
    private func readable(_ body: LeaseBody) -> HeldSlice? {
        do {
            return try Self.heldSlice(body)
        } catch {
            logger.warning("\(error); leaving it to expire", metadata: ["lease": "\(body.id)"])
            return nil
        }
    }

    private func release(_ held: HeldLease) async {
        do {
            switch held {
            case .slice(let slice): try await client.release(slice.leaseID, timeout: requestTimeout)
            case .prefix(let prefix): try await client.releasePrefix(prefix.leaseID, timeout: requestTimeout)
            }
        } catch {
            logger.warning("\(held): not released (\(error)); it expires on its own", metadata: held.metadata)
        }
    }

    /// Asks for what each want lacks. A refusal (no capacity, say) or a failure of one request
    /// is logged and tried again at the next renewal; it is not an outage.
    private func acquireMissing() async {
        await acquireMissingSlices()
        await acquireMissingPrefixes()
    }

    private func acquireMissingSlices() async {
        for (index, want) in settings.wants.enumerated() {
            let missing = room(in: index, for: .slice)
            guard missing > 0 else { continue }
            let sent = ContinuousClock.now
            let granted: [LeaseBody]
            do {
                granted = try await client.acquire(AcquireRequest(count: missing, ttlSeconds: leaseSeconds, traits: want.traits), timeout: requestTimeout)
            } catch {
                logger.warning("cannot acquire \(missing) slice(s) of \(want.traits.summary): \((error as? APIFailure)?.message ?? "\(error)"); trying again at the next renewal",
                               metadata: ["want": "\(want.traits.summary)", "missing": "\(missing)"])
                continue
            }
            for body in granted {
                guard let held = readable(body) else { continue }
                keep(.slice(held), for: index, deadline: sent + settings.leaseTime)
            }
        }
    }

    /// Asks for one IPv6 prefix for each want that has none. An allocator without prefixes
    /// (none in its pool, none free for the class, or one older than prefixes) is an ordinary
    /// state, not a fault: it is told once per round for all wants together, and a later round
    /// asks again.
    private func acquireMissingPrefixes() async {
        var unavailable: [String] = [], reason = ""
        for (index, want) in settings.wants.enumerated() where room(in: index, for: .prefix) > 0 {
            let sent = ContinuousClock.now
            let granted: [PrefixLeaseBody]
            do {
                granted = try await client.acquirePrefixes(AcquireRequest(count: 1, ttlSeconds: leaseSeconds, traits: want.traits), timeout: requestTimeout)
            } catch let failure as APIFailure where failure.status == 503 || failure.status == 404 {
                unavailable.append(want.traits.summary)
                reason = failure.status == 404 ? "the allocator does not lease IPv6 prefixes" : failure.message
                continue
            } catch {
                logger.warning("cannot acquire an IPv6 prefix of \(want.traits.summary): \(error); trying again at the next renewal",
                               metadata: ["want": "\(want.traits.summary)"])
                continue
            }
            for body in granted { keep(.prefix(HeldPrefix(body: body)), for: index, deadline: sent + settings.leaseTime) }
        }
        if !unavailable.isEmpty {
            logger.notice("no IPv6 prefix for \(unavailable.joined(separator: "; ")): \(reason); trying again at the next renewal (IPv4 is unaffected)",
                          metadata: ["wants": "\(unavailable.count)"])
        }
    }

    private func keep(_ held: HeldLease, for want: Int, deadline: ContinuousClock.Instant) {
        kept[held.key] = Kept(held: held, want: want, deadline: deadline)
        let traits = settings.wants[want].traits.summary
        logger.info("\(held): acquired for \(traits), \(held.kind == .slice ? "address" : "prefix") traits \(held.traits.summary)",
                    metadata: held.metadata.merging(["want": "\(traits)"]) { $1 })
    }

    /// Drops leases whose deadline has passed: the allocator may give them to another host now.
    private func dropExpired() {
        let now = ContinuousClock.now
        for (key, lease) in kept where lease.deadline <= now {
            kept[key] = nil
            logger.warning("\(lease.held) expired without renewal (the allocator did not answer); no new flow leaves from it", metadata: lease.held.metadata)
        }
        withdrawLost()
    }

    /// Tells the proxy at once that lost slices are gone: a synchronous step, so nothing
    /// waits between noticing a loss and acting on it.
    private func withdrawLost() {
        let remaining = published.intersection(kept.values.map(\.held))
        guard remaining != published else { return }
        hand(remaining)
    }

    /// Tells `use` the slices and prefixes flows may leave from; `published` follows only once
    /// it took them, so a change it refused is offered again on the next pass.
    private func hand(_ leases: Set<HeldLease>) {
        do {
            try use(Holdings(leases))
            published = leases
        } catch {
            logger.error("cannot send from the leases held: \(error); trying again at the next renewal", metadata: ["leases": "\(leases.count)"])
        }
    }

    /// Hands the change on in the order that never sends from a slice or prefix not held: lost
    /// leases leave the proxy first, then the guard, addresses and prefix routes follow the
    /// held set, and only then do gained leases join the proxy. One pass at a time; a pass repeats until the held set
    /// stops changing under it.
    private func publish() async {
        withdrawLost()
        guard !publishing else { return }
        publishing = true
        defer { publishing = false }
        while true {
            let current = Set(kept.values.map(\.held))
            if current != configured {
                do {
                    let holdings = Holdings(current)
                    try await network?.apply(holdings.slices, prefixes: holdings.prefixes.map(\.prefix))
                } catch {
                    // Only leases whose setup is in place may be used; the next pass (at the
                    // next renewal or deadline) tries again.
                    logger.error("host setup: \(error); leases gained since are not used until it succeeds")
                    withdrawLost()
                    let usable = published.union(current.intersection(configured)).intersection(kept.values.map(\.held))
                    if usable != published { hand(usable) }
                    return
                }
                configured = current
                withdrawLost()
                continue
            }
            if current != published { hand(current) }
            return
        }
    }

    /// On a graceful stop: releases the slices, so they go to quarantine now rather than at
    /// expiry (addresses are scarce), and undoes the host setup. Prefix leases are kept until
    /// they expire (IPv6 is not scarce): an agent started again within the lease time adopts
    /// them, so every client keeps its IPv6 address across the restart. Leases the allocator
    /// cannot be told about expire on their own.
    public func releaseAll() async {
        let held = kept.values.map(\.held)
        kept.removeAll()
        await publish()
        await withTaskGroup(of: Void.self) { group in
            for lease in held where lease.kind == .slice { group.addTask { await self.release(lease) } }
        }
        do { try await network?.remove() } catch { logger.error("host setup: \(error)") }
    }


    static func heldSlice(_ body: LeaseBody) throws -> HeldSlice {
        guard !body.ports.isEmpty else {
            throw AgentError("the allocator sent lease \(body.id) on \(body.address) with no ports")
        }
        return HeldSlice(leaseID: body.id, host: body.host, slice: body.egressSlice, index: body.slice, traits: body.traits ?? .unknown)
    }

    static func describe(_ duration: Duration) -> String {
        String(format: "%.1f s", Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18)
    }
}

/// Slice leases and prefix leases are numbered apart by the allocator, so a lease is known by
/// its kind and number together.
enum LeaseKind: Hashable, Sendable { case slice, prefix }

struct LeaseKey: Hashable, Sendable {
    let kind: LeaseKind
    let id: Int64
}

/// A lease the agent keeps, of either kind.
enum HeldLease: Hashable, Sendable, CustomStringConvertible {
    case slice(HeldSlice)
    case prefix(HeldPrefix)

    var kind: LeaseKind {
        switch self {
        case .slice: .slice
        case .prefix: .prefix
        }
    }

    var key: LeaseKey {
        switch self {
        case .slice(let held): LeaseKey(kind: .slice, id: held.leaseID)
        case .prefix(let held): LeaseKey(kind: .prefix, id: held.leaseID)
        }
    }

    /// The traits of the address or pool prefix.
    var traits: Traits {
        switch self {
        case .slice(let held): held.traits
        case .prefix(let held): held.traits
        }
    }

    var description: String {
        switch self {
        case .slice(let held): held.description
        case .prefix(let held): held.description
        }
    }

    /// The lease's identity for log metadata: its id, slice or prefix, and traits.
    var metadata: Logger.Metadata {
        switch self {
        case .slice(let held): ["lease": "\(held.leaseID)", "slice": "\(held.slice)", "traits": "\(held.traits.summary)"]
        case .prefix(let held): ["prefixLease": "\(held.leaseID)", "prefix": "\(held.prefix)", "traits": "\(held.traits.summary)"]
        }
    }
}

extension Holdings {
    init(_ leases: some Sequence<HeldLease>) {
        var slices: [HeldSlice] = [], prefixes: [HeldPrefix] = []
        for lease in leases {
            switch lease {
            case .slice(let held): slices.append(held)
            case .prefix(let held): prefixes.append(held)
            }
        }
        self.init(slices: slices, prefixes: prefixes)
    }
}

extension HeldPrefix {
    init(body: PrefixLeaseBody) {
        self.init(leaseID: body.id, host: body.host, prefix: body.prefix, traits: body.traits ?? .unknown)
    }
}
