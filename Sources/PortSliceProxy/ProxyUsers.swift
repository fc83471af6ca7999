import Crypto
import HummingbirdBcrypt
import NIOCore
import NIOPosix
import Synchronization

/// The users the proxy serves when it asks for credentials (SOCKS5 RFC 1929, HTTP Basic): names
/// with bcrypt hashes of their passwords, read from a users file of `NAME:HASH` lines that
/// `portslice users add` writes.
///
/// A password is checked by bcrypt on a thread pool, never on an event loop: at cost 12 one
/// check takes about a quarter of a second. Credentials bcrypt accepted are remembered for
/// `rememberFor` (5 minutes), as an HMAC of name and password under a key made for this
/// process, so a client that reconnects costs one HMAC instead; the passwords themselves are
/// never kept.
public final class ProxyUsers: Sendable {
    /// bcrypt reads at most 72 bytes of a password and ignores the rest, so a longer password
    /// is refused when set, and a longer one given is wrong: otherwise anything after the 72nd
    /// byte would be accepted.
    public static let passwordByteLimit = 72
    /// RFC 1929 carries a name in at most 255 bytes.
    public static let nameByteLimit = 255
    /// The work factor of new hashes: 2^12 rounds, about a quarter of a second per check.
    public static let defaultCost = 12
    /// The costs bcrypt itself accepts.
    public static let bcryptCosts = 4...31
    /// Remembered credentials at most; the oldest go first beyond it.
    static let rememberedLimit = 10_000

    private let hashes: [String: String]
    /// Checked for a name that is not a user, so that an unknown name costs a bcrypt run as a
    /// known one does and the time taken does not tell which names exist.
    private let decoyHash: String
    private let rememberFor: TimeAmount
    private let macKey = SymmetricKey(size: .bits256)
    private let remembered = Mutex<[String: RememberedCredential]>([:])

    private struct RememberedCredential {
        /// HMAC-SHA256 under `macKey` of the name, a 0 byte and the password.
        let code: HashedAuthenticationCode<SHA256>
        let until: NIODeadline
    }

    /// The users of a users file's `text`; `file` names it in errors.
    /// - Throws: `ProxyUsersError` naming the line: a value that is not a bcrypt hash (a
    ///   plain-text password), a line without `NAME:`, a name not allowed, a name given twice,
    ///   or no users at all.
    public init(parsing text: String, file: String, rememberFor: TimeAmount = .minutes(5)) throws(ProxyUsersError) {
        var hashes: [String: String] = [:]
        var lineOfName: [String: Int] = [:]
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = index + 1
            switch UsersFileLine(line) {
            case .blankOrComment:
                continue
            case .malformed:
                throw .malformedLine(file: file, line: number)
            case .user(let name, let value):
                if let problem = UserNameProblem(of: name) { throw .badName(file: file, line: number, problem) }
                if let first = lineOfName[name] { throw .duplicateName(name, file: file, line: number, firstLine: first) }
                guard Self.bcryptCost(of: value) != nil else { throw .notAHash(name: name, file: file, line: number) }
                hashes[name] = value
                lineOfName[name] = number
            }
        }
        guard !hashes.isEmpty else { throw .noUsers(file: file) }
        self.hashes = hashes
        self.rememberFor = rememberFor
        // Most names cost what most users' hashes cost; so does an unknown one.
        let costs = Dictionary(hashes.values.compactMap { Self.bcryptCost(of: $0) }.map { ($0, 1) }, uniquingKeysWith: +)
        let commonCost = costs.max { ($0.value, $0.key) < ($1.value, $1.key) }?.key ?? Self.defaultCost
        decoyHash = Self.decoyHash(cost: commonCost)
    }

    /// Checks `password` for the user named `user` (both as the client sent them, bytes).
    ///
    /// A password no user can have (empty, over 72 bytes, holding a NUL byte, or not UTF-8) is
    /// refused at once. Credentials accepted within `rememberFor` are accepted again by their
    /// HMAC, compared in constant time. Anything else runs bcrypt on `pool`, against the user's
    /// hash or, for an unknown name, against the decoy; only an accepted password is
    /// remembered. `then` gets the verdict (on the pool's thread, or at once when no bcrypt
    /// ran), or nil when `pool` is not running.
    public func verify(user: [UInt8], password: [UInt8], on pool: NIOThreadPool, then: @escaping @Sendable (PasswordVerdict?) -> Void) {
        guard let passwordText = Self.checkablePassword(password) else { return then(.impossible) }
        let name = String(validating: user, as: UTF8.self)
        let hash = name.flatMap { hashes[$0] }
        let credential = user + [0] + password
        if let name, hash != nil, isRemembered(credential, of: name) { return then(.remembered) }
        pool.submit { [self] state in
            guard case .active = state else { return then(nil) }
            guard Bcrypt.verify(passwordText, hash: hash ?? decoyHash), let name, hash != nil else { return then(.refused) }
            remember(credential, of: name)
            then(.accepted)
        }
    }

    /// A bcrypt hash of `password` at `cost`, for a users file.
    /// - Throws: `ProxyUsersError` for a password no check could accept (empty, over 72 bytes,
    ///   holding a NUL byte, not UTF-8) or a cost bcrypt does not take.
    public static func hash(password: [UInt8], cost: Int = defaultCost) throws(ProxyUsersError) -> String {
        if password.isEmpty { throw .emptyPassword }
        if password.count > passwordByteLimit { throw .passwordTooLong(bytes: password.count) }
        if password.contains(0) { throw .passwordHoldsNUL }
        guard let text = String(validating: password, as: UTF8.self) else { throw .passwordNotUTF8 }
        guard bcryptCosts.contains(cost) else { throw .costOutOfRange(cost) }
        return Bcrypt.hash(text, cost: UInt8(cost))
    }

    /// The cost of `value` when it is a bcrypt hash as `hash(password:cost:)` writes it
    /// (`$2b$`, two digits of cost, 53 characters of salt and digest); nil for anything else,
    /// a plain-text password among them.
    public static func bcryptCost(of value: some StringProtocol) -> Int? {
        let bytes = Array(value.utf8)
        let digits = UInt8(ascii: "0")...UInt8(ascii: "9")
        guard bytes.count == 60, bytes.starts(with: Array("$2b$".utf8)), digits.contains(bytes[4]), digits.contains(bytes[5]),
              bytes[6] == UInt8(ascii: "$"), bytes[7...].allSatisfy({ bcryptAlphabet.utf8.contains($0) }) else { return nil }
        let cost = Int(bytes[4] - digits.lowerBound) * 10 + Int(bytes[5] - digits.lowerBound)
        return bcryptCosts.contains(cost) ? cost : nil
    }

    /// The characters of bcrypt's own base 64, in its order.
    private static let bcryptAlphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

    /// A well-formed hash at `cost` with a random salt that no password matches: bcrypt ends its
    /// 23-byte digest with a character whose place in the alphabet is a multiple of 4, and this
    /// one ends with '/' (place 1). Checking it costs what checking a user's hash costs.
    private static func decoyHash(cost: Int) -> String {
        let alphabet = Array(bcryptAlphabet)
        let random = String((0..<52).map { _ in alphabet.randomElement()! })
        return "$2b$" + (cost < 10 ? "0\(cost)" : "\(cost)") + "$" + random + "/"
    }

    /// `password` as bcrypt takes it, or nil when no user can have it.
    private static func checkablePassword(_ password: [UInt8]) -> String? {
        guard !password.isEmpty, password.count <= passwordByteLimit, !password.contains(0) else { return nil }
        return String(validating: password, as: UTF8.self)
    }

    private func isRemembered(_ credential: [UInt8], of name: String) -> Bool {
        guard let entry = remembered.withLock({ $0[name] }), entry.until > .now() else { return false }
        return HMAC<SHA256>.isValidAuthenticationCode(entry.code, authenticating: credential, using: macKey)
    }

    private func remember(_ credential: [UInt8], of name: String) {
        let entry = RememberedCredential(code: HMAC<SHA256>.authenticationCode(for: credential, using: macKey), until: .now() + rememberFor)
        remembered.withLock { remembered in
            if remembered[name] == nil && remembered.count >= Self.rememberedLimit {
                let now = NIODeadline.now()
                remembered = remembered.filter { $0.value.until > now }
                if remembered.count >= Self.rememberedLimit, let oldest = remembered.min(by: { $0.value.until < $1.value.until }) {
                    remembered[oldest.key] = nil
                }
            }
            remembered[name] = entry
        }
    }
}

/// The outcome of one password check.
public enum PasswordVerdict: String, Sendable {
    /// bcrypt ran and the password matched.
    case accepted
    /// The same name and password were accepted within the last few minutes: no bcrypt ran.
    case remembered
    /// bcrypt ran, against the user's hash or the decoy for an unknown name, and did not match.
    case refused
    /// No user can have this password (empty, over 72 bytes, a NUL byte, not UTF-8): refused
    /// at once, without bcrypt.
    case impossible

    public var isAccepted: Bool { self == .accepted || self == .remembered }
}

/// One line of a users file, as the proxy reads it and `portslice users` edits it.
public enum UsersFileLine: Equatable, Sendable {
    /// Blank, or a comment: its first character other than white space is `#`.
    case blankOrComment
    /// `NAME:VALUE`, split at the first colon; VALUE should be a bcrypt hash.
    case user(name: String, value: String)
    /// Neither: there is no colon.
    case malformed

    public init(_ line: some StringProtocol) {
        let content = line.drop { $0 == " " || $0 == "\t" }
        if content.isEmpty || content.allSatisfy(\.isWhitespace) || content.first == "#" {
            self = .blankOrComment
        } else if let colon = line.firstIndex(of: ":") {
            self = .user(name: String(line[..<colon]), value: String(line[line.index(after: colon)...]))
        } else {
            self = .malformed
        }
    }
}

/// Why a user's name cannot be in a users file.
public enum UserNameProblem: Equatable, Sendable, CustomStringConvertible {
    case empty
    case tooLong(bytes: Int)
    /// A colon ends the name on its line.
    case colon
    case controlCharacter
    /// The line would be read as a comment.
    case commentMark
    /// Invisible in a file and easily lost when editing it.
    case surroundingWhiteSpace

    /// The problem with `name`, or nil when it can be a user's name.
    public init?(of name: String) {
        if name.isEmpty {
            self = .empty
        } else if name.utf8.count > ProxyUsers.nameByteLimit {
            self = .tooLong(bytes: name.utf8.count)
        } else if name.contains(":") {
            self = .colon
        } else if name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            self = .controlCharacter
        } else if name.first == "#" {
            self = .commentMark
        } else if name.first?.isWhitespace == true || name.last?.isWhitespace == true {
            self = .surroundingWhiteSpace
        } else {
            return nil
        }
    }

    public var description: String {
        switch self {
        case .empty: "is empty"
        case .tooLong(let bytes): "is \(bytes) bytes; give at most \(ProxyUsers.nameByteLimit) (SOCKS carries no more)"
        case .colon: "holds ':', which ends a name in the users file"
        case .controlCharacter: "holds a control character"
        case .commentMark: "starts with '#', which marks a comment in the users file"
        case .surroundingWhiteSpace: "starts or ends with white space"
        }
    }
}

/// Why a users file, or a password to hash, was refused. Never names a password.
public enum ProxyUsersError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The value is not a bcrypt hash: a password in plain text, most likely.
    case notAHash(name: String, file: String, line: Int)
    case malformedLine(file: String, line: Int)
    case badName(file: String, line: Int, UserNameProblem)
    case duplicateName(String, file: String, line: Int, firstLine: Int)
    case noUsers(file: String)
    case emptyPassword
    case passwordTooLong(bytes: Int)
    case passwordHoldsNUL
    case passwordNotUTF8
    case costOutOfRange(Int)

    public var description: String {
        switch self {
        case .notAHash(let name, let file, let line):
            "\(file) line \(line): the password of '\(name)' is not a bcrypt hash (plain-text passwords are refused); "
                + "set it with `portslice users add \(name) --file \(file)`"
        case .malformedLine(let file, let line):
            "\(file) line \(line): write NAME:HASH, as `portslice users add NAME --file \(file)` does"
        case .badName(let file, let line, let problem):
            "\(file) line \(line): the name \(problem)"
        case .duplicateName(let name, let file, let line, let firstLine):
            "\(file) line \(line): '\(name)' is already on line \(firstLine); keep one of them"
        case .noUsers(let file):
            "\(file) names no users; add one with `portslice users add NAME --file \(file)`"
        case .emptyPassword:
            "the password is empty"
        case .passwordTooLong(let bytes):
            "the password is \(bytes) bytes; bcrypt reads only the first \(ProxyUsers.passwordByteLimit), so give at most \(ProxyUsers.passwordByteLimit)"
        case .passwordHoldsNUL:
            "the password holds a NUL byte, where bcrypt would take it to end"
        case .passwordNotUTF8:
            "the password is not UTF-8 text"
        case .costOutOfRange(let cost):
            "bcrypt cost \(cost) is out of range; give \(ProxyUsers.bcryptCosts.lowerBound) to \(ProxyUsers.bcryptCosts.upperBound)"
        }
    }
}
