// Pieces of the OpenAPI document that several schemas or paths share, each written once.
extension OpenAPIDocument {
    /// The trait fields of a request body, beside its other fields; each may be null.
    static let requestTraits = hanging("""
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
        """)

    /// A lease's id and the host that holds it (of a slice or a prefix).
    static let leaseHolder = hanging("""
                id:
                  type: integer
                  format: int64
                host:
                  type: string
                  description: The host that holds it.
        """)

    /// When a lease (of a slice or a prefix) began and when it ends.
    static let leaseTimes = hanging("""
                start:
                  type: integer
                  format: int64
                  description: When the lease began, in milliseconds since 1970.
                expires:
                  type: integer
                  format: int64
                  description: When it ends unless renewed, in milliseconds since 1970.
        """)

    /// The lease and host of an assignment-log record (of slices or of a prefix).
    static let recordHolder = hanging("""
                leaseID:
                  type: integer
                  format: int64
                host:
                  type: string
        """)

    /// When an assignment-log record's lease began and ended (`end` absent while held).
    static let recordSpan = hanging("""
                start:
                  $ref: "#/components/schemas/Moment"
                end:
                  $ref: "#/components/schemas/Moment"
        """)

    /// Which slice: its address and its index on the address.
    static let sliceOfAddress = hanging("""
                address:
                  $ref: "#/components/schemas/IPv4Address"
                index:
                  type: integer
                  minimum: 0
        """)

    /// The answer of `GET PATH`: an object whose one field, `field`, is an array of `items`.
    static func list(answering path: String, in field: String, of items: String) -> String {
        hanging("""
                  type: object
                  description: The answer of `GET \(path)`.
                  additionalProperties: false
                  required: [\(field)]
                  properties:
                    \(field):
                      type: array
                      items:
                        $ref: "#/components/schemas/\(items)"
            """)
    }

    /// The body of `POST PATH` that makes a host, an edge or a viewer: its name (and no more
    /// fields unless they follow).
    static func namedBody(of path: String) -> String {
        hanging("""
                  type: object
                  description: The body of `POST \(path)`.
                  additionalProperties: false
                  required: [name]
                  properties:
                    name:
                      $ref: "#/components/schemas/PrincipalName"
            """)
    }
}
