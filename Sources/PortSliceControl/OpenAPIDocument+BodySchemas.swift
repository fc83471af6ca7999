extension OpenAPIDocument {
    /// `components/schemas`, first part: the request and answer bodies.
    static let bodySchemas = """
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
              \(namedBody(of: "/v1/hosts"))
                labels:
                  type: [object, "null"]
                  description: Free-form labels kept with the host.
                  additionalProperties:
                    type: string
            NewEdge:
              \(namedBody(of: "/v1/edges"))
            NewViewer:
              \(namedBody(of: "/v1/viewers"))
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
                \(requestTraits)
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
                \(leaseHolder)
                address:
                  $ref: "#/components/schemas/IPv4Address"
                slice:
                  type: integer
                  minimum: 0
                  description: The slice's index on its address.
                ports:
                  $ref: "#/components/schemas/PortSet"
                \(leaseTimes)
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
                \(leaseHolder)
                prefix:
                  $ref: "#/components/schemas/IPv6Prefix"
                \(leaseTimes)
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
                \(requestTraits)
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
              \(list(answering: "/v1/prefixes", in: "prefixes", of: "PoolPrefixBody"))
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
                \(requestTraits)
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
              \(list(answering: "/v1/hosts", in: "hosts", of: "HostBody"))
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
              \(list(answering: "/v1/pool", in: "addresses", of: "PoolAddressBody"))
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
                \(recordHolder)
                prefix:
                  $ref: "#/components/schemas/IPv6Prefix"
                \(recordSpan)
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
              \(list(answering: "/v1/capacity", in: "classes", of: "ClassCapacity"))
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
                \(sliceOfAddress)
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
                \(recordHolder)
                slice:
                  $ref: "#/components/schemas/SliceID"
                ports:
                  $ref: "#/components/schemas/PortSet"
                protocols:
                  type: string
                  description: The transports the lease covered, comma-separated (`tcp,udp`).
                \(recordSpan)
            SliceID:
              type: object
              description: One slice of one address.
              additionalProperties: false
              required: [address, index]
              properties:
                \(sliceOfAddress)
        """
}
