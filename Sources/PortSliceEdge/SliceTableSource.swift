import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import PortSliceStore

/// Where the edge learns the slice table from.
public protocol SliceTableSource: Sendable {
    /// The first call returns the table as it is; later calls wait until it changes.
    /// - Throws: when the table cannot be fetched or read; the next call tries again.
    func next() async throws -> SliceTable
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

    public func next() async throws -> SliceTable {
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
/// than the version last seen (or after the server's poll timeout, with the same table).
public actor AllocatorSliceTable: SliceTableSource {
    public nonisolated let base: String
    private let token: String
    private var lastVersion: Int64?

    public init(base: String, adminToken: String) {
        self.base = base.hasSuffix("/") ? String(base.dropLast()) : base
        self.token = adminToken
    }

    public nonisolated var description: String { "allocator at \(base)" }

    public func next() async throws -> SliceTable {
        while true {
            let query = lastVersion.map { "?since=\($0)" } ?? ""
            var request = HTTPClientRequest(url: "\(base)/v1/slices\(query)")
            request.headers.add(name: "Authorization", value: "Bearer \(token)")
            let response: HTTPClientResponse
            do {
                response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                throw EdgeError("cannot reach the \(description): \(error)")
            }
            let body = Data((try await response.body.collect(upTo: 256 * 1024 * 1024)).readableBytesView)
            guard response.status == .ok else {
                throw EdgeError("the \(description) answered \(response.status.code): \(String(decoding: body.prefix(500), as: UTF8.self))")
            }
            let table = try SliceTableFile.decode(body, from: description)
            if let lastVersion, table.version <= lastVersion { continue }
            lastVersion = table.version
            return table
        }
    }
}
