import PortSliceCore
import Synchronization

/// The ports of a contiguous slice that one dialer's own TCP flows hold, per destination.
///
/// The kernel's fast path finds a port by walking the per-socket range from a hashed start
/// and checking each port against its table of connections: cheap while the slice is mostly
/// free, close to a hundred checks per connect when it is 99% full. Once this dialer's own
/// flows hold most of the slice towards a destination, it offers the kernel a one-port range
/// at a port it believes free instead. The kernel still checks that port, so a port someone
/// else holds only costs a retry over the whole slice: this is a hint, never a promise.
final class PortOccupancy: Sendable {
    let span: PortRange
    /// Where every destination starts: the ports the kernel never picks (reserved) count as held.
    private let initial: Ports
    private let held = Mutex<[Endpoint: Ports]>([:])

    /// A bitmap over the span and where the next search for a clear bit starts.
    fileprivate struct Ports {
        var words: [UInt64]
        var count = 0
        var cursor = 0
    }

    init(span: PortRange, reserved: PortSet) {
        self.span = span
        var initial = Ports(words: Array(repeating: 0, count: (span.count + 63) / 64))
        for port in span.lower...span.upper where reserved.contains(port) { initial.set(Int(port) - Int(span.lower)) }
        self.initial = initial
    }

    func hold(_ port: UInt16, towards destination: Endpoint) {
        guard let bit = bit(of: port) else { return }
        held.withLock { held in held[destination, default: initial].set(bit) }
    }

    func release(_ port: UInt16, towards destination: Endpoint) {
        guard let bit = bit(of: port) else { return }
        held.withLock { held in
            // In place: a copy taken out of the dictionary would copy the bitmap on every close.
            held[destination]?.clear(bit)
            if held[destination]?.count == initial.count { held[destination] = nil }
        }
    }

    /// A port this dialer's flows do not hold towards `destination`, once they hold at least
    /// three quarters of the slice there (below that the kernel's own walk is short); nil
    /// otherwise, or when they hold every port.
    func believedFree(towards destination: Endpoint) -> UInt16? {
        held.withLock { held in
            guard let count = held[destination]?.count, count * 4 >= span.count * 3, count < span.count,
                  let bit = held[destination]?.nextClear(below: span.count)
            else { return nil }
            return UInt16(Int(span.lower) + bit)
        }
    }

    /// How many ports this dialer's flows hold towards `destination` (reserved ports not counted).
    func heldCount(towards destination: Endpoint) -> Int {
        held.withLock { held in (held[destination]?.count ?? initial.count) - initial.count }
    }

    private func bit(of port: UInt16) -> Int? {
        span.contains(port) ? Int(port) - Int(span.lower) : nil
    }
}

extension PortOccupancy.Ports {
    mutating func set(_ bit: Int) {
        let mask = UInt64(1) << UInt64(bit % 64)
        if words[bit / 64] & mask == 0 { count += 1 }
        words[bit / 64] |= mask
    }

    mutating func clear(_ bit: Int) {
        let mask = UInt64(1) << UInt64(bit % 64)
        if words[bit / 64] & mask != 0 { count -= 1 }
        words[bit / 64] &= ~mask
    }

    /// The first clear bit at or after the cursor, wrapping once; the cursor moves past it so
    /// that successive hints spread over the free ports.
    mutating func nextClear(below limit: Int) -> Int? {
        for step in 0..<limit {
            let bit = (cursor + step) % limit
            if words[bit / 64] & (UInt64(1) << UInt64(bit % 64)) == 0 {
                cursor = (bit + 1) % limit
                return bit
            }
        }
        return nil
    }
}
