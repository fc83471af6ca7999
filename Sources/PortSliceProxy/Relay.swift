import NIOCore
import Prometheus

/// One side of a relay between two channels: what one reads, the other writes. Reading pauses
/// while the partner cannot take more (back-pressure); a side that stops sending (half-close)
/// shuts down the partner's output once its writes are out, so answers still flow the other
/// way; NIO closes a channel fully once both directions are shut; an error or a full close on
/// either side closes both.
/// Both channels must be on one event loop (the proxy opens the outbound flow on the client's),
/// so the pair calls each other directly; that confinement is why it may be `Sendable`.
final class RelayHandler: ChannelDuplexHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Read sizes for relayed sockets: they start small (most connections carry little) and
    /// grow up to 256 KiB while reads keep filling them, so a bulk transfer moves in large reads
    /// (NIO's default stops at 64 KiB, which made a single transfer a system call per 64 KiB).
    static var receiveBuffers: AdaptiveRecvByteBufferAllocator {
        AdaptiveRecvByteBufferAllocator(minimum: 64, initial: 2048, maximum: 256 * 1024)
    }

    private var partner: RelayHandler?
    private var context: ChannelHandlerContext?
    private var pendingRead = false
    /// Counts the bytes this side reads (and its partner writes).
    private let counter: Counter?
    /// On the client's side: the flow's slice, whose revocation stops what it reads from
    /// leaving through the flow.
    private let revocation: SliceRevocation?

    private init(counting counter: Counter?, revocation: SliceRevocation?) {
        self.counter = counter
        self.revocation = revocation
    }

    /// Two handlers joined to each other: the client's side counts what it reads as sent, the
    /// flow's side what it reads as received.
    static func pair(counting counters: ProxyMetrics.FlowCounters?, revocation: SliceRevocation) -> (client: RelayHandler, flow: RelayHandler) {
        let client = RelayHandler(counting: counters?.sent, revocation: revocation), flow = RelayHandler(counting: counters?.received, revocation: nil)
        client.partner = flow
        flow.partner = client
        return (client, flow)
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        partner = nil
    }

    private func partnerWrite(_ buffer: ByteBuffer) { context?.write(wrapOutboundOut(buffer), promise: nil) }
    private func partnerFlush() { context?.flush() }
    private func partnerWritabilityChanged(_ writable: Bool) {
        if writable, pendingRead {
            pendingRead = false
            context?.read()
        }
    }
    private func partnerClose() { context?.close(promise: nil) }
    private func partnerInputClosed() { context?.close(mode: .output, promise: nil) }
    private var partnerWritable: Bool { context?.channel.isWritable ?? false }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if revocation?.isRevoked == true {
            context.close(promise: nil)
            return
        }
        let buffer = unwrapInboundIn(data)
        counter?.increment(by: Int64(buffer.readableBytes))
        partner?.partnerWrite(buffer)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        partner?.partnerFlush()
    }

    func channelInactive(context: ChannelHandlerContext) {
        partner?.partnerClose()
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let channelEvent = event as? ChannelEvent, channelEvent == .inputClosed {
            partner?.partnerInputClosed()
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        partner?.partnerWritabilityChanged(context.channel.isWritable)
        context.fireChannelWritabilityChanged()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }

    func read(context: ChannelHandlerContext) {
        if partner?.partnerWritable ?? false {
            context.read()
        } else {
            pendingRead = true
        }
    }
}
