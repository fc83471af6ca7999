import Testing
@testable import PortSliceCLI

@Suite("TOML settings file")
struct ConfigFileTests {
    static let keys = ServeCommand.configKeys

    @Test func readsTopLevelSettings() throws {
        let file = try ConfigFile(text: """
            # portslice serve settings
            data_dir = "/var/lib/portslice"   # where leases live
            listen = "127.0.0.1:7300"
            slice_size = 4_096
            database = "postgres://alloc@db.example/portslice#x"

            """, source: "serve.toml", allowed: Self.keys)
        #expect(try file.string("data_dir") == "/var/lib/portslice")
        #expect(try file.string("listen") == "127.0.0.1:7300")
        #expect(try file.integer("slice_size") == 4096)
        #expect(try file.string("database") == "postgres://alloc@db.example/portslice#x")
        #expect(try file.string("pool") == nil)
    }

    @Test(arguments: [
        ("[serve]\nlisten = \"x\"", "serve.toml:1: tables are not supported; put the settings at the top level"),
        ("listen \"x\"", "serve.toml:1: expected KEY = VALUE"),
        ("\nport = 7300", "serve.toml:2: unknown setting 'port'; the settings are data_dir, listen, database, pool, slice_size, prefix_length, quarantine_seconds, tls_cert, tls_key"),
        ("listen = \"a\"\nlisten = \"b\"", "serve.toml:2: 'listen' is set twice"),
        ("listen = 127.0.0.1", "serve.toml:1: the value of 'listen' must be a \"string\", an integer, true or false"),
        ("listen = \"open", "serve.toml:1: the value of 'listen' must be a \"string\", an integer, true or false"),
    ])
    func badLinesAreNamed(text: String, message: String) {
        #expect(throws: CommandFailure.self) { try ConfigFile(text: text, source: "serve.toml", allowed: Self.keys) }
        do {
            _ = try ConfigFile(text: text, source: "serve.toml", allowed: Self.keys)
        } catch {
            #expect("\(error)" == message)
        }
    }

    @Test func typesAreChecked() throws {
        let file = try ConfigFile(text: "slice_size = \"big\"\nlisten = 7300", source: "s", allowed: Self.keys)
        #expect(throws: CommandFailure.self) { try file.integer("slice_size") }
        #expect(throws: CommandFailure.self) { try file.string("listen") }
    }
}
