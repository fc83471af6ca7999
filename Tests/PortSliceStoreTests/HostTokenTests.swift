import Testing
@testable import PortSliceStore

@Suite("Host tokens")
struct HostTokenTests {
    /// FIPS 180-2's example digests: the stored form is SHA-256 in 64 lowercase hex digits,
    /// leading zeros kept (the first digest holds the bytes 0x01, 0x03 and 0x00).
    @Test func hashesAreSHA256InLowercaseHex() {
        #expect(HostToken.hash(of: "abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(HostToken.hash(of: "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")
            == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(HostToken.hash(of: "") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    @Test func matchesOnlyTheTokenItsHashIsOf() {
        let token = "h1." + String(repeating: "a", count: 64)
        let stored = HostToken.hash(of: token)
        #expect(HostToken.matches(token, hash: stored))
        #expect(!HostToken.matches(token + "a", hash: stored))
        #expect(!HostToken.matches(token, hash: String(stored.dropLast())), "a stored hash of another length")
        #expect(!HostToken.matches(token, hash: stored.uppercased()))
    }
}
