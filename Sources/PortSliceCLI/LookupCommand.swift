import ArgumentParser
import PortSliceCore

/// `portslice lookup`: what the system knows of a client and where it would leave from.
struct LookupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lookup",
        abstract: "Show a client's traits from geofeeds and the egress address it would get.",
        discussion: """
            The client's traits come from the longest matching prefix across the feeds (a later \
            feed overrides an identical prefix in an earlier one). With --pool, the egress address \
            is the pool address whose traits are closest (city, region, country, category, \
            reputation), ties broken by rendezvous hashing on the client address.

            Example:
              portslice lookup 2001:db8::1 --feed clients.csv --pool pool.csv
            """
    )

    @Argument(help: ArgumentHelp("Client IPv4 or IPv6 address.", valueName: "ip"))
    var client: String

    @Option(name: .customLong("feed"), help: ArgumentHelp("Client geofeed; repeat for several.", valueName: "file"))
    var feeds: [String] = []

    @Option(help: ArgumentHelp("Pool geofeed: egress addresses with their traits.", valueName: "file"))
    var pool: String?

    @Flag(help: "Skip bad feed lines (reported on standard error) instead of failing.")
    var lenient = false

    @Option(help: "Output format.")
    var format: OutputFormat = .table

    func validate() throws {
        if feeds.isEmpty { throw ValidationError("Give at least one client geofeed with --feed FILE.") }
    }

    func run() throws {
        let address = try IPAddress(parsing: client)
        let mode: Geofeed.ReadMode = lenient ? .lenient : .strict
        let feeds = try feeds.map { path in
            let feed = try Geofeed.read(readFile(path, what: "geofeed"), source: path, mode: mode)
            for issue in feed.issues { printToStandardError("skipped \(issue)") }
            return feed
        }
        let match = TraitIndex(feeds: feeds).lookup(address)
        let traits = match?.traits ?? .unknown
        var egress: (EgressAddress, Closeness)? = nil
        if let pool {
            let poolFeed = try Geofeed.read(readFile(pool, what: "pool file"), source: pool, mode: .strict)
            let egressPool: EgressPool
            do { egressPool = try EgressPool(feed: poolFeed) } catch { throw CommandFailure("\(pool): \(error)") }
            if let chosen = egressPool.choose(for: address, traits: traits) {
                egress = (chosen, Closeness(of: chosen.traits, to: traits))
            }
        }
        switch format {
        case .json:
            print(try jsonText(LookupReport(
                client: address.description, prefix: match?.prefix.description, traits: match?.traits,
                egress: egress.map { .init(address: $0.0.address.description, traits: $0.0.traits, closeness: $0.1.description) })))
        case .table:
            var rows = [["client", address.description]]
            if let match {
                rows.append(["prefix", match.prefix.description])
                rows.append(["traits", match.traits.summary])
            } else {
                rows.append(["prefix", "none: no feed covers this address, so its traits are unknown"])
            }
            if let (chosen, closeness) = egress {
                rows.append(["egress", chosen.address.description])
                rows.append(["egress traits", chosen.traits.summary])
                rows.append(["closeness", closeness.description])
            } else if pool != nil {
                rows.append(["egress", "none: the pool is empty"])
            }
            print(rows.map { $0[0].padding(toLength: 14, withPad: " ", startingAt: 0) + $0[1] }.joined(separator: "\n"))
        }
    }
}

/// What `lookup --format json` prints.
struct LookupReport: Encodable {
    struct Egress: Encodable {
        let address: String
        let traits: Traits
        let closeness: String
    }

    let client: String
    let prefix: String?
    let traits: Traits?
    let egress: Egress?
}
