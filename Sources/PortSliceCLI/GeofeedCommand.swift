import ArgumentParser
import PortSliceCore

/// `portslice geofeed`: RFC 8805 files.
struct GeofeedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "geofeed",
        abstract: "Check and normalise RFC 8805 geofeeds (client feeds and pool files).",
        discussion: """
            Columns: prefix,country,region,city,postal, then portslice's optional columns \
            category (residential, mobile, business, hosting, unknown), reputation (high, medium, \
            low) and tags (separated by ';'). Lines starting with '#' are comments.
            """,
        subcommands: [GeofeedCheckCommand.self, GeofeedFormatCommand.self, GeofeedPublishCommand.self]
    )
}

struct GeofeedCheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Report every error in one or more geofeeds, with line numbers; exit 1 if any.",
        discussion: "Prints FILE:LINE: MESSAGE for each problem, then one summary line per file."
    )

    @Argument(help: ArgumentHelp("Geofeed files.", valueName: "file"))
    var files: [String]

    @Flag(help: "Print only the problems, not the summary lines.")
    var quiet = false

    func run() throws {
        var failed = false
        for file in files {
            let feed = try Geofeed.read(readFile(file, what: "geofeed"), source: file, mode: .lenient)
            for issue in feed.issues { print(issue) }
            failed = failed || !feed.issues.isEmpty
            if !quiet {
                let entries = feed.entries.count == 1 ? "1 entry" : "\(feed.entries.count) entries"
                let errors = feed.issues.isEmpty ? "ok" : "\(feed.issues.count) error\(feed.issues.count == 1 ? "" : "s")"
                print("\(file): \(entries), \(errors)")
            }
        }
        if failed { throw ExitCode(1) }
    }
}

struct GeofeedFormatCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "format",
        abstract: "Print a geofeed in canonical form (RFC 5952 addresses, upper-case codes, sorted).",
        discussion: "Fails, listing every error, if the feed is not valid; use --lenient to drop bad lines instead."
    )

    @Argument(help: ArgumentHelp("Geofeed file.", valueName: "file"))
    var file: String

    @Flag(help: "Skip bad lines (reported on standard error) instead of failing.")
    var lenient = false

    @Flag(help: "Only RFC 8805's five columns (prefix,country,region,city,postal), as published for geolocation providers.")
    var standardColumns = false

    func run() throws {
        var feed = try Geofeed.read(readFile(file, what: "geofeed"), source: file, mode: lenient ? .lenient : .strict)
        for issue in feed.issues { printToStandardError("skipped \(issue)") }
        feed.entries.sort { $0.prefix < $1.prefix }
        print(feed.csv(columns: standardColumns ? .standard : .withTraits), terminator: "")
    }
}

struct GeofeedPublishCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "publish",
        abstract: "Print the geofeed an allocator publishes at /geofeed.csv: the pool's addresses and locations.",
        discussion: """
            The same text as `portslice geofeed format --standard-columns` of the pool, with only \
            RFC 8805's five columns. Point geolocation providers at SERVER/geofeed.csv with a \
            `geofeed:` attribute in the address block's registry object (RFC 9092). No token is needed.
            """)

    @OptionGroup var server: ServerOptions

    func run() async throws {
        print(try await server.client(needsToken: false).geofeed(), terminator: "")
    }
}
