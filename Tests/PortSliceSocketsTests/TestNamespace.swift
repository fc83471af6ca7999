import Foundation
import Glibc
import Testing
import PortSliceCore
@testable import PortSliceSockets

/// A network namespace a test creates for itself, with loopback up and documentation-prefix
/// addresses on it; deleted when the value is released. Needs root.
final class TestNamespace: @unchecked Sendable {
    let name: String

    static var isRoot: Bool { geteuid() == 0 }
    static let skipReason: Comment = "needs root to create network namespaces (CI runs as root)"

    /// - Parameters:
    ///   - addresses: /32 addresses to put on loopback.
    ///   - portRange: the namespace's `net.ipv4.ip_local_port_range`.
    ///   - reservedPorts: its `net.ipv4.ip_local_reserved_ports`.
    init(addresses: [String], portRange: String = "1024 65535", reservedPorts: String = "") throws {
        name = "pstest-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try Self.command("ip", "netns", "add", name)
        try command("ip", "link", "set", "lo", "up")
        for address in addresses { try command("ip", "address", "add", "\(address)/32", "dev", "lo") }
        try command("sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=\(portRange)")
        try command("sysctl", "-q", "-w", "net.ipv4.ip_local_reserved_ports=\(reservedPorts)")
    }

    /// Runs a command inside the namespace and returns its standard output.
    @discardableResult
    func command(_ arguments: String...) throws -> String {
        try Self.command(["ip", "netns", "exec", name] + arguments)
    }

    @discardableResult
    static func command(_ arguments: String...) throws -> String { try command(arguments) }

    @discardableResult
    static func command(_ arguments: [String]) throws -> String {
        let running = try CommandLineHelper.start(arguments, includingErrors: true)
        let text = String(decoding: running.output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        running.process.waitUntilExit()
        guard running.process.terminationStatus == 0 else {
            throw CommandFailed(description: "\(arguments.joined(separator: " ")) exited \(running.process.terminationStatus): \(text)")
        }
        return text
    }

    struct CommandFailed: Error, CustomStringConvertible { let description: String }

    /// Runs `body` on a thread inside the namespace.
    func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) throws -> T {
        try NetworkNamespace.run(at: NetworkNamespace.path(named: name), body)
    }

    deinit { _ = try? Self.command("ip", "netns", "delete", name) }
}

/// A TCP listener with a deep backlog that never accepts: completed handshakes wait in its
/// queue, which is all a connect needs. Closed when released.
final class Listener: @unchecked Sendable {
    let descriptor: CInt

    init(_ endpoint: Endpoint) throws {
        let socket = try OwnedDescriptor(.tcp, nonBlocking: false)
        try socket.set(.reuseAddress, 1)
        try Syscalls.bind(socket.raw, endpoint.address, endpoint.port).get()
        try Syscalls.listen(socket.raw, backlog: 4096).get()
        descriptor = socket.release()
    }

    deinit { Syscalls.close(descriptor) }
}
