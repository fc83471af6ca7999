// IPv6 addresses and prefixes travel as their text (RFC 5952 form), as IPv4 addresses do, so
// a body reads the way an operator writes it.

extension IPv6Address: CodableAsText {}

extension Prefix: CodableAsText {}
