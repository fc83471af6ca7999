import ArgumentParser
import PortSliceCore
import PortSliceSockets

/// `portslice connect`: open one flow from a slice and print its 4-tuple.
struct ConnectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "connect",
        abstract: "Open one TCP or connected UDP flow from a slice and print its 4-tuple.",
        discussion: """
            Prints PROTOCOL LOCAL -> REMOTE, then closes the flow. Exits 1 with the reason when \
            the slice is exhausted towards the destination, the address is not local, or the \
            kernel would ignore the slice.

            Examples:
              portslice connect --from 203.0.113.10:20000-20999 198.51.100.7:443
              portslice connect --from 203.0.113.10:20000-20999 --udp --local-port 20007 198.51.100.7:53
            """
    )

    @Option(help: ArgumentHelp("The slice, ADDRESS:LOW-HIGH.", valueName: "slice"))
    var from: String

    @Flag(help: "Open a connected UDP socket instead of a TCP connection.")
    var udp = false

    @Option(help: "A specific local port of the slice.")
    var localPort: UInt16?

    @Option(help: "How the TCP local port is chosen: automatic, kernelRange or portSearch.")
    var strategy: DialStrategy = .automatic

    @Option(help: "Seconds to wait for the TCP handshake.")
    var timeout: Double = 10

    @Argument(help: ArgumentHelp("Destination HOST:PORT (an IPv4 address or a name).", valueName: "host:port"))
    var destination: String

    func validate() throws {
        guard timeout > 0 && timeout <= 600 else { throw ValidationError("--timeout must be above 0 and at most 600 seconds.") }
    }

    func run() throws {
        let slice = try EgressSlice(parsing: from)
        guard let colon = destination.lastIndex(of: ":"), let port = UInt16(destination[destination.index(after: colon)...]), port != 0 else {
            throw CommandFailure("destination '\(destination)' must be HOST:PORT with a port 1-65535")
        }
        let address = try HostNetwork.resolveIPv4(String(destination[..<colon]))[0]
        let dialer = try SliceDialer(slice: slice, strategy: strategy)
        let target = Endpoint(address, port)
        let socket: ConnectedSocket
        do {
            socket = udp
                ? try dialer.connectUDP(to: target, localPort: localPort)
                : try dialer.connectTCP(to: target, localPort: localPort, timeout: .milliseconds(Int(timeout * 1000)))
        } catch {
            if case .system("connect", let errno) = error {
                throw CommandFailure("connecting to \(target) from \(slice) failed: \(errno)")
            }
            throw error
        }
        let how = udp ? "port search, checked with sock_diag" : dialer.tcpStrategy.rawValue
        print("\(socket.tuple) (\(how))")
    }
}

extension DialStrategy: ExpressibleByArgument {}
