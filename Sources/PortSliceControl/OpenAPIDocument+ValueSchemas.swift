extension OpenAPIDocument {
    /// `components/schemas`, second part: the values the bodies are made of (moments, traits,
    /// addresses, ports), each with the pattern or range its text must match.
    static let valueSchemas = """
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
