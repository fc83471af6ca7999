extension OpenAPIDocument {
    /// The parameters, responses, headers, schemas and security scheme the operations share.
    static let components = [sharedComponents, bodySchemas, valueSchemas].joined(separator: "\n")

    /// The security scheme, and the parameters, headers, request bodies and error answers.
    static let sharedComponents = """
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
              \(json("RenewRequest", at: 6))
          responses:
            BadRequest:
              description: The input was refused; `field` names the field when one was at fault.
              \(json("ErrorBody", at: 6))
            Unauthorized:
              description: "No `Authorization: Bearer TOKEN`, or a token the allocator does not know."
              \(json("ErrorBody", at: 6))
            Forbidden:
              description: The token's role is not one the route admits.
              \(json("ErrorBody", at: 6))
            NotFound:
              description: No such host, edge, viewer, lease, address or IPv6 prefix.
              \(json("ErrorBody", at: 6))
            Conflict:
              description: |
                It already exists (host, edge, viewer, address, or an IPv6 prefix or one
                overlapping it), or an address or prefix still has leases or quarantines.
              \(json("ErrorBody", at: 6))
            Gone:
              description: The lease has expired or was released; acquire a new one.
              \(json("ErrorBody", at: 6))
            ContentTooLarge:
              description: The body is larger than 64 KiB.
              \(json("ErrorBody", at: 6))
            DatabaseUnavailable:
              description: 'The database cannot be reached: `{"error": "database unavailable"}`.'
              \(json("ErrorBody", at: 6))
        """
}
