import Testing
@testable import PortSliceStore

/// libpq-style database URLs: several servers, sslmode, and mistakes named.
@Suite("PostgreSQL URLs")
struct PostgresURLTests {
    @Test func severalServersInOrder() throws {
        let url = try PostgresURL(parsing: "postgres://alloc:p%40ss@db1,db2:5433,[2001:db8::5]:6432/portslice?sslmode=verify-full&sslrootcert=/etc/ca.pem")
        #expect(url.servers.map(\.description) == ["db1:5432", "db2:5433", "[2001:db8::5]:6432"])
        #expect(url.user == "alloc" && url.password == "p@ss" && url.database == "portslice")
        #expect(url.tlsMode == .verifyFull && url.rootCertificateFile == "/etc/ca.pem")
        #expect(url.description == "postgres://alloc@db1:5432,db2:5433,[2001:db8::5]:6432/portslice?sslmode=verify-full", "no password in messages")
    }

    @Test func defaults() throws {
        let url = try PostgresURL(parsing: "postgresql://postgres@127.0.0.1")
        #expect(url.servers.map(\.description) == ["127.0.0.1:5432"])
        #expect(url.password == nil && url.database == nil)
        #expect(url.tlsMode == .prefer, "libpq's default")
    }

    @Test(arguments: [
        ("mysql://u@h/db", "must start with postgres://"),
        ("postgres://h/db", "names no user"),
        ("postgres://u@h:99999/db", "port '99999' is not 1-65535"),
        ("postgres://u@h,/db", "a host is empty"),
        ("postgres://u@h/db?sslmode=sometimes", "sslmode 'sometimes' is not one of disable, prefer, require, verify-ca, verify-full"),
        ("postgres://u@h/db?sslrootcert=/ca.pem", "sslrootcert is given but sslmode is prefer"),
        ("postgres://u@h/db?pool=9", "query item 'pool' is not supported"),
    ])
    func mistakesAreNamed(text: String, reason: String) {
        #expect { try PostgresURL(parsing: text) } throws: { "\($0)".contains(reason) }
    }
}
