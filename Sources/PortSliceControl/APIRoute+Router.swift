import Foundation
import Hummingbird
import PortSliceAPI

extension APIRoute {
    /// The path as Hummingbird's router takes it (`:name` for `{name}`). The router names a
    /// matched route by `path`'s own `{name}` form, which is the `route` label of the request
    /// metrics.
    public var routerPath: String {
        path.replacingOccurrences(of: "{", with: ":").replacingOccurrences(of: "}", with: "")
    }

    public var httpMethod: HTTPRequest.Method {
        HTTPRequest.Method(rawValue: method.rawValue)!
    }
}
