import Foundation
import PortSliceCore
import Testing
@testable import PortSliceBenchmarks

/// How `HTTPRequestLoad` finds the end of an answer: the head whole, then exactly the
/// Content-Length.
@Suite("bench alloc's HTTP load")
struct HTTPRequestLoadTests {
    static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    @Test func aHeadIsReadOnlyOnceWhole() throws {
        let answer = Self.bytes("HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"leases\":[]}")
        // The head is 76 bytes, its blank line included.
        for cut in [0, 10, 40, 73, 74, 75] {
            #expect(try HTTPRequestLoad.AnswerHead(of: Array(answer.prefix(cut))) == nil, "cut at \(cut)")
        }
        let expected = HTTPRequestLoad.AnswerHead(status: 201, length: 76, contentLength: 13, closes: false)
        #expect(try HTTPRequestLoad.AnswerHead(of: Array(answer.prefix(76))) == expected)
        #expect(try HTTPRequestLoad.AnswerHead(of: answer) == expected)
    }

    @Test func noContentNeedsNoLengthAndCloseIsNoticed() throws {
        #expect(try HTTPRequestLoad.AnswerHead(of: Self.bytes("HTTP/1.1 204 No Content\r\nDate: x\r\n\r\n"))
            == HTTPRequestLoad.AnswerHead(status: 204, length: 36, contentLength: 0, closes: false))
        #expect(try HTTPRequestLoad.AnswerHead(of: Self.bytes("HTTP/1.1 503 Service Unavailable\r\nconnection: Close\r\ncontent-length: 3\r\n\r\n"))
            == HTTPRequestLoad.AnswerHead(status: 503, length: 74, contentLength: 3, closes: true))
    }

    @Test func whatIsNotAnAllocatorsAnswerIsRefused() throws {
        for answer in [
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\n\r\n",
            "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
        ] {
            #expect(throws: BenchmarkFailure.self, "\(answer)") { _ = try HTTPRequestLoad.AnswerHead(of: Self.bytes(answer)) }
        }
        #expect(throws: BenchmarkFailure.self) { _ = try HTTPRequestLoad.AnswerHead(of: [UInt8](repeating: 65, count: 70_000)) }
    }
}
