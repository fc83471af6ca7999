/// The allocator's API as an OpenAPI 3.1 document, served at `GET /openapi.yaml`.
///
/// Written by hand from `PortSliceAPI.APIRoute` (routes and roles), `PortSliceAPI`'s bodies and
/// `ControlAPI` (statuses). `OpenAPIDocumentTests` holds it to the code: the same operations and
/// roles as `APIRoute.all`, and every body the server encodes valid under its schema. Each
/// operation names the roles it admits in `x-roles` as well as in words.
enum OpenAPIDocument {
    /// The document: what it is and who may call it, then its operations, then the components
    /// they share (each part in a file of its own).
    static let yaml = [header, paths, components].joined(separator: "\n")

    /// `openapi`, `info` (roles, outages, limits), servers, security and tags.
    static let header = """
        openapi: 3.1.0
        info:
          title: portslice allocator
          version: "1"
          summary: Leases of port slices of shared egress addresses, and the table edges steer by.
          description: |
            The allocator hands out slices (runs of ports) of egress IPv4 addresses to hosts as
            leases, keeps an assignment log of who held which ports when (RFC 6888, RFC 7422),
            and publishes the slice table that edges steer return traffic by.

            Bodies are JSON in both directions. Fields that are absent in an answer are simply
            left out (never null). Times are milliseconds since 1970-01-01 UTC.

            Every route under /v1 needs `Authorization: Bearer TOKEN`. There are four roles:
            `admin` (the operator's token: everything), `viewer` (a person's console token, made
            by `POST /v1/viewers`: reads everything an admin reads, changes nothing), `host` (a
            host's token, made by `POST /v1/hosts`: its own leases and its own part of the slice
            table) and `edge` (an edge's token, made by `POST /v1/edges`: reads the slice table
            and reports the version it applied). Each operation names the roles it admits, in its
            description and in `x-roles`; a token of another role gets 403, a missing or unknown
            token 401.

            While the database cannot be reached, every operation that needs it answers 503
            with `{"error": "database unavailable"}` within the store's operation timeout, and
            `/readyz` says why. Request bodies above 64 KiB are refused with 413.
        servers:
          - url: /
        security:
          - bearerAuth: []
        tags:
          - name: service
            description: Liveness, readiness, metrics and this document; no token needed.
          - name: hosts
            description: Hosts, edges and viewers, and their tokens.
          - name: leases
            description: A host's leases of slices and of IPv6 prefixes.
          - name: pool
            description: The egress addresses, how they are cut into slices, the IPv6 prefixes, and their public geofeed.
          - name: tables
            description: The slice table, the assignment log and capacity.
        """
}

// MARK: - Blocks the document repeats

extension OpenAPIDocument {
    /// An operation's shared error answers, a `"STATUS": $ref` to `components/responses` each,
    /// in the order given. Interpolated at the column of the operation's other statuses.
    static func errors(_ statuses: Int...) -> String {
        block(at: 8, statuses.flatMap { ["\"\($0)\":", "  $ref: \"#/components/responses/\(errorResponse($0))\""] })
    }

    /// The name in `components/responses` of the shared answer for `status`.
    private static func errorResponse(_ status: Int) -> String {
        switch status {
        case 400: "BadRequest"
        case 401: "Unauthorized"
        case 403: "Forbidden"
        case 404: "NotFound"
        case 409: "Conflict"
        case 410: "Gone"
        case 413: "ContentTooLarge"
        case 503: "DatabaseUnavailable"
        default: preconditionFailure("no shared answer for \(status)")
        }
    }

    /// `content` of one JSON body, whose schema is `schema` of `components/schemas`,
    /// interpolated at `column`.
    static func json(_ schema: String, at column: Int) -> String {
        block(at: column, ["content:", "  application/json:", "    schema:", "      $ref: \"#/components/schemas/\(schema)\""])
    }

    /// `lines` joined so that, interpolated at `column` of a literal, every one stands at that
    /// column (the first takes the literal's own indentation).
    static func block(at column: Int, _ lines: [String]) -> String {
        lines.joined(separator: "\n" + String(repeating: " ", count: column))
    }

    /// `text`, written at the columns it has in the document, without its first line's
    /// indentation: the literal it is interpolated into gives that.
    static func hanging(_ text: String) -> String {
        String(text.drop { $0 == " " })
    }
}
