import Foundation
import Logging
import PortSliceAPI
import PortSliceCore
import PortSliceSockets

/// Keeps this host's leases: adopts the ones it already has, acquires what each `LeaseWant`
/// lacks, and renews them all in one request every third of the lease time (give or take a
/// fifth, so a fleet started together does not renew together).
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
        var held: HeldSlice
        /// Which want it counts towards; nil for a lease adopted beyond every want.
        var want: Int?
        var deadline: ContinuousClock.Instant
    }

    public let settings: Settings
    private let client: AllocatorClient
    private let network: HostNetworkSetup?
    private let use: @Sendable ([HeldSlice]) throws -> Void
    private let logger: Logger
    private var kept: [Int64: Kept] = [:]
    /// The slices last handed to `use`, and to the host setup.
    private var published: Set<HeldSlice> = []
    private var configured: Set<HeldSlice> = []
    private var publishing = false
    /// The last failure reaching the allocator, logged once until it answers again.
    private var outage: String?
    /// Set when the allocator refused this host's token: no lease can come until it changes.
    private var tokenRefused: APIFailure?

    /// - Parameters:
    ///   - client: the allocator, with this host's token.
    ///   - network: puts the addresses on loopback and applies the host guard; nil leaves both
    ///     to the operator.
    ///   - use: told the slices new flows may leave from, whenever they change. When slices
    ///     are lost it is told first (before the guard and addresses change); when slices are
    ///     gained it is told last (after their addresses are in place). When it throws, the
    ///     change is offered again on the next pass.
    ///   - logger: where leases gained (info), lost or expired (warning), and the allocator's
    ///     outages (warning as one begins, notice as it ends) are told, with the lease, slice
    ///     and traits as metadata.
    public init(client: AllocatorClient, settings: Settings, network: HostNetworkSetup? = nil,
                use: @escaping @Sendable ([HeldSlice]) throws -> Void, logger: Logger) {
        self.client = client
        self.settings = settings
        self.network = network
        self.use = use
        self.logger = logger
    }

    /// The slices held now.
    public var slices: [HeldSlice] { kept.values.map(\.held).sorted { $0.leaseID < $1.leaseID } }

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

    /// Renews every lease; the answer lists every live lease of this host, so those it no
    /// longer lists are dropped, and those the agent does not know (a previous run's) are
    /// adopted while a want has room, else released.
    private func renewAndAdopt() async throws {
        let sent = ContinuousClock.now
        let listed = try await client.renewAll(ttlSeconds: leaseSeconds, timeout: requestTimeout)
        let listedIDs = Set(listed.map(\.id))
        for (id, lost) in kept where !listedIDs.contains(id) {
            kept[id] = nil
            logger.warning("\(lost.held) lost: the allocator no longer lists it (expired or taken back); no new flow leaves from it", metadata: Self.metadata(lost.held))
        }
        withdrawLost()
        var unknown: [HeldSlice] = []
        for body in listed {
            if kept[body.id] != nil {
                kept[body.id]?.deadline = sent + settings.leaseTime
            } else if let held = readable(body) {
                unknown.append(held)
            }
        }
        // The closest lease and want first, so each want keeps the leases that suit it best.
        while let (index, want) = bestPairing(of: unknown) {
            let held = unknown.remove(at: index)
            kept[held.leaseID] = Kept(held: held, want: want, deadline: sent + settings.leaseTime)
            logger.info("\(held): adopted (held by this host, not known to this run)", metadata: Self.metadata(held))
        }
        for held in unknown {
            logger.info("\(held): held by this host beyond every --want; releasing it", metadata: Self.metadata(held))
            await release(held)
        }
    }

    /// Of `leases` and the wants with room, the closest pair in traits; nil when none is left.
    private func bestPairing(of leases: [HeldSlice]) -> (lease: Int, want: Int)? {
        let open = settings.wants.indices.filter { want in kept.values.count { $0.want == want } < settings.wants[want].count }
        return leases.indices.flatMap { lease in open.map { (lease: lease, want: $0) } }
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

    private func release(_ held: HeldSlice) async {
        do {
            try await client.release(held.leaseID, timeout: requestTimeout)
        } catch {
            logger.warning("\(held): not released (\(error)); it expires on its own", metadata: Self.metadata(held))
        }
    }

    /// Asks for what each want lacks. A refusal (no capacity, say) or a failure of one request
    /// is logged and tried again at the next renewal; it is not an outage.
    private func acquireMissing() async {
        for (index, want) in settings.wants.enumerated() {
            let missing = want.count - kept.values.count { $0.want == index }
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
                kept[body.id] = Kept(held: held, want: index, deadline: sent + settings.leaseTime)
                logger.info("\(held): acquired for \(want.traits.summary), address traits \(held.traits.summary)",
                            metadata: Self.metadata(held).merging(["want": "\(want.traits.summary)"]) { $1 })
            }
        }
    }

    /// Drops leases whose deadline has passed: the allocator may give them to another host now.
    private func dropExpired() {
        let now = ContinuousClock.now
        for (id, lease) in kept where lease.deadline <= now {
            kept[id] = nil
            logger.warning("\(lease.held) expired without renewal (the allocator did not answer); no new flow leaves from it", metadata: Self.metadata(lease.held))
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

    /// Tells `use` the slices flows may leave from; `published` follows only once it took them,
    /// so a change it refused is offered again on the next pass.
    private func hand(_ slices: Set<HeldSlice>) {
        do {
            try use(slices.sorted { $0.leaseID < $1.leaseID })
            published = slices
        } catch {
            logger.error("cannot send from the slices held: \(error); trying again at the next renewal", metadata: ["slices": "\(slices.count)"])
        }
    }

    /// Hands the change on in the order that never sends from a slice not held: lost slices
    /// leave the proxy first, then the guard and addresses follow the held set, and only then
    /// do gained slices join the proxy. One pass at a time; a pass repeats until the held set
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
                    try await network?.apply(current.sorted { $0.leaseID < $1.leaseID })
                } catch {
                    // Only slices whose setup is in place may be used; the next pass (at the
                    // next renewal or deadline) tries again.
                    logger.error("host setup: \(error); slices gained since are not used until it succeeds")
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

    /// Releases every lease (on a graceful stop), so the slices go to quarantine now rather
    /// than at expiry, and undoes the host setup. Leases the allocator cannot be told about
    /// expire on their own.
    public func releaseAll() async {
        let held = kept.values.map(\.held).sorted { $0.leaseID < $1.leaseID }
        kept.removeAll()
        await publish()
        await withTaskGroup(of: Void.self) { group in
            for lease in held { group.addTask { await self.release(lease) } }
        }
        do { try await network?.remove() } catch { logger.error("host setup: \(error)") }
    }

    /// A lease's identity for log metadata: its id, slice and address traits.
    static func metadata(_ held: HeldSlice) -> Logger.Metadata {
        ["lease": "\(held.leaseID)", "slice": "\(held.slice)", "traits": "\(held.traits.summary)"]
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
