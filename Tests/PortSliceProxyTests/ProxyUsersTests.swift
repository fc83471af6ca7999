import Foundation
import Logging
import NIOCore
import NIOPosix
import PortSliceCore
import PortSliceSockets
import Testing
@testable import PortSliceProxy

/// The users file and password checks: bcrypt hashes only, the 72-byte limit, the decoy for
/// unknown names, and credentials remembered by HMAC. Hashes at cost 4, bcrypt's cheapest.
@Suite("proxy users")
struct ProxyUsersTests {
    static let cost = 4
    static let alicePassword = Array("s3cret".utf8)
    /// 72 bytes: as long as bcrypt reads.
    static let longestPassword = Array(String(repeating: "0123456789ab", count: 6).utf8)

    static func usersText() throws -> String {
        """
        # the proxy's users

        alice:\(try ProxyUsers.hash(password: alicePassword, cost: cost))
        carol:\(try ProxyUsers.hash(password: longestPassword, cost: cost))
        """
    }

    func verify(_ users: ProxyUsers, _ user: String, _ password: [UInt8]) async throws -> PasswordVerdict {
        try await verify(users, Array(user.utf8), password)
    }

    func verify(_ users: ProxyUsers, _ user: [UInt8], _ password: [UInt8]) async throws -> PasswordVerdict {
        let verdict = await withCheckedContinuation { (done: CheckedContinuation<PasswordVerdict?, Never>) in
            users.verify(user: user, password: password, on: .singleton) { done.resume(returning: $0) }
        }
        return try #require(verdict, "the thread pool is running")
    }

    @Test("a file of bcrypt lines, comments and blank lines is read; each user's password is accepted, a wrong one refused")
    func parsesAndVerifies() async throws {
        let users = try ProxyUsers(parsing: try Self.usersText() + "\n", file: "users.txt")
        #expect(try await verify(users, "alice", Self.alicePassword) == .accepted)
        #expect(try await verify(users, "carol", Self.longestPassword) == .accepted)
        #expect(try await verify(users, "alice", Array("s3creT".utf8)) == .refused)
        #expect(try await verify(users, "alice", Self.longestPassword) == .refused)
    }

    @Test("a plain-text password is refused, naming the file, the line and `portslice users add`")
    func plainTextRefused() throws {
        let text = try Self.usersText() + "\nbob:hunter2\n"
        #expect(throws: ProxyUsersError.notAHash(name: "bob", file: "/etc/portslice/users", line: 5)) {
            try ProxyUsers(parsing: text, file: "/etc/portslice/users")
        }
        #expect(ProxyUsersError.notAHash(name: "bob", file: "/etc/portslice/users", line: 5).description
            == "/etc/portslice/users line 5: the password of 'bob' is not a bcrypt hash (plain-text passwords are refused); "
            + "set it with `portslice users add bob --file /etc/portslice/users`")
        // Not even a hash of another kind, nor one with a cost bcrypt does not take.
        let hash = try ProxyUsers.hash(password: Self.alicePassword, cost: Self.cost)
        for value in [hash.replacingOccurrences(of: "$2b$", with: "$2y$"), hash.replacingOccurrences(of: "$04$", with: "$03$"), String(hash.dropLast())] {
            #expect(throws: ProxyUsersError.notAHash(name: "dave", file: "f", line: 1)) { try ProxyUsers(parsing: "dave:\(value)", file: "f") }
        }
    }

    @Test("a line without a colon, a name not allowed, a name twice, and a file without users are refused")
    func malformedFilesRefused() throws {
        let hash = try ProxyUsers.hash(password: Self.alicePassword, cost: Self.cost)
        #expect(throws: ProxyUsersError.malformedLine(file: "f", line: 2)) { try ProxyUsers(parsing: "alice:\(hash)\nbob", file: "f") }
        #expect(throws: ProxyUsersError.badName(file: "f", line: 1, .empty)) { try ProxyUsers(parsing: ":\(hash)", file: "f") }
        #expect(throws: ProxyUsersError.badName(file: "f", line: 1, .tooLong(bytes: 256))) {
            try ProxyUsers(parsing: String(repeating: "a", count: 256) + ":\(hash)", file: "f")
        }
        #expect(throws: ProxyUsersError.badName(file: "f", line: 1, .controlCharacter)) { try ProxyUsers(parsing: "al\u{7}ice:\(hash)", file: "f") }
        #expect(throws: ProxyUsersError.badName(file: "f", line: 1, .surroundingWhiteSpace)) { try ProxyUsers(parsing: "alice :\(hash)", file: "f") }
        #expect(throws: ProxyUsersError.duplicateName("alice", file: "f", line: 3, firstLine: 1)) {
            try ProxyUsers(parsing: "alice:\(hash)\n# again\nalice:\(hash)\n", file: "f")
        }
        #expect(throws: ProxyUsersError.noUsers(file: "f")) { try ProxyUsers(parsing: "# nobody yet\n\n", file: "f") }
        #expect(UserNameProblem(of: "#alice") == .commentMark)
        #expect(UserNameProblem(of: "a:b") == .colon)
        #expect(UserNameProblem(of: String(repeating: "é", count: 127)) == nil, "254 bytes")
    }

    @Test("a password with 256 extra bytes, or one, is refused without bcrypt: bcrypt would read only its first 72 bytes")
    func extraBytesRefused() async throws {
        let users = try ProxyUsers(parsing: try Self.usersText(), file: "users.txt")
        #expect(try await verify(users, "alice", Self.alicePassword + [UInt8](repeating: UInt8(ascii: "x"), count: 256)) == .impossible)
        #expect(try await verify(users, "alice", Self.alicePassword + Array("!".utf8)) == .refused)
        #expect(try await verify(users, "carol", Self.longestPassword) == .accepted)
        #expect(try await verify(users, "carol", Self.longestPassword + Array("!".utf8)) == .impossible)
        #expect(try await verify(users, "carol", Self.longestPassword + [UInt8](repeating: 0, count: 256)) == .impossible)
        // bcrypt takes a C string: after a NUL byte it would read nothing more.
        #expect(try await verify(users, "alice", Self.alicePassword + [0] + Array("anything".utf8)) == .impossible)
        #expect(try await verify(users, "alice", []) == .impossible)
        #expect(try await verify(users, "alice", [0xff, 0xfe]) == .impossible, "not UTF-8")
    }

    @Test("an unknown name runs bcrypt against the decoy, as a known one does, and is refused")
    func unknownUserCostsBcrypt() async throws {
        let users = try ProxyUsers(parsing: try Self.usersText(), file: "users.txt")
        #expect(try await verify(users, "mallory", Self.alicePassword) == .refused)
        #expect(try await verify(users, [0xff], Self.alicePassword) == .refused)
    }

    @Test("credentials accepted once are remembered: the second check runs no bcrypt; a wrong password after them still does, and is refused")
    func acceptedCredentialsRemembered() async throws {
        let users = try ProxyUsers(parsing: try Self.usersText(), file: "users.txt")
        #expect(try await verify(users, "alice", Self.alicePassword) == .accepted)
        #expect(try await verify(users, "alice", Self.alicePassword) == .remembered)
        #expect(try await verify(users, "alice", Array("wrong".utf8)) == .refused)
        #expect(try await verify(users, "alice", Self.alicePassword + Array("x".utf8)) == .refused)
        #expect(try await verify(users, "alice", Self.alicePassword) == .remembered, "a refusal forgets nothing")
        // Remembered for one user, not for another with the same password.
        #expect(try await verify(users, "carol", Self.alicePassword) == .refused)
        // A refusal is never remembered.
        #expect(try await verify(users, "carol", Self.alicePassword) == .refused)
    }

    @Test("remembered credentials expire: then bcrypt runs again")
    func rememberedCredentialsExpire() async throws {
        let users = try ProxyUsers(parsing: try Self.usersText(), file: "users.txt", rememberFor: .zero)
        #expect(try await verify(users, "alice", Self.alicePassword) == .accepted)
        #expect(try await verify(users, "alice", Self.alicePassword) == .accepted)
    }

    @Test("a new hash refuses passwords no check could accept")
    func hashRefusesUnusablePasswords() throws {
        #expect(throws: ProxyUsersError.emptyPassword) { try ProxyUsers.hash(password: [], cost: Self.cost) }
        #expect(throws: ProxyUsersError.passwordTooLong(bytes: 73)) { try ProxyUsers.hash(password: Self.longestPassword + [0x21], cost: Self.cost) }
        #expect(throws: ProxyUsersError.passwordHoldsNUL) { try ProxyUsers.hash(password: [0x61, 0, 0x62], cost: Self.cost) }
        #expect(throws: ProxyUsersError.passwordNotUTF8) { try ProxyUsers.hash(password: [0xc3], cost: Self.cost) }
        #expect(throws: ProxyUsersError.costOutOfRange(3)) { try ProxyUsers.hash(password: Self.alicePassword, cost: 3) }
        #expect(ProxyUsers.bcryptCost(of: try ProxyUsers.hash(password: Self.alicePassword, cost: Self.cost)) == Self.cost)
    }

    @Test("lines of a users file: blank, comment, NAME:VALUE split at the first colon, or malformed")
    func usersFileLines() {
        #expect(UsersFileLine("") == .blankOrComment)
        #expect(UsersFileLine("  \t") == .blankOrComment)
        #expect(UsersFileLine("  # alice:x") == .blankOrComment)
        #expect(UsersFileLine("alice:a:b") == .user(name: "alice", value: "a:b"))
        #expect(UsersFileLine("alice") == .malformed)
    }

    @Test("through a running proxy: SOCKS credentials checked once by bcrypt, then remembered; too long refused; counted in /metrics")
    func socksThroughProxy() async throws {
        let users = try ProxyUsers(parsing: try Self.usersText(), file: "users.txt")
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        let opener = FlowOpener(slices: EgressSlices(), clientTraits: TraitIndex(feeds: []), policy: DestinationPolicy(allowLoopback: true),
                                passwordChecks: pool)
        let server = try ProxyServer.start(on: Endpoint(IPv4Address(127, 0, 0, 1), 0), opener: opener, settings: ProxyServer.Settings(users: users),
                                           logger: Logger(label: "portslice.proxy.test") { _ in SwiftLogNoOpLogHandler() })
        let proxy = server.endpoint
        func authenticate(_ password: [UInt8]) throws -> [UInt8] {
            let socket = try UnslicedConnect.tcp(to: proxy)
            try socket.send([5, 1, 2])
            #expect(try socket.receive(timeout: .seconds(5)) == [5, 2])
            try socket.send([1, 5] + Array("alice".utf8) + [UInt8(password.count)] + password)
            return try socket.receive(timeout: .seconds(5))
        }
        #expect(try authenticate(Self.alicePassword) == [1, 0])
        #expect(try authenticate(Self.alicePassword) == [1, 0])
        #expect(try authenticate(Self.alicePassword + [UInt8](repeating: UInt8(ascii: "x"), count: 200)) == [1, 1])
        #expect(try authenticate(Array("wrong".utf8)) == [1, 1])
        let metrics = opener.metrics.text()
        for result in ["accepted", "remembered", "impossible", "refused"] {
            #expect(metrics.contains(#"portslice_proxy_password_checks_total{result="\#(result)"} 1"#), "\(metrics)")
        }
        await server.close()
        try await pool.shutdownGracefully()
    }
}
