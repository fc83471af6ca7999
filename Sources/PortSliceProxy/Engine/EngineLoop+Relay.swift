import PortSliceCore
import PortSliceSockets

/// Writing to the client and relaying both ways with back-pressure and half-close.
extension EngineLoop {
    /// Sends `bytes` to the client now, keeping what it cannot take yet.
    func send(_ bytes: [UInt8], to connection: EngineConnection) {
        guard connection.client >= 0 else { return }
        if !connection.toClient.isEmpty {
            bytes.withUnsafeBytes { connection.toClient.append($0) }
            return
        }
        bytes.withUnsafeBytes { raw in
            switch StreamIO.writeSome(connection.client, raw) {
            case .success(let written) where written < raw.count:
                connection.toClient.append(UnsafeRawBufferPointer(rebasing: raw[written...]))
                connection.clientWritable = false
            case .success, .failure:
                break  // a client that is gone fails its next read, which closes the connection
            }
        }
    }

    /// Sends what the client could not take before; false when the connection closed.
    func flushToClient(_ connection: EngineConnection) -> Bool {
        guard !connection.toClient.isEmpty, connection.clientWritable else { return true }
        return flush(&connection.toClient, to: connection.client, of: connection, writable: &connection.clientWritable)
    }

    func flush(_ backlog: inout EngineConnection.Backlog, to descriptor: CInt, of connection: EngineConnection, writable: inout Bool) -> Bool {
        let result = backlog.bytes.withUnsafeBytes { StreamIO.writeSome(descriptor, UnsafeRawBufferPointer(rebasing: $0[backlog.sent...])) }
        switch result {
        case .success(let written):
            backlog.sent += written
            if backlog.isEmpty { backlog.clear() } else { writable = false }
            connection.lastActivity = now
            return true
        case .failure:
            return false
        }
    }

    func relay(_ connection: EngineConnection) {
        let generation = connection.generation
        guard pump(connection, upstreamBound: true), connection.generation == generation,
              pump(connection, upstreamBound: false), connection.generation == generation else { return }
        if connection.clientEnded && connection.upstreamEnded && connection.toClient.isEmpty && connection.toUpstream.isEmpty {
            close(connection)
        }
    }

    /// Moves bytes one way (client to destination when `upstreamBound`) until the source has
    /// none, the destination takes no more, or the source ended (then the end is passed on).
    /// - Returns: false when the connection was closed.
    func pump(_ connection: EngineConnection, upstreamBound: Bool) -> Bool {
        let source = upstreamBound ? connection.client : connection.upstream
        let destination = upstreamBound ? connection.upstream : connection.client
        guard let flow = connection.flow else { return true }
        // What the destination could not take before goes first.
        if upstreamBound ? !connection.toUpstream.isEmpty : !connection.toClient.isEmpty {
            if upstreamBound && flow.revocation?.isRevoked == true { close(connection); return false }
            let flushed = upstreamBound
                ? flush(&connection.toUpstream, to: destination, of: connection, writable: &connection.upstreamWritable)
                : flush(&connection.toClient, to: destination, of: connection, writable: &connection.clientWritable)
            guard flushed else { close(connection); return false }
            if upstreamBound ? !connection.toUpstream.isEmpty : !connection.toClient.isEmpty { return true }
        }
        while upstreamBound ? connection.clientReadable : connection.upstreamReadable {
            switch StreamIO.read(source, into: buffer) {
            case .wouldBlock:
                if upstreamBound { connection.clientReadable = false } else { connection.upstreamReadable = false }
            case .endOfStream:
                if upstreamBound {
                    connection.clientReadable = false
                    connection.clientEnded = true
                } else {
                    connection.upstreamReadable = false
                    connection.upstreamEnded = true
                }
            case .failed:
                // The other side is closed normally, not reset: a slice port then keeps its
                // TIME_WAIT, which stops a new flow on the same 4-tuple from meeting the
                // destination's leftovers of the old one.
                close(connection)
                return false
            case .transferred(let count):
                // A short read emptied the socket: the next bytes bring a new edge. Not so the end
                // of the stream when its edge came already: then reading goes on until it is seen.
                if count < buffer.count {
                    if upstreamBound {
                        if !connection.clientHungUp { connection.clientReadable = false }
                    } else if !connection.upstreamHungUp {
                        connection.upstreamReadable = false
                    }
                }
                connection.lastActivity = now
                (upstreamBound ? flow.counters.sent : flow.counters.received).increment(by: Int64(count))
                if upstreamBound && flow.revocation?.isRevoked == true { close(connection); return false }
                let bytes = UnsafeRawBufferPointer(rebasing: buffer[..<count])
                switch StreamIO.writeSome(destination, bytes) {
                case .success(let written) where written < count:
                    let rest = UnsafeRawBufferPointer(rebasing: bytes[written...])
                    if upstreamBound {
                        connection.toUpstream.append(rest)
                        connection.upstreamWritable = false
                    } else {
                        connection.toClient.append(rest)
                        connection.clientWritable = false
                    }
                    return true
                case .success:
                    break
                case .failure:
                    close(connection)
                    return false
                }
            }
        }
        // The source ended and all it sent is out: pass the end on.
        let ended = upstreamBound ? connection.clientEnded : connection.upstreamEnded
        if ended {
            if upstreamBound && !connection.upstreamShutDown {
                connection.upstreamShutDown = true
                StreamIO.shutdownWrite(destination)
            } else if !upstreamBound && !connection.clientShutDown {
                connection.clientShutDown = true
                StreamIO.shutdownWrite(destination)
            }
        }
        return true
    }
}

extension EngineConnection {
    var isHandshaking: Bool {
        switch phase {
        case .proxyHeader, .sniffing, .socksGreeting, .socksCredentials, .socksRequest, .httpHead: true
        case .checkingPassword, .resolving, .connecting, .relaying, .draining: false
        }
    }

    /// Waiting for the thread pool or the destination, the request known or not.
    var isWaiting: Bool {
        switch phase {
        case .checkingPassword, .resolving, .connecting: true
        default: false
        }
    }

    var isHTTP: Bool {
        if case .socks = style { false } else { true }
    }
}
