import Foundation
import PortSliceAPI
import PortSliceCore

/// Where the edge learns the slice table from.
public protocol SliceTableSource: Sendable {
    /// The first call returns the table as it is; later calls wait until it changes.
    /// - Parameter applied: the version of the table in force in the kernel now, which an
    ///   allocator shows operators (nil before any is applied).
    /// - Throws: when the table cannot be fetched or read; the next call tries again.
    func next(applied: Int64?) async throws -> SliceTable
    /// Names the source in messages.
    var description: String { get }
}

/// Reads a table from a JSON file in the form `GET /v1/slices` answers (so
/// `curl .../v1/slices > table.json` makes one), for an edge that runs without an allocator.
/// The file is checked for changes every `pollInterval`; replace it by renaming a new file
/// over it so it is never read half-written.
public actor SliceTableFile: SliceTableSource {
    public nonisolated let path: String
    private let pollInterval: Duration
    private var lastSeen: Data?

    public init(path: String, pollInterval: Duration = .milliseconds(200)) {
        self.path = path
        self.pollInterval = pollInterval
    }

    public nonisolated var description: String { "slice table file \(path)" }

    public func next(applied: Int64?) async throws -> SliceTable {
        while true {
            let content = FileManager.default.contents(atPath: path)
            if let content, content != lastSeen {
                lastSeen = content
                return try Self.decode(content, from: description)
            }
            if content == nil && lastSeen == nil {
                lastSeen = Data()
                throw EdgeError("\(description) cannot be read; check the path and its permissions")
            }
            try await Task.sleep(for: pollInterval)
        }
    }

    static func decode(_ content: Data, from source: String) throws -> SliceTable {
        do {
            return try JSONDecoder().decode(SliceTable.self, from: content)
        } catch {
            throw SliceTableError("\(source) is not a slice table (the JSON of GET /v1/slices): \(error)")
        }
    }
}

/// Follows the allocator's table with long polls: each request returns once the table is newer
/// than the version last seen (or after the server's poll timeout, with the same table), and
/// reports the version applied. An edge calls with an edge token and sees the whole table; a
/// host's guard calls with the host's token and sees the host's own slices.
public actor AllocatorSliceTable: SliceTableSource {
    private let client: AllocatorClient
    private var lastVersion: Int64?

    public init(client: AllocatorClient) {
        self.client = client
    }

    public nonisolated var description: String { "allocator at \(client.base)" }

    public func next(applied: Int64?) async throws -> SliceTable {
        while true {
            let table: SliceTable
            do {
                table = try await client.sliceTable(since: lastVersion, applied: applied)
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                throw EdgeError("the \(description): \(error)")
            }
            if let lastVersion, table.version <= lastVersion { continue }
            lastVersion = table.version
            return table
        }
    }
}
