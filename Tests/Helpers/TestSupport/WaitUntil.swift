/// Returns as soon as `condition` holds, or once `limit` has passed; the caller's expectations
/// then fail and say what they saw.
///
/// The limit is generous on purpose: the suite runs its tests in parallel on a shared machine
/// with two cores, where a headless browser or a database can hold both for seconds, and a
/// wait that ends when its condition holds costs a passing test nothing for it. A 5 s limit
/// once failed a test whose proxy had closed nine of ten flows and was still closing the last.
public func waitUntil(
    within limit: Duration = .seconds(30), checkingEvery interval: Duration = .milliseconds(20), _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + limit
    while try await !condition() && ContinuousClock.now < deadline {
        try await Task.sleep(for: interval)
    }
}
