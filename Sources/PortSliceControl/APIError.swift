import Foundation
import Hummingbird
import PortSliceAPI
import PortSliceCore
import PortSliceStore

/// An error answer: a status and a JSON body (`ErrorBody`) that says what was wrong and, for
/// bad input, which field.
struct APIError: HTTPResponseError {
    let status: HTTPResponse.Status
    let message: String
    let field: String?

    init(_ status: HTTPResponse.Status, _ message: String, field: String? = nil) {
        self.status = status
        self.message = message
        self.field = field
    }

    static let unauthorized = APIError(.unauthorized, "send 'Authorization: Bearer TOKEN' with an admin, host or edge token")
    static let databaseUnavailable = APIError(.serviceUnavailable, ErrorBody.databaseUnavailable)

    /// The answer to a caller whose role the route does not admit.
    static func forbidden(_ route: APIRoute) -> APIError {
        let roles = route.roles.map(\.rawValue).sorted().joined(separator: " or ")
        return APIError(.forbidden, "\(route) needs the \(roles) token")
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        ControlAPI.json(body: json, status: status)
    }

    /// The answer's body, `ErrorBody` as JSON.
    var json: ByteBuffer {
        ByteBuffer(bytes: JSONWriter.encode(ErrorBody(error: message, field: field)))
    }

    /// The answer for a refused allocation request.
    init(_ error: AllocationError) {
        switch error {
        case .quarantineTooShort, .badCount, .badTimeToLive, .badHostName, .badLeaseLength:
            self.init(.badRequest, error.description, field: Self.field(of: error))
        case .duplicateAddress, .duplicateHost, .duplicateEdge, .duplicateViewer, .addressInUse, .duplicatePrefix, .overlappingPrefix, .prefixInUse:
            self.init(.conflict, error.description)
        case .unknownAddress, .unknownLease, .unknownHost, .unknownEdge, .unknownViewer, .unknownPrefix:
            self.init(.notFound, error.description)
        case .notYourLease:
            self.init(.forbidden, error.description)
        case .leaseExpired:
            self.init(.gone, error.description)
        case .noCapacity, .noPrefixCapacity:
            self.init(.serviceUnavailable, error.description)
        }
    }

    private static func field(of error: AllocationError) -> String? {
        switch error {
        case .badCount: "count"
        case .badTimeToLive: "ttlSeconds"
        case .badHostName: "name"
        case .badLeaseLength: "leaseLength"
        default: nil
        }
    }
}
