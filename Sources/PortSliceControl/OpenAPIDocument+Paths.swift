extension OpenAPIDocument {
    /// Every operation of `APIRoute.all`, with the roles it admits, its parameters, body and
    /// answers.
    static let paths = """
        paths:
          /healthz:
            get:
              operationId: health
              tags: [service]
              summary: Is the process alive
              description: Public (no token, no database). Answers `ok` while the process runs.
              x-roles: []
              security: []
              responses:
                "200":
                  description: The process is alive.
                  content:
                    text/plain:
                      schema:
                        type: string
                        const: ok
          /readyz:
            get:
              operationId: readiness
              tags: [service]
              summary: Can it serve
              description: Public (no token). Ready when the database answers.
              x-roles: []
              security: []
              responses:
                "200":
                  description: The database answers.
                  \(json("Readiness", at: 10))
                "503":
                  description: The database does not answer; `reason` says why.
                  \(json("Readiness", at: 10))
          /metrics:
            get:
              operationId: metrics
              tags: [service]
              summary: Prometheus metrics
              description: |
                Public (no token; bind the API to a private address or put it behind a proxy).
                Prometheus text: slices per trait class and state (read at each scrape, left out
                while the database is away), leases held, request counts and latencies, database
                outages and refused tokens.
              x-roles: []
              security: []
              responses:
                "200":
                  description: Prometheus text exposition format.
                  content:
                    text/plain:
                      schema:
                        type: string
          /openapi.yaml:
            get:
              operationId: openAPIDocument
              tags: [service]
              summary: This document
              description: Public (no token). This API as an OpenAPI 3.1 document.
              x-roles: []
              security: []
              responses:
                "200":
                  description: The document.
                  content:
                    application/yaml:
                      schema:
                        type: string
          /geofeed.csv:
            get:
              operationId: geofeed
              tags: [pool]
              summary: The pool as an RFC 8805 geofeed
              description: |
                Public (no token: it is meant for geolocation providers). Every address of the
                pool, draining ones too, as a /32 with its location, in address order, then every
                IPv6 prefix of the pool whole (not the prefixes leased out of it): only
                RFC 8805's five columns `prefix,country,region,city,postal`, no header line (a
                published feed tells where addresses are, not how they are classed). The answer
                carries an `ETag` of its content and `Cache-Control: public, max-age=86400`, as
                providers fetch feeds about daily; a request whose `If-None-Match` equals the
                current `ETag` gets 304 without a body.
              x-roles: []
              security: []
              parameters:
                - $ref: "#/components/parameters/IfNoneMatch"
              responses:
                "200":
                  description: The feed.
                  headers:
                    ETag:
                      $ref: "#/components/headers/ETag"
                    Cache-Control:
                      $ref: "#/components/headers/CacheControl"
                  content:
                    text/csv:
                      schema:
                        $ref: "#/components/schemas/Geofeed"
                "304":
                  description: "Not modified: `If-None-Match` named the current `ETag`. No body."
                  headers:
                    ETag:
                      $ref: "#/components/headers/ETag"
                    Cache-Control:
                      $ref: "#/components/headers/CacheControl"
                \(errors(503))
          /v1/hosts:
            post:
              operationId: addHost
              tags: [hosts]
              summary: Add a host
              description: |
                Roles: admin. Makes a host and its token. The token is shown once: the allocator
                keeps only its hash.
              x-roles: [admin]
              \(creating(body: "NewHost", answer: "The host and its new token.", answerBody: "IssuedToken"))
            get:
              operationId: listHosts
              tags: [hosts]
              summary: List hosts
              description: |
                Roles: admin, viewer. Every host, by name, with its labels, how many leases it
                holds now, when it last renewed (or acquired) one of them, whether its renewals
                are late (it holds leases and has not renewed for more than half the lease time
                it asked for: agents renew every third of it) and the traits its current leases
                were asked for.
              x-roles: [admin, viewer]
              responses:
                "200":
                  description: The hosts, ordered by name.
                  \(json("HostList", at: 10))
                \(errors(401, 403, 503))
          \(rotation(path: "hosts", kind: "host", article: "a"))
          /v1/hosts/{name}:
            delete:
              operationId: removeHost
              tags: [hosts]
              summary: Remove a host
              description: |
                Roles: admin. Ends the host's leases (their slices go into quarantine) and
                forgets its token.
              x-roles: [admin]
              \(removingByName)
          /v1/edges:
            post:
              operationId: addEdge
              tags: [hosts]
              summary: Add an edge
              description: |
                Roles: admin. Makes an edge (a router that reads the slice table) and its token.
                The token is shown once.
              x-roles: [admin]
              \(creating(body: "NewEdge", answer: "The edge and its new token.", answerBody: "IssuedToken"))
            get:
              operationId: listEdges
              tags: [hosts]
              summary: List edges
              description: |
                Roles: admin, viewer. Every edge, by name, with the slice-table version it last
                reported applying in its kernel (`GET /v1/slices?applied=VERSION`), when, and how
                many versions that is behind the current table.
              x-roles: [admin, viewer]
              responses:
                "200":
                  description: The table's version now and the edges, ordered by name.
                  \(json("EdgeList", at: 10))
                \(errors(401, 403, 503))
          \(rotation(path: "edges", kind: "edge", article: "an"))
          \(removal(path: "edges", kind: "edge", article: "an"))
          /v1/viewers:
            post:
              operationId: addViewer
              tags: [hosts]
              summary: Add a viewer
              description: |
                Roles: admin. Makes a viewer (a person watching the console: reads everything
                an admin reads, changes nothing) and its token. The token is shown once.
              x-roles: [admin]
              \(creating(body: "NewViewer", answer: "The viewer and its new token.", answerBody: "IssuedToken"))
          \(rotation(path: "viewers", kind: "viewer", article: "a"))
          \(removal(path: "viewers", kind: "viewer", article: "a"))
          /v1/leases:
            post:
              operationId: acquire
              tags: [leases]
              summary: Lease slices
              description: |
                Roles: host. Leases `count` slices (1 by default) for `ttlSeconds` (the
                allocator's default lease time when absent) to the calling host, on the
                addresses whose traits are closest to the ones asked for. All or nothing: when
                fewer are free, nothing is leased and the answer is 503.
              x-roles: [host]
              \(acquiring("slice", answer: "The new leases, each with its address's traits."))
                "503":
                  description: |
                    Not enough free slices for the request (the error says how many are free for
                    which traits), or the database is unavailable.
                  \(json("ErrorBody", at: 10))
            get:
              operationId: listLeases
              tags: [leases]
              summary: List leases
              description: |
                Roles: admin, viewer, host. An admin or a viewer sees every lease, of slices and
                of IPv6 prefixes (`prefixLeases`); a host sees its own. Leases that have expired
                are ended first.
              x-roles: [admin, viewer, host]
              responses:
                "200":
                  description: The leases, each with its address's traits.
                  \(json("LeaseList", at: 10))
                \(errors(401, 403, 503))
          /v1/leases/renew:
            post:
              operationId: renewAll
              tags: [leases]
              summary: Renew all of the caller's leases
              description: |
                Roles: host. Renews every lease the calling host holds, slices and IPv6 prefixes,
                for `ttlSeconds` from now (the allocator's default lease time when absent). Leases
                that have already expired are left out of the answer: acquire new ones.
              x-roles: [host]
              requestBody:
                $ref: "#/components/requestBodies/Renewal"
              responses:
                "200":
                  description: The renewed leases.
                  \(json("LeaseList", at: 10))
                \(errors(400, 401, 403, 413, 503))
          /v1/leases/{id}/renew:
            post:
              operationId: renew
              tags: [leases]
              summary: Renew one lease
              description: |
                Roles: host. Renews one of the calling host's leases for `ttlSeconds` from now
                (the allocator's default lease time when absent).
              x-roles: [host]
              parameters:
                - $ref: "#/components/parameters/LeaseID"
              requestBody:
                $ref: "#/components/requestBodies/Renewal"
              responses:
                "200":
                  description: The renewed lease.
                  \(json("LeaseBody", at: 10))
                \(errors(400, 401))
                \(leaseOfAnotherHost)
                \(errors(404, 410, 413, 503))
          /v1/leases/{id}:
            delete:
              operationId: release
              tags: [leases]
              summary: Release a lease
              description: |
                Roles: host. Ends one of the calling host's leases; its slice goes into
                quarantine before anyone may have it again (RFC 6888 REQ-8).
              x-roles: [host]
              \(releasing)
          /v1/pool:
            post:
              operationId: addAddress
              tags: [pool]
              summary: Add an egress address
              description: |
                Roles: admin. Adds an address with its traits and cuts `range` (1024-65535 by
                default) into slices of `sliceSize` ports (2048 by default) or into `slices`
                slices; give one of the two, not both.
              x-roles: [admin]
              \(creating(body: "NewAddress", answer: "Added; the answer has no body."))
            get:
              operationId: listPool
              tags: [pool]
              summary: List the egress addresses
              description: |
                Roles: admin, viewer. Every address of the pool, in address order, with its
                traits (and their one-line summary) and whether it is draining.
              x-roles: [admin, viewer]
              responses:
                "200":
                  description: The pool's addresses.
                  \(json("PoolList", at: 10))
                \(errors(401, 403, 503))
          /v1/pool/{address}/drain:
            post:
              operationId: drain
              tags: [pool]
              summary: Drain an egress address
              description: |
                Roles: admin. The address takes no new leases; its free slices become
                draining, and its leases run until they are released or expire.
              x-roles: [admin]
              parameters:
                - $ref: "#/components/parameters/Address"
              responses:
                "204":
                  description: Draining.
                \(errors(400, 401, 403, 404, 503))
          /v1/pool/{address}:
            delete:
              operationId: removeAddress
              tags: [pool]
              summary: Remove an egress address
              description: |
                Roles: admin. Only an address without leases and quarantined slices can go:
                drain it first and wait. The assignment log keeps its history.
              x-roles: [admin]
              parameters:
                - $ref: "#/components/parameters/Address"
              responses:
                "204":
                  description: Removed.
                \(errors(400, 401, 403, 404, 409, 503))
          /v1/who:
            get:
              operationId: who
              tags: [tables]
              summary: Who held an address (and port) at a moment
              description: |
                Roles: admin, viewer. For an IPv4 address, the assignment-log records (in
                `records`) whose host held `port` of `address` at the moment `at`, for both TCP
                and UDP. For an IPv6 address, the records (in `prefixRecords`) of the leased
                prefix that covered it then: a prefix is held whole, so no port is needed.
              x-roles: [admin, viewer]
              parameters:
                - name: address
                  in: query
                  required: true
                  description: The egress address, IPv4 dotted decimal or IPv6.
                  schema:
                    anyOf:
                      - $ref: "#/components/schemas/IPv4Address"
                      - $ref: "#/components/schemas/IPv6Address"
                - name: port
                  in: query
                  required: false
                  description: The port, 0-65535; required for an IPv4 address (400 naming `port` without it).
                  schema:
                    type: integer
                    minimum: 0
                    maximum: 65535
                - name: at
                  in: query
                  required: true
                  description: The moment, in milliseconds since 1970-01-01 UTC.
                  schema:
                    type: integer
                    format: int64
              responses:
                "200":
                  description: The records covering that port and moment (often one, none when nobody held it).
                  \(json("Holders", at: 10))
                \(errors(400, 401, 403, 503))
          /v1/slices:
            get:
              operationId: sliceTable
              tags: [tables]
              summary: The slice table
              description: |
                Roles: admin, viewer, edge, host. Every slice, its state and, when leased, its
                holder, and every leased or quarantined IPv6 prefix: admins, viewers and edges get
                the whole table, a host only its own leased slices and prefixes. With `since`, a
                long poll: the answer waits (up to the server's long-poll timeout, 25 s by
                default) until the table's version is newer than `since` (for a host, until its
                own part changed after `since`: changes elsewhere do not answer it), then answers
                with the current version; when the wait runs out, it answers the current table,
                whose version may still equal `since`. An edge passes `applied`, the table version
                its kernel has, which `GET /v1/edges` shows; other roles' `applied` is ignored.
              x-roles: [admin, viewer, edge, host]
              parameters:
                - name: since
                  in: query
                  required: false
                  description: A table version already seen; wait for a newer one.
                  schema:
                    type: integer
                    format: int64
                - name: applied
                  in: query
                  required: false
                  description: |
                    For an edge: the table version it has applied in its kernel (400 naming
                    `applied` when it is not a non-negative integer). Ignored for other roles.
                  schema:
                    type: integer
                    format: int64
                    minimum: 0
              responses:
                "200":
                  description: The table (for a host, its part of it).
                  \(json("SliceTable", at: 10))
                \(errors(400, 401, 403, 503))
          /v1/capacity:
            get:
              operationId: capacity
              tags: [tables]
              summary: Slices per trait class and state
              description: |
                Roles: admin, viewer. Per trait class, how many slices are free, leased,
                quarantined and draining, with a warning for a class that has no free slice or
                fewer than a tenth of its usable slices free.
              x-roles: [admin, viewer]
              responses:
                "200":
                  description: One entry per trait class, ordered by summary.
                  \(json("CapacityReport", at: 10))
                \(errors(401, 403, 503))
          /v1/prefixes:
            post:
              operationId: addPrefix
              tags: [pool]
              summary: Add an IPv6 prefix to the pool
              description: |
                Roles: admin. Adds an IPv6 prefix with its traits, out of which hosts lease
                prefixes of `leaseLength` bits (the allocator's `--prefix-length`, 64 by
                default): longer than the prefix and at most 64, since hosts expect a /64
                (SLAAC) and a /64 per host is what providers hand out. IPv6 is not cut into port
                slices. 409 when the prefix or one overlapping it is already in the pool.
              x-roles: [admin]
              \(creating(body: "NewPrefix", answer: "Added; the answer has no body."))
            get:
              operationId: listPrefixes
              tags: [pool]
              summary: List the IPv6 prefixes
              description: |
                Roles: admin, viewer. Every IPv6 prefix of the pool, in address order, with its
                traits, the length leased out of it and whether it is draining.
              x-roles: [admin, viewer]
              responses:
                "200":
                  description: The pool's IPv6 prefixes.
                  \(json("PrefixList", at: 10))
                \(errors(401, 403, 503))
          /v1/prefixes/{network}/{length}/drain:
            post:
              operationId: drainPrefix
              tags: [pool]
              summary: Drain an IPv6 prefix
              description: |
                Roles: admin. The prefix (named by its network and length as two path segments,
                since a prefix holds a '/': `/v1/prefixes/2001:db8:10::/48/drain`) takes no new
                leases; its leases run until they are released or expire.
              x-roles: [admin]
              parameters:
                - $ref: "#/components/parameters/PrefixNetwork"
                - $ref: "#/components/parameters/PrefixLength"
              responses:
                "204":
                  description: Draining.
                \(errors(400, 401, 403, 404, 503))
          /v1/prefixes/{network}/{length}:
            delete:
              operationId: removePrefix
              tags: [pool]
              summary: Remove an IPv6 prefix
              description: |
                Roles: admin. Only a prefix without leases and quarantined prefixes in it can
                go: drain it first and wait. The assignment log keeps its history.
              x-roles: [admin]
              parameters:
                - $ref: "#/components/parameters/PrefixNetwork"
                - $ref: "#/components/parameters/PrefixLength"
              responses:
                "204":
                  description: Removed.
                \(errors(400, 401, 403, 404, 409, 503))
          /v1/prefix-leases:
            post:
              operationId: acquirePrefixes
              tags: [leases]
              summary: Lease IPv6 prefixes
              description: |
                Roles: host. Leases `count` IPv6 prefixes (1 by default) for `ttlSeconds` to the
                calling host, out of the pool prefixes whose traits are closest to the ones asked
                for (placed as slices are). In a pool prefix the host gets the first free prefix
                from a keyed hash of its name, so hosts spread out and a host that comes back
                after its quarantine ran out tends to get the same prefix. All or nothing; 503
                when fewer are free. They are renewed with `POST /v1/leases/renew`.
              x-roles: [host]
              \(acquiring("prefix", answer: "The new prefix leases in `prefixLeases` (and an empty `leases`)."))
                "503":
                  description: |
                    Not enough free prefixes for the request (the error says how many are free
                    for which traits), or the database is unavailable.
                  \(json("ErrorBody", at: 10))
          /v1/prefix-leases/{id}:
            delete:
              operationId: releasePrefix
              tags: [leases]
              summary: Release a prefix lease
              description: |
                Roles: host. Ends one of the calling host's prefix leases; the prefix goes into
                quarantine before anyone may have it again, as a slice does.
              x-roles: [host]
              \(releasing)
        """
}

extension OpenAPIDocument {
    /// The 403 of an operation on one of the caller's leases.
    static let leaseOfAnotherHost = hanging("""
                "403":
                  description: The token's role is not admitted, or the lease belongs to another host.
                  \(json("ErrorBody", at: 10))
        """)

    /// The body and answers of a `POST` that adds what `body` describes: 201 with `answer`, and
    /// with the `answerBody` schema when the answer has one (a token made for a new host, edge
    /// or viewer; none for a pool address or prefix).
    static func creating(body: String, answer: String, answerBody: String? = nil) -> String {
        let content = answerBody.map { "\n" + String(repeating: " ", count: 10) + json($0, at: 10) } ?? ""
        return hanging("""
                  requestBody:
                    required: true
                    \(json(body, at: 8))
                  responses:
                    "201":
                      description: \(answer)\(content)
                    \(errors(400, 401, 403, 409, 413, 503))
            """)
    }

    /// The body and answers but the 503 of `POST /v1/leases` and `/v1/prefix-leases`,
    /// which lease a `what` (a slice or a prefix).
    static func acquiring(_ what: String, answer: String) -> String {
        hanging("""
                  requestBody:
                    required: true
                    description: A JSON object; `{}` asks for one \(what) of any traits.
                    \(json("AcquireRequest", at: 8))
                  responses:
                    "201":
                      description: \(answer)
                      \(json("LeaseList", at: 10))
                    \(errors(400, 401, 403, 413))
            """)
    }

    /// The parameter and answers of `DELETE /v1/leases/{id}` and `/v1/prefix-leases/{id}`.
    static let releasing = hanging("""
                  parameters:
                    - $ref: "#/components/parameters/LeaseID"
                  responses:
                    "204":
                      description: Released.
                    \(errors(400, 401))
                    \(leaseOfAnotherHost)
                    \(errors(404, 410, 503))
            """)

    /// `POST /v1/PATH/{name}/rotate`, the same for hosts, edges and viewers.
    static func rotation(path: String, kind: String, article: String) -> String {
        hanging("""
              /v1/\(path)/{name}/rotate:
                post:
                  operationId: rotate\(kind.prefix(1).uppercased() + kind.dropFirst())
                  tags: [hosts]
                  summary: Give \(article) \(kind) a new token
                  description: "Roles: admin. The old token stops working at once."
                  x-roles: [admin]
                  parameters:
                    - $ref: "#/components/parameters/Name"
                  responses:
                    "200":
                      description: The \(kind)'s new token.
                      \(json("IssuedToken", at: 10))
                    \(errors(400, 401, 403, 404, 503))
            """)
    }

    /// `DELETE /v1/PATH/{name}`, the same for edges and viewers (a host's leases end too).
    static func removal(path: String, kind: String, article: String) -> String {
        hanging("""
              /v1/\(path)/{name}:
                delete:
                  operationId: remove\(kind.prefix(1).uppercased() + kind.dropFirst())
                  tags: [hosts]
                  summary: Remove \(article) \(kind)
                  description: "Roles: admin. Forgets the \(kind)'s token."
                  x-roles: [admin]
                  \(removingByName)
            """)
    }

    /// The parameter and answers of removing a host, an edge or a viewer by name.
    static let removingByName = hanging("""
                  parameters:
                    - $ref: "#/components/parameters/Name"
                  responses:
                    "204":
                      description: Removed.
                    \(errors(400, 401, 403, 404, 503))
            """)
}
