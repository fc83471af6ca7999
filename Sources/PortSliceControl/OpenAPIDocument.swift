/// The allocator's API as an OpenAPI 3.1 document, served at `GET /openapi.yaml`.
enum OpenAPIDocument {
    static let yaml = """
        openapi: 3.1.0
        """
}
