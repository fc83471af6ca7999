/// The allocator's API as an OpenAPI 3.1 document, served at `GET /openapi.yaml`.
///
/// Written by hand from `PortSliceAPI.APIRoute` (routes and roles), `PortSliceAPI`'s bodies and
/// `ControlAPI` (statuses). `OpenAPIDocumentTests` holds it to the code: the same operations and
/// roles as `APIRoute.all`, and every body the server encodes valid under its schema. Each
/// operation names the roles it admits in `x-roles` as well as in words.
enum OpenAPIDocument {
    static let yaml = """
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
                  content:
                    application/json:
                      schema:
                        $ref: "#/components/schemas/Readiness"
                "503":
                  description: The database does not answer; `reason` says why.
                  content:
                    application/json:
                      schema:
                        $ref: "#/components/schemas/Readiness"
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
                "503":
                  $ref: "#/components/responses/DatabaseUnavailable"
          /v1/hosts:
            post:
              operationId: addHost
              tags: [hosts]
              summary: Add a host
              description: |
                Roles: admin. Makes a host and its token. The token is shown once: the allocator
                keeps only its hash.
              x-roles: [admin]
              requestBody:
                required: true
                content:
                  application/json:
                    schema:
                      $ref: "#/components/schemas/NewHost"
              responses:
                "201":
                  description: The host and its new token.
                  content:
                    application/json:
                      schema:
                        $ref: "#/components/schemas/IssuedToken"
                "400":
                  $ref: "#/components/responses/BadRequest"
                "401":
                  $ref: "#/components/responses/Unauthorized"
                "403":
                  $ref: "#/components/responses/Forbidden"
                "409":
                  $ref: "#/components/responses/Conflict"
                "413":
                  $ref: "#/components/responses/ContentTooLarge"
                "503":
                  $ref: "#/components/responses/DatabaseUnavailable"
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
                  content:
                    application/json:
                      schema:
                        $ref: "#/components/schemas/HostList"
                "401":
                  $ref: "#/components/responses/Unauthorized"
                "403":
                  $ref: "#/components/responses/Forbidden"
                "503":
                  $ref: "#/components/responses/DatabaseUnavailable"
          /v1/hosts/{name}/rotate:
            post:
              operationId: rotateHost
              tags: [hosts]
              summary: Give a host a new token
              description: "Roles: admin. The old token stops working at once."
              x-roles: [admin]
              parameters:
                - $ref: "#/components/parameters/Name"
              responses:
                "200":
                  description: The host's new token.
                  content:
                    application/json:
                      schema:
                        $ref: "#/components/schemas/IssuedToken"
                "400":
                  $ref: "#/components/responses/BadRequest"
                "401":
                  $ref: "#/components/responses/Unauthorized"
                "403":
                  $ref: "#/components/responses/Forbidden"
                "404":
                  $ref: "#/components/responses/NotFound"
                "503":
                  $ref: "#/components/responses/DatabaseUnavailable"
          /v1/hosts/{name}:
            delete:
              operationId: removeHost
              tags: [hosts]
              summary: Remove a host
              description: |
                Roles: admin. Ends the host's leases (their slices go into quarantine) and
                forgets its token.
              x-roles: [admin]
              parameters:
                - $ref: "#/components/parameters/Name"
              responses:
                "204":
                  description: Removed.
                "400":
                  $ref: "#/components/responses/BadRequest"
                "401":
                  $ref: "#/components/responses/Unauthorized"
                "403":
                  $ref: "#/components/responses/Forbidden"
                "404":
                  $ref: "#/components/responses/NotFound"
                "503":
                  $ref: "#/components/responses/DatabaseUnavailable"
          /v1/edges:
            post:
              operationId: addEdge
              tags: [hosts]
              summary: Add an edge
              description: |
                Roles: admin. Makes an edge (a router that reads the slice table) and its token.
                The token is shown once.
              x-roles: [admin]
              requestBody:
                required: true
                content:
                  application/json:
                    schema:
                      $ref: "#/components/schemas/NewEdge"
              responses:
                "201":
                  description: The edge and its new token.
                  content:
                    application/json:
                      schema:
                        $ref: "#/components/schemas/IssuedToken"
                "400":
                  $ref: "#/components/responses/BadRequest"
                "401":
                  $ref: "#/components/responses/Unauthorized"
                "403":
                  $ref: "#/components/responses/Forbidden"
                "409":
                  $ref: "#/components/responses/Conflict"
                "413":
                  $ref: "#/components/responses/ContentTooLarge"
                "503":
                  $ref: "#/components/responses/DatabaseUnavailable"
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
                  content:
                    application/json:
                      schema:
                        $ref: "#/components/schemas/EdgeList"
                "401":
                  $ref: "#/components/responses/Unauthorized"
                "403":
                  $ref: "#/components/responses/Forbidden"
                "503":
                  $ref: "#/components/responses/DatabaseUnavailable"
          /v1/edges/{name}/rotate:
            post:
              operationId: rotateEdge
              tags: [hosts]
              summary: Give an edge a new token
              description: "Roles: admin. The old token stops working at once."
              x-roles: [admin]
              parameters:
                - $ref: "#/components/parameters/Name"
              responses:
                "200":
                  description: The edge's new token.
                  content:
                    application/json:
                      schema:
                        $ref: "#/components/schemas/IssuedToken"
                "400":
                  $ref: "#/components/responses/BadRequest"
                "401":
                  $ref: "#/components/responses/Unauthorized"
                "403":
                  $ref: "#/components/responses/Forbidden"
                "404":
                  $ref: "#/components/responses/NotFound"
                "503":
                  $ref: "#/components/responses/DatabaseUnavailable"
          /v1/edges/{name}:
            delete:
              operationId: removeEdge
              tags: [hosts]
              summary: Remove an edge
              description: "Roles: admin. Forgets the edge's token."
              x-roles: [admin]
              parameters:
                - $ref: "#/components/parameters/Name"
              responses:
                "204":
                  description: Removed.
                "400":
                  $ref: "#/components/responses/BadRequest"
                "401":
                  $ref: "#/components/responses/Unauthorized"
                "403":
                  $ref: "#/components/responses/Forbidden"
                "404":
                  $ref: "#/components/responses/NotFound"
                "503":
                  $ref: "#/components/responses/DatabaseUnavailable"
          /v1/viewers:
            post:
              operationId: addViewer
              tags: [hosts]
              summary: Add a viewer
              description: |
                Roles: admin. Makes a viewer (a person watching the console: reads everything
                an admin reads, changes nothing) and its token. The token is shown once.
              x-roles: [admin]
              requestBody:
                required: true
                content:
                  application/json:
                    schema:
                      $ref: "#/components/schemas/NewViewer"
              responses:
                "201":
                  description: The viewer and its new token.
                  content:
                    application/json:
                      schema:
                        $ref: "#/components/schemas/IssuedToken"
                "400":
                  $ref: "#/components/responses/BadRequest"
                "401":
                  $ref: "#/components/responses/Unauthorized"
                "403":
                  $ref: "#/components/responses/Forbidden"
                "409":
                  $ref: "#/components/responses/Conflict"
                "413":
                  $ref: "#/components/responses/ContentTooLarge"
                "503":
                  $ref: "#/components/responses/DatabaseUnavailable"
          /v1/viewers/{name}/rotate:
            post:
              operationId: rotateViewer
              tags: [hosts]
              summary: Give a viewer a new token
              description: "Roles: admin. The old token stops working at once."
              x-roles: [admin]
              parameters:
                - $ref: "#/components/parameters/Name"
              responses:
                "200":
                  description: The viewer's new token.
                  content:
                    application/json:
                      schema:
                        $ref: "#/components/schemas/IssuedToken"
                "400":
                  $ref: "#/components/responses/BadRequest"
                "401":
                  $ref: "#/components/responses/Unauthorized"
                "403":
                  $ref: "#/components/responses/Forbidden"
                "404":
                  $ref: "#/components/responses/NotFound"
                "503":
                  $ref: "#/components/responses/DatabaseUnavailable"
          /v1/viewers/{name}:
            delete:
              operationId: removeViewer
              tags: [hosts]
              summary: Remove a viewer
              description: "Roles: admin. Forgets the viewer's token."
              x-roles: [admin]
              parameters:
                - $ref: "#/components/parameters/Name"
              responses:
                "204":
                  description: Removed.
                "400":
                  $ref: "#/components/responses/BadRequest"
                "401":
                  $ref: "#/components/responses/Unauthorized"
                "403":
                  $ref: "#/components/responses/Forbidden"
                "404":
                  $ref: "#/components/responses/NotFound"
                "503":
                  $ref: "#/components/responses/DatabaseUnavailable"
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
              requestBody:
                required: true
                description: A JSON object; `{}` asks for one slice of any traits.
                content:
                  application/json:
                    schema:
                      $ref: "#/components/schemas/AcquireRequest"
              responses:
                "201":
                  description: The new leases, each with its address's traits.
                  content:
                    application/json:
                      schema:
                        $ref: "#/components/schemas/LeaseList"
                "400":
                  $ref: "#/components/responses/BadRequest"
                "401":
                  $ref: "#/components/responses/Unauthorized"
                "403":
                  $ref: "#/components/responses/Forbidden"
                "413":
                  $ref: "#/components/responses/ContentTooLarge"
                "503":
                  description: |
                    Not enough free slices for the request (the error says how many are free for
                    which traits), or the database is unavailable.
                  content:
                    application/json:
                      schema:
                        $ref: "#/components/schemas/ErrorBody"
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
                  content:
                    application/json:
                      schema:
                        $ref: "#/components/schemas/LeaseList"
                "401":
                  $ref: "#/components/responses/Unauthorized"
                "403":
                  $ref: "#/components/responses/Forbidden"
                "503":
                  $ref: "#/components/responses/DatabaseUnavailable"
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
                  content:
                    application/json:
                      schema:
                        $ref: "#/components/schemas/LeaseList"
                "400":
                  $ref: "#/components/responses/BadRequest"
                "401":
                  $ref: "#/components/responses/Unauthorized"
                "403":
                  $ref: "#/components/responses/Forbidden"
                "413":
                  $ref: "#/components/responses/ContentTooLarge"
                "503":
                  $ref: "#/components/responses/DatabaseUnavailable"
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
                  content:
                    application/json:
                      schema:
                        $ref: "#/components/schemas/LeaseBody"
                "400":
                  $ref: "#/components/responses/BadRequest"
                "401":
                  $ref: "#/components/responses/Unauthorized"
                "403":
                  description: The token's role is not admitted, or the lease belongs to another host.
                  content:
                    application/json:
                      schema:
                        $ref: "#/components/schemas/ErrorBody"
                "404":
                  $ref: "#/components/responses/NotFound"
                "410":
                  $ref: "#/components/responses/Gone"
                "413":
                  $ref: "#/components/responses/ContentTooLarge"
                "503":
                  $ref: "#/components/responses/DatabaseUnavailable"
          /v1/leases/{id}:
            delete:
              operationId: release
              tags: [leases]
              summary: Release a lease
              description: |
                Roles: host. Ends one of the calling host's leases; its slice goes into
                quarantine before anyone may have it again (RFC 6888 REQ-8).
              x-roles: [host]
              parameters:
                - $ref: "#/components/parameters/LeaseID"
              responses:
                "204":
                  description: Released.
                "400":
                  $ref: "#/components/responses/BadRequest"
                "401":
                  $ref: "#/components/responses/Unauthorized"
                "403":
                  description: The token's role is not admitted, or the lease belongs to another host.
                  content:
                    application/json:
                      schema:
                        $ref: "#/components/schemas/ErrorBody"
                "404":
                  $ref: "#/components/responses/NotFound"
                "410":
                  $ref: "#/components/responses/Gone"
                "503":
                  $ref: "#/components/responses/DatabaseUnavailable"
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
              requestBody:
                required: true
                content:
                  application/json:
                    schema:
                      $ref: "#/components/schemas/NewAddress"
              responses:
                "201":
                  description: Added; the answer has no body.
                "400":
                  $ref: "#/components/responses/BadRequest"
                "401":
                  $ref: "#/components/responses/Unauthorized"
                "403":
                  $ref: "#/components/responses/Forbidden"
                "409":
                  $ref: "#/components/responses/Conflict"
                "413":
                  $ref: "#/components/responses/ContentTooLarge"
                "503":
                  $ref: "#/components/responses/DatabaseUnavailable"
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
                  content:
                    application/json:
                      schema:
                        $ref: "#/components/schemas/PoolList"
                "401":
                  $ref: "#/components/responses/Unauthorized"
                "403":
                  $ref: "#/components/responses/Forbidden"
                "503":
                  $ref: "#/components/responses/DatabaseUnavailable"
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
                "400":
                  $ref: "#/components/responses/BadRequest"
                "401":
                  $ref: "#/components/responses/Unauthorized"
                "403":
                  $ref: "#/components/responses/Forbidden"
                "404":
                  $ref: "#/components/responses/NotFound"
                "503":
                  $ref: "#/components/responses/DatabaseUnavailable"
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
                "400":
                  $ref: "#/components/responses/BadRequest"
                "401":
                  $ref: "#/components/responses/Unauthorized"
                "403":
                  $ref: "#/components/responses/Forbidden"
                "404":
                  $ref: "#/components/responses/NotFound"
                "409":
                  $ref: "#/components/responses/Conflict"
                "503":
                  $ref: "#/components/responses/DatabaseUnavailable"
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
                  content:
                    application/json:
                      schema:
                        $ref: "#/components/schemas/Holders"
                "400":
                  $ref: "#/components/responses/BadRequest"
                "401":
                  $ref: "#/components/responses/Unauthorized"
                "403":
                  $ref: "#/components/responses/Forbidden"
                "503":
                  $ref: "#/components/responses/DatabaseUnavailable"
          /v1/slices:
            get:
              operationId: sliceTable
              tags: [tables]
              summary: The slice table
              description: |
                Roles: admin, viewer, edge, host. Every slice, its state and, when leased, its
                holder, and every leased or quarantined IPv6 prefix: admins, viewers and edges get
                the whole table, a host only its own leased slices and prefixes. With `since`, a long poll: the answer waits (up to the server's long-poll
                timeout, 25 s by default) until the table's version is newer than `since`, then
                answers; when the wait runs out, it answers the current table, whose version may
                still equal `since`. An edge passes `applied`, the table version its kernel has,
                which `GET /v1/edges` shows; other roles' `applied` is ignored.
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
                  content:
                    application/json:
                      schema:
                        $ref: "#/components/schemas/SliceTable"
                "400":
                  $ref: "#/components/responses/BadRequest"
                "401":
                  $ref: "#/components/responses/Unauthorized"
                "403":
                  $ref: "#/components/responses/Forbidden"
                "503":
                  $ref: "#/components/responses/DatabaseUnavailable"
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
                  content:
                    application/json:
                      schema:
                        $ref: "#/components/schemas/CapacityReport"
                "401":
                  $ref: "#/components/responses/Unauthorized"
                "403":
                  $ref: "#/components/responses/Forbidden"
                "503":
                  $ref: "#/components/responses/DatabaseUnavailable"
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
              requestBody:
                required: true
                content:
                  application/json:
                    schema:
                      $ref: "#/components/schemas/NewPrefix"
              responses:
                "201":
                  description: Added; the answer has no body.
                "400":
                  $ref: "#/components/responses/BadRequest"
                "401":
                  $ref: "#/components/responses/Unauthorized"
                "403":
                  $ref: "#/components/responses/Forbidden"
                "409":
                  $ref: "#/components/responses/Conflict"
                "413":
                  $ref: "#/components/responses/ContentTooLarge"
                "503":
                  $ref: "#/components/responses/DatabaseUnavailable"
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
                  content:
                    application/json:
                      schema:
                        $ref: "#/components/schemas/PrefixList"
                "401":
                  $ref: "#/components/responses/Unauthorized"
                "403":
                  $ref: "#/components/responses/Forbidden"
                "503":
                  $ref: "#/components/responses/DatabaseUnavailable"
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
                "400":
                  $ref: "#/components/responses/BadRequest"
                "401":
                  $ref: "#/components/responses/Unauthorized"
                "403":
                  $ref: "#/components/responses/Forbidden"
                "404":
                  $ref: "#/components/responses/NotFound"
                "503":
                  $ref: "#/components/responses/DatabaseUnavailable"
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
                "400":
                  $ref: "#/components/responses/BadRequest"
                "401":
                  $ref: "#/components/responses/Unauthorized"
                "403":
                  $ref: "#/components/responses/Forbidden"
                "404":
                  $ref: "#/components/responses/NotFound"
                "409":
                  $ref: "#/components/responses/Conflict"
                "503":
                  $ref: "#/components/responses/DatabaseUnavailable"
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
              requestBody:
                required: true
                description: A JSON object; `{}` asks for one prefix of any traits.
                content:
                  application/json:
                    schema:
                      $ref: "#/components/schemas/AcquireRequest"
              responses:
                "201":
                  description: The new prefix leases in `prefixLeases` (and an empty `leases`).
                  content:
                    application/json:
                      schema:
                        $ref: "#/components/schemas/LeaseList"
                "400":
                  $ref: "#/components/responses/BadRequest"
                "401":
                  $ref: "#/components/responses/Unauthorized"
                "403":
                  $ref: "#/components/responses/Forbidden"
                "413":
                  $ref: "#/components/responses/ContentTooLarge"
                "503":
                  description: |
                    Not enough free prefixes for the request (the error says how many are free
                    for which traits), or the database is unavailable.
                  content:
                    application/json:
                      schema:
                        $ref: "#/components/schemas/ErrorBody"
          /v1/prefix-leases/{id}:
            delete:
              operationId: releasePrefix
              tags: [leases]
              summary: Release a prefix lease
              description: |
                Roles: host. Ends one of the calling host's prefix leases; the prefix goes into
                quarantine before anyone may have it again, as a slice does.
              x-roles: [host]
              parameters:
                - $ref: "#/components/parameters/LeaseID"
              responses:
                "204":
                  description: Released.
                "400":
                  $ref: "#/components/responses/BadRequest"
                "401":
                  $ref: "#/components/responses/Unauthorized"
                "403":
                  description: The token's role is not admitted, or the lease belongs to another host.
                  content:
                    application/json:
                      schema:
                        $ref: "#/components/schemas/ErrorBody"
                "404":
                  $ref: "#/components/responses/NotFound"
                "410":
                  $ref: "#/components/responses/Gone"
                "503":
                  $ref: "#/components/responses/DatabaseUnavailable"
        components:
          securitySchemes:
            bearerAuth:
              type: http
              scheme: bearer
              description: |
                The admin token (configured on the allocator), or a host's, an edge's or a
                viewer's token (`NAME.SECRET`, made by `POST /v1/hosts`, `POST /v1/edges` or
                `POST /v1/viewers`).
          parameters:
            Name:
              name: name
              in: path
              required: true
              description: The host's, edge's or viewer's name.
              schema:
                type: string
            LeaseID:
              name: id
              in: path
              required: true
              description: The lease's id.
              schema:
                type: integer
                format: int64
            Address:
              name: address
              in: path
              required: true
              description: The egress address, dotted decimal.
              schema:
                $ref: "#/components/schemas/IPv4Address"
            PrefixNetwork:
              name: network
              in: path
              required: true
              description: The IPv6 prefix's network address (its colons may be percent-encoded).
              schema:
                $ref: "#/components/schemas/IPv6Address"
            PrefixLength:
              name: length
              in: path
              required: true
              description: The IPv6 prefix's length.
              schema:
                type: integer
                minimum: 0
                maximum: 128
            IfNoneMatch:
              name: If-None-Match
              in: header
              required: false
              description: An `ETag` from an earlier answer; when it is still the current one, the answer is 304.
              schema:
                type: string
          headers:
            ETag:
              description: A tag of the answer's content, quoted; it changes when the content does.
              schema:
                type: string
                pattern: '^"[0-9a-f]{32}"$'
            CacheControl:
              description: How long caches may keep the answer.
              schema:
                type: string
                const: public, max-age=86400
          requestBodies:
            Renewal:
              required: false
              description: |
                The lease time asked for. An empty body (with `Content-Length: 0`) or `{}` asks
                for the allocator's default lease time.
              content:
                application/json:
                  schema:
                    $ref: "#/components/schemas/RenewRequest"
          responses:
            BadRequest:
              description: The input was refused; `field` names the field when one was at fault.
              content:
                application/json:
                  schema:
                    $ref: "#/components/schemas/ErrorBody"
            Unauthorized:
              description: "No `Authorization: Bearer TOKEN`, or a token the allocator does not know."
              content:
                application/json:
                  schema:
                    $ref: "#/components/schemas/ErrorBody"
            Forbidden:
              description: The token's role is not one the route admits.
              content:
                application/json:
                  schema:
                    $ref: "#/components/schemas/ErrorBody"
            NotFound:
              description: No such host, edge, viewer, lease, address or IPv6 prefix.
              content:
                application/json:
                  schema:
                    $ref: "#/components/schemas/ErrorBody"
            Conflict:
              description: |
                It already exists (host, edge, viewer, address, or an IPv6 prefix or one
                overlapping it), or an address or prefix still has leases or quarantines.
              content:
                application/json:
                  schema:
                    $ref: "#/components/schemas/ErrorBody"
            Gone:
              description: The lease has expired or was released; acquire a new one.
              content:
                application/json:
                  schema:
                    $ref: "#/components/schemas/ErrorBody"
            ContentTooLarge:
              description: The body is larger than 64 KiB.
              content:
                application/json:
                  schema:
                    $ref: "#/components/schemas/ErrorBody"
            DatabaseUnavailable:
              description: 'The database cannot be reached: `{"error": "database unavailable"}`.'
              content:
                application/json:
                  schema:
                    $ref: "#/components/schemas/ErrorBody"
          schemas:
            ErrorBody:
              type: object
              description: Every error answer.
              additionalProperties: false
              required: [error]
              properties:
                error:
                  type: string
                  description: What was wrong, in a sentence a person can act on.
                field:
                  type: string
                  description: The request field at fault, for bad input (`count`, `region`).
            NewHost:
              type: object
              description: The body of `POST /v1/hosts`.
              additionalProperties: false
              required: [name]
              properties:
                name:
                  $ref: "#/components/schemas/PrincipalName"
                labels:
                  type: [object, "null"]
                  description: Free-form labels kept with the host.
                  additionalProperties:
                    type: string
            NewEdge:
              type: object
              description: The body of `POST /v1/edges`.
              additionalProperties: false
              required: [name]
              properties:
                name:
                  $ref: "#/components/schemas/PrincipalName"
            NewViewer:
              type: object
              description: The body of `POST /v1/viewers`.
              additionalProperties: false
              required: [name]
              properties:
                name:
                  $ref: "#/components/schemas/PrincipalName"
            PrincipalName:
              type: string
              description: 1-63 characters of lower-case letters, digits, '-' and '.'.
              pattern: '^[a-z0-9.-]{1,63}$'
            IssuedToken:
              type: object
              description: A token made for a host, an edge or a viewer. Shown once; the allocator keeps only its hash.
              additionalProperties: false
              required: [name, token]
              properties:
                name:
                  type: string
                token:
                  type: string
                  description: '`NAME.SECRET`; send it as `Authorization: Bearer TOKEN`.'
            AcquireRequest:
              type: object
              description: |
                The body of `POST /v1/leases`: how many slices, for how long, of which traits.
                The trait fields sit beside the others (`{"count": 2, "country": "US"}`); each
                left out matches any value. Null counts as absent.
              additionalProperties: false
              properties:
                count:
                  type: [integer, "null"]
                  minimum: 1
                  maximum: 64
                  description: How many slices (1 when absent).
                ttlSeconds:
                  type: [integer, "null"]
                  format: int64
                  minimum: 10
                  maximum: 86400
                  description: Lease time in seconds (the allocator's default when absent).
                country:
                  $ref: "#/components/schemas/RequestCountryCode"
                region:
                  $ref: "#/components/schemas/RequestRegionCode"
                city:
                  type: [string, "null"]
                category:
                  $ref: "#/components/schemas/RequestCategory"
                reputation:
                  $ref: "#/components/schemas/RequestReputationTier"
                tags:
                  type: [array, "null"]
                  items:
                    type: string
            RenewRequest:
              type: object
              description: The body of the renewals.
              additionalProperties: false
              properties:
                ttlSeconds:
                  type: [integer, "null"]
                  format: int64
                  minimum: 10
                  maximum: 86400
                  description: Lease time in seconds from now (the allocator's default when absent).
            LeaseBody:
              type: object
              description: A lease as the API shows it.
              additionalProperties: false
              required: [id, host, address, slice, ports, start, expires]
              properties:
                id:
                  type: integer
                  format: int64
                host:
                  type: string
                  description: The host that holds it.
                address:
                  $ref: "#/components/schemas/IPv4Address"
                slice:
                  type: integer
                  minimum: 0
                  description: The slice's index on its address.
                ports:
                  $ref: "#/components/schemas/PortSet"
                start:
                  type: integer
                  format: int64
                  description: When the lease began, in milliseconds since 1970.
                expires:
                  type: integer
                  format: int64
                  description: When it ends unless renewed, in milliseconds since 1970.
                traits:
                  $ref: "#/components/schemas/Traits"
                  description: The traits of the slice's address (absent in answers from older allocators).
            LeaseList:
              type: object
              description: Leases of slices and of IPv6 prefixes.
              additionalProperties: false
              required: [leases]
              properties:
                leases:
                  type: array
                  items:
                    $ref: "#/components/schemas/LeaseBody"
                prefixLeases:
                  type: array
                  description: Leases of IPv6 prefixes (absent in answers from older allocators).
                  items:
                    $ref: "#/components/schemas/PrefixLeaseBody"
            PrefixLeaseBody:
              type: object
              description: A lease of an IPv6 prefix as the API shows it.
              additionalProperties: false
              required: [id, host, prefix, start, expires]
              properties:
                id:
                  type: integer
                  format: int64
                host:
                  type: string
                  description: The host that holds it.
                prefix:
                  $ref: "#/components/schemas/IPv6Prefix"
                start:
                  type: integer
                  format: int64
                  description: When the lease began, in milliseconds since 1970.
                expires:
                  type: integer
                  format: int64
                  description: When it ends unless renewed, in milliseconds since 1970.
                traits:
                  $ref: "#/components/schemas/Traits"
                  description: The traits of the pool prefix it was cut from.
            NewPrefix:
              type: object
              description: |
                The body of `POST /v1/prefixes`: an IPv6 prefix, its traits (beside the other
                fields, as in `AcquireRequest`) and the length leased out of it. Null counts as
                absent.
              additionalProperties: false
              required: [prefix]
              properties:
                prefix:
                  $ref: "#/components/schemas/IPv6Prefix"
                leaseLength:
                  type: [integer, "null"]
                  minimum: 1
                  maximum: 64
                  description: Bits of each leased prefix, longer than `prefix` (the allocator's `--prefix-length` when absent).
                country:
                  $ref: "#/components/schemas/RequestCountryCode"
                region:
                  $ref: "#/components/schemas/RequestRegionCode"
                city:
                  type: [string, "null"]
                category:
                  $ref: "#/components/schemas/RequestCategory"
                reputation:
                  $ref: "#/components/schemas/RequestReputationTier"
                tags:
                  type: [array, "null"]
                  items:
                    type: string
            PoolPrefixBody:
              type: object
              description: An IPv6 prefix of the pool as `GET /v1/prefixes` shows it.
              additionalProperties: false
              required: [prefix, traits, summary, leaseLength, draining]
              properties:
                prefix:
                  $ref: "#/components/schemas/IPv6Prefix"
                traits:
                  $ref: "#/components/schemas/Traits"
                summary:
                  type: string
                  description: The traits in a line, as tables print them (the trait class's name).
                leaseLength:
                  type: integer
                  minimum: 1
                  maximum: 64
                  description: Bits of each prefix leased out of it.
                draining:
                  type: boolean
                  description: Being drained, it takes no new leases; it can be removed once its leases and quarantines end.
            PrefixList:
              type: object
              description: The answer of `GET /v1/prefixes`.
              additionalProperties: false
              required: [prefixes]
              properties:
                prefixes:
                  type: array
                  items:
                    $ref: "#/components/schemas/PoolPrefixBody"
            NewAddress:
              type: object
              description: |
                The body of `POST /v1/pool`: an address, its traits (beside the other fields, as
                in `AcquireRequest`) and how to cut it. Null counts as absent.
              additionalProperties: false
              required: [address]
              properties:
                address:
                  $ref: "#/components/schemas/IPv4Address"
                range:
                  anyOf:
                    - $ref: "#/components/schemas/PortRange"
                    - type: "null"
                  description: The ports to cut into slices (1024-65535 when absent).
                sliceSize:
                  type: [integer, "null"]
                  minimum: 1
                  description: Ports per slice (2048 when neither this nor `slices` is given).
                slices:
                  type: [integer, "null"]
                  minimum: 1
                  description: How many slices to cut the range into, instead of `sliceSize`.
                country:
                  $ref: "#/components/schemas/RequestCountryCode"
                region:
                  $ref: "#/components/schemas/RequestRegionCode"
                city:
                  type: [string, "null"]
                category:
                  $ref: "#/components/schemas/RequestCategory"
                reputation:
                  $ref: "#/components/schemas/RequestReputationTier"
                tags:
                  type: [array, "null"]
                  items:
                    type: string
            HostBody:
              type: object
              description: A host as `GET /v1/hosts` shows it.
              additionalProperties: false
              required: [name, labels, leases, prefixLeases, renewalLate, wants]
              properties:
                name:
                  type: string
                labels:
                  type: object
                  description: Free-form labels kept with the host.
                  additionalProperties:
                    type: string
                leases:
                  type: integer
                  minimum: 0
                  description: Slice leases it holds now.
                prefixLeases:
                  type: integer
                  minimum: 0
                  description: IPv6 prefix leases it holds now.
                lastRenewal:
                  type: integer
                  format: int64
                  description: |
                    When it last renewed (or acquired) a lease it holds now, in milliseconds
                    since 1970; absent when it holds none.
                renewalLate:
                  type: boolean
                  description: |
                    It holds leases and has not renewed for more than half the lease time it
                    asked for (agents renew every third of it): its leases are at risk.
                wants:
                  type: array
                  description: The trait classes its current leases were asked for.
                  items:
                    $ref: "#/components/schemas/Traits"
            HostList:
              type: object
              description: The answer of `GET /v1/hosts`.
              additionalProperties: false
              required: [hosts]
              properties:
                hosts:
                  type: array
                  items:
                    $ref: "#/components/schemas/HostBody"
            EdgeBody:
              type: object
              description: |
                An edge as `GET /v1/edges` shows it: the table version it reported applying when
                it last polled `GET /v1/slices?applied=VERSION`.
              additionalProperties: false
              required: [name]
              properties:
                name:
                  type: string
                appliedVersion:
                  type: integer
                  format: int64
                  minimum: 0
                  description: The table version in its kernel; absent until the edge reports.
                lastReport:
                  type: integer
                  format: int64
                  description: When it last reported, in milliseconds since 1970; absent until it reports.
                versionsBehind:
                  type: integer
                  format: int64
                  minimum: 0
                  description: How many table versions it is behind the current one; absent until it reports.
            EdgeList:
              type: object
              description: The answer of `GET /v1/edges`.
              additionalProperties: false
              required: [tableVersion, edges]
              properties:
                tableVersion:
                  type: integer
                  format: int64
                  description: The slice table's version now.
                edges:
                  type: array
                  items:
                    $ref: "#/components/schemas/EdgeBody"
            PoolAddressBody:
              type: object
              description: An address of the pool as `GET /v1/pool` shows it.
              additionalProperties: false
              required: [address, traits, summary, draining]
              properties:
                address:
                  $ref: "#/components/schemas/IPv4Address"
                traits:
                  $ref: "#/components/schemas/Traits"
                summary:
                  type: string
                  description: The traits in a line, as tables print them (the trait class's name).
                draining:
                  type: boolean
                  description: Being drained, it takes no new leases; it leaves the pool once its leases end.
            PoolList:
              type: object
              description: The answer of `GET /v1/pool`.
              additionalProperties: false
              required: [addresses]
              properties:
                addresses:
                  type: array
                  items:
                    $ref: "#/components/schemas/PoolAddressBody"
            Geofeed:
              type: string
              description: |
                RFC 8805 CSV: one line per prefix with exactly the five columns
                `prefix,country,region,city,postal` (empty when unknown), each line ending in a
                line feed; a field holding a comma, quote or line break is quoted as RFC 4180 says.
              pattern: '^([0-9A-Fa-f.:]+/[0-9]{1,3}(,("([^"]|"")*"|[^,"\\r\\n]*)){4}\\n)*$'
            Holders:
              type: object
              description: The answer of `GET /v1/who`.
              additionalProperties: false
              required: [records]
              properties:
                records:
                  type: array
                  description: Slice records, for an IPv4 address (empty for an IPv6 one).
                  items:
                    $ref: "#/components/schemas/AssignmentRecord"
                prefixRecords:
                  type: array
                  description: Prefix records, for an IPv6 address (absent for an IPv4 one).
                  items:
                    $ref: "#/components/schemas/PrefixAssignmentRecord"
            PrefixAssignmentRecord:
              type: object
              description: |
                One line of the prefix assignment log: who held which IPv6 prefix (every address
                and port in it) from `start` until `end` (absent while held).
              additionalProperties: false
              required: [leaseID, host, prefix, start]
              properties:
                leaseID:
                  type: integer
                  format: int64
                host:
                  type: string
                prefix:
                  $ref: "#/components/schemas/IPv6Prefix"
                start:
                  $ref: "#/components/schemas/Moment"
                end:
                  $ref: "#/components/schemas/Moment"
            ClassCapacity:
              type: object
              description: Slices of one trait class per state, with a warning when few are left.
              additionalProperties: false
              required: [traits, summary, free, leased, quarantined, draining]
              properties:
                traits:
                  $ref: "#/components/schemas/Traits"
                summary:
                  type: string
                  description: The traits in a line, as tables print them (`US/US-CA/Los Angeles, residential, reputation high`).
                free:
                  type: integer
                  minimum: 0
                leased:
                  type: integer
                  minimum: 0
                quarantined:
                  type: integer
                  minimum: 0
                draining:
                  type: integer
                  minimum: 0
                warning:
                  type: string
                  description: Present when the class has no free slice or few are left.
            CapacityReport:
              type: object
              description: The answer of `GET /v1/capacity`.
              additionalProperties: false
              required: [classes]
              properties:
                classes:
                  type: array
                  items:
                    $ref: "#/components/schemas/ClassCapacity"
            Readiness:
              type: object
              description: The answer of `GET /readyz`.
              additionalProperties: false
              required: [ready]
              properties:
                ready:
                  type: boolean
                reason:
                  type: string
                  description: Why not, when not.
            SliceTable:
              type: object
              description: What edges steer by.
              additionalProperties: false
              required: [version, slices, prefixes]
              properties:
                version:
                  type: integer
                  format: int64
                  description: Grows whenever a slice or prefix changes hands or addresses come and go.
                slices:
                  type: array
                  items:
                    $ref: "#/components/schemas/SliceTableEntry"
                prefixes:
                  type: array
                  description: |
                    Every leased or quarantined IPv6 prefix, in address order (a free one is not
                    listed). Readers should take its absence, from older allocators, as none.
                  items:
                    $ref: "#/components/schemas/SliceTablePrefixEntry"
            SliceTablePrefixEntry:
              type: object
              description: One leased or quarantined IPv6 prefix of the table.
              additionalProperties: false
              required: [prefix, state]
              properties:
                prefix:
                  $ref: "#/components/schemas/IPv6Prefix"
                state:
                  $ref: "#/components/schemas/SliceStatus"
                host:
                  type: string
                  description: The holder, when leased.
            SliceTableEntry:
              type: object
              description: One slice of the table.
              additionalProperties: false
              required: [address, index, ports, state]
              properties:
                address:
                  $ref: "#/components/schemas/IPv4Address"
                index:
                  type: integer
                  minimum: 0
                ports:
                  $ref: "#/components/schemas/PortSet"
                state:
                  $ref: "#/components/schemas/SliceStatus"
                host:
                  type: string
                  description: The holder, when leased.
            SliceStatus:
              type: string
              description: |
                free: can be leased. leased: held by `host`. quarantined: released or expired,
                nobody may have it yet (RFC 6888 REQ-8). draining: free, but its address takes
                no new leases.
              enum: [free, leased, quarantined, draining]
            AssignmentRecord:
              type: object
              description: |
                One line of the append-only assignment log (RFC 6888 section 4, RFC 7422): who
                held which ports of which address, for both TCP and UDP, from `start` until `end`
                (absent while held).
              additionalProperties: false
              required: [leaseID, host, slice, ports, protocols, start]
              properties:
                leaseID:
                  type: integer
                  format: int64
                host:
                  type: string
                slice:
                  $ref: "#/components/schemas/SliceID"
                ports:
                  $ref: "#/components/schemas/PortSet"
                protocols:
                  type: string
                  description: The transports the lease covered, comma-separated (`tcp,udp`).
                start:
                  $ref: "#/components/schemas/Moment"
                end:
                  $ref: "#/components/schemas/Moment"
            SliceID:
              type: object
              description: One slice of one address.
              additionalProperties: false
              required: [address, index]
              properties:
                address:
                  $ref: "#/components/schemas/IPv4Address"
                index:
                  type: integer
                  minimum: 0
            Moment:
              type: object
              description: A point in time, as an object (unlike the bare numbers of `LeaseBody`).
              additionalProperties: false
              required: [milliseconds]
              properties:
                milliseconds:
                  type: integer
                  format: int64
                  description: Milliseconds since 1970-01-01 UTC.
            Traits:
              type: object
              description: The traits of an address, as answers show them.
              additionalProperties: false
              required: [category, tags]
              properties:
                country:
                  $ref: "#/components/schemas/CountryCode"
                region:
                  $ref: "#/components/schemas/RegionCode"
                city:
                  type: string
                category:
                  $ref: "#/components/schemas/Category"
                reputation:
                  $ref: "#/components/schemas/ReputationTier"
                tags:
                  type: array
                  description: Free-form labels, sorted and without duplicates.
                  items:
                    type: string
            Category:
              type: string
              description: What kind of network an address appears to belong to.
              enum: [residential, mobile, business, hosting, unknown]
            ReputationTier:
              type: string
              description: How well an address is regarded by reputation services, best first.
              enum: [high, medium, low]
            CountryCode:
              type: string
              description: An ISO 3166-1 alpha-2 code, upper case (XK for Kosovo too).
              pattern: '^[A-Z]{2}$'
            RegionCode:
              type: string
              description: An ISO 3166-2 code, upper case; it starts with its country's code.
              pattern: '^[A-Z]{2}-[A-Z0-9]{1,3}$'
            RequestCountryCode:
              type: [string, "null"]
              description: An ISO 3166-1 alpha-2 code, in either letter case.
              pattern: '^[A-Za-z]{2}$'
            RequestRegionCode:
              type: [string, "null"]
              description: An ISO 3166-2 code in either letter case; needs `country`, and must belong to it.
              pattern: '^[A-Za-z]{2}-[A-Za-z0-9]{1,3}$'
            RequestCategory:
              type: [string, "null"]
              description: A `Category`, in any letter case (`unknown` when absent).
              pattern: '^([Rr][Ee][Ss][Ii][Dd][Ee][Nn][Tt][Ii][Aa][Ll]|[Mm][Oo][Bb][Ii][Ll][Ee]|[Bb][Uu][Ss][Ii][Nn][Ee][Ss][Ss]|[Hh][Oo][Ss][Tt][Ii][Nn][Gg]|[Uu][Nn][Kk][Nn][Oo][Ww][Nn])$'
            RequestReputationTier:
              type: [string, "null"]
              description: A `ReputationTier`, in any letter case.
              pattern: '^([Hh][Ii][Gg][Hh]|[Mm][Ee][Dd][Ii][Uu][Mm]|[Ll][Oo][Ww])$'
            IPv4Address:
              type: string
              format: ipv4
              description: Strict dotted decimal, no leading zeros.
              pattern: '^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])[.]){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])$'
            IPv6Address:
              type: string
              format: ipv6
              description: An IPv6 address; answers give the RFC 5952 form (lower case, `::` for the longest zero run).
              pattern: '^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*$'
            IPv6Prefix:
              type: string
              description: '`NETWORK/LENGTH` with no bits set past the length (`2001:db8:10::/48`).'
              pattern: '^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*/(0|[1-9][0-9]?|1[01][0-9]|12[0-8])$'
            PortRange:
              type: string
              description: '`LOW-HIGH` or a single port, decimal without leading zeros (`20000-23999`).'
              pattern: '^(0|[1-9][0-9]{0,4})(-(0|[1-9][0-9]{0,4}))?$'
            PortSet:
              type: string
              description: |
                Comma-separated ports and ranges, ascending and disjoint (`20000-20999` for a
                contiguous slice, `1232-1235,2256-2259` for an RFC 7597 port set).
              pattern: '^(0|[1-9][0-9]{0,4})(-(0|[1-9][0-9]{0,4}))?(,(0|[1-9][0-9]{0,4})(-(0|[1-9][0-9]{0,4}))?)*$'
        """
}
