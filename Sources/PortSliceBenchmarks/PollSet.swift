import Foundation

/// `poll(2)` over many descriptors at once: the one kernel call the benchmark's load
/// generator needs beyond PortSliceSockets' API (whose flows each wait on their own), so that
/// one thread can drive many connections and check thousands of held ones in one call. For
/// the few dozen descriptors a load thread watches, poll's scan of the whole set costs less
/// than the epoll calls needed to keep an interest set in step with connections that live a
/// fraction of a millisecond.
enum PollSet {
    /// Waits up to `timeoutMilliseconds` (0: not at all) until some of `descriptors` are
    /// readable, hung up or failed, and returns their positions in `descriptors`; none when the
    /// time ran out or a signal came.
    static func ready(_ descriptors: [CInt], timeoutMilliseconds: CInt) -> [Int] {
        var watched = descriptors.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        guard poll(&watched, nfds_t(watched.count), timeoutMilliseconds) > 0 else { return [] }
        return watched.indices.filter { watched[$0].revents != 0 }
    }
}
