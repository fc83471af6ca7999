import Crypto
import PortSliceCore

/// Host tokens: `NAME.SECRET`, 256 random bits of secret. Only the SHA-256 of the token is
/// stored, and it is compared in constant time.
public enum HostToken {
    static func validate(name: String) throws(AllocationError) {
        let allowed = name.utf8.allSatisfy { (97...122).contains($0) || (48...57).contains($0) || $0 == 45 || $0 == 46 }
        guard (1...63).contains(name.utf8.count), allowed else { throw .badHostName(name) }
    }

    static func make(for name: String) -> String {
        "\(name).\(randomSecret())"
    }

    /// 256 random bits as 64 hex digits: a host's or edge's secret, or a new admin token.
    public static func randomSecret() -> String {
        var random = SystemRandomNumberGenerator()
        return (0..<4).map { _ in String(random.next() as UInt64, radix: 16).leftPadded(to: 16) }.joined()
    }

    /// SHA-256 of the token as 64 lowercase hex digits. Written straight into one string: every
    /// API request hashes its token (twice, for a host's), and a string per byte showed in
    /// profiles of the renewal round.
    public static func hash(of token: String) -> String {
        let digest = SHA256.hash(data: Array(token.utf8))
        return String(unsafeUninitializedCapacity: SHA256.byteCount * 2) { text in
            for (offset, byte) in digest.enumerated() {
                text[2 * offset] = hexDigits[Int(byte >> 4)]
                text[2 * offset + 1] = hexDigits[Int(byte & 0x0f)]
            }
            return SHA256.byteCount * 2
        }
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// The host part of a well-formed token.
    static func hostName(in token: String) -> String? {
        guard let dot = token.lastIndex(of: "."), token.utf8.count <= 200 else { return nil }
        let name = String(token[..<dot])
        return (try? validate(name: name)) != nil ? name : nil
    }

    /// Compares the token's hash with the stored one without stopping at the first difference.
    public static func matches(_ token: String, hash stored: String) -> Bool {
        sameHash(hash(of: token), stored)
    }

    /// Compares two hashes without stopping at the first difference, for a caller that has
    /// hashed the token once already.
    static func sameHash(_ computed: String, _ stored: String) -> Bool {
        let computed = Array(computed.utf8), expected = Array(stored.utf8)
        guard computed.count == expected.count else { return false }
        return zip(computed, expected).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }
}

extension String {
    func leftPadded(to length: Int) -> String {
        count >= length ? self : String(repeating: "0", count: length - count) + self
    }
}
