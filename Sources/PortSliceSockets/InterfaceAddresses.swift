import PortSliceCore
import Synchronization

/// An address configured on one of this host's interfaces.
public struct InterfaceAddress: Hashable, Sendable, CustomStringConvertible {
    public let address: IPAddress
    /// The interface's name, such as `lo` or `eth0`.
    public let interface: String

    public init(_ address: IPAddress, on interface: String) {
        self.address = address
        self.interface = interface
    }

    public var description: String { "\(address) on \(interface)" }
}

/// This host's interface addresses as read at most `maximumAge` ago. A proxy asks for every
/// flow it opens, thousands a second, and listing the interfaces is a netlink dump, so the
/// list is read again only once it is older than that: an address added to an interface is
/// known within about `maximumAge`. The caller that finds the list old reads it anew outside
/// the lock; callers meanwhile answer from the previous list rather than wait. A failed read
/// keeps the previous list and is tried again after `maximumAge`.
public final class InterfaceAddressSnapshot: Sendable {
    public typealias Reader = @Sendable () throws -> [InterfaceAddress]

    private struct State {
        var interfaceByAddress: [IPAddress: String]
        var readAt: ContinuousClock.Instant
        var reading: Bool
    }

    public let maximumAge: Duration
    private let read: Reader
    private let state: Mutex<State>

    /// Reads the list once now. `read` is the host's interfaces unless a test gives its own.
    public init(maximumAge: Duration = .seconds(1), read: @escaping Reader = { try HostNetwork.interfaceAddresses() }) {
        self.maximumAge = maximumAge
        self.read = read
        state = Mutex(State(interfaceByAddress: Self.indexed((try? read()) ?? []), readAt: .now, reading: false))
    }

    /// The interface that has `address`, or nil when none has it.
    public func interface(holding address: IPAddress) -> String? {
        let now = ContinuousClock.now
        let (known, mustRead) = state.withLock { state in
            let mustRead = now - state.readAt >= maximumAge && !state.reading
            if mustRead { state.reading = true }
            return (state.interfaceByAddress[address], mustRead)
        }
        guard mustRead else { return known }
        let fresh = (try? read()).map(Self.indexed)
        return state.withLock { state in
            if let fresh { state.interfaceByAddress = fresh }
            state.readAt = .now
            state.reading = false
            return state.interfaceByAddress[address]
        }
    }

    /// Address to interface; an address on two interfaces keeps the first.
    private static func indexed(_ addresses: [InterfaceAddress]) -> [IPAddress: String] {
        Dictionary(addresses.map { ($0.address, $0.interface) }, uniquingKeysWith: { first, _ in first })
    }
}
