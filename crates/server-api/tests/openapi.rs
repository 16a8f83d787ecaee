//! The server API's OpenAPI document: committed in `proto/openapi/`, made
//! from the code, so the two cannot drift.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test, with its location

#[test]
fn the_committed_openapi_document_matches_the_code() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto/openapi/server.json");
    let generated = chat_server_api::openapi_json() + "\n";
    if std::env::var_os("UPDATE_PROTO").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is out of date; run UPDATE_PROTO=1 cargo test -p chat-server-api",
        path.display()
    );
}

/// The document-wide requirement is the API key, no operation lifts it
/// (`security: []`), and every route the API serves is described.
#[test]
fn every_operation_asks_for_an_api_key() {
    let doc: serde_json::Value = serde_json::from_str(&chat_server_api::openapi_json()).unwrap();
    assert_eq!(doc["security"][0]["api_key"], serde_json::json!([]));
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );
    let mut operations = Vec::new();
    for (path, methods) in doc["paths"].as_object().unwrap() {
        for (method, operation) in methods.as_object().unwrap() {
            if let Some(security) = operation.get("security") {
                assert!(
                    security.as_array().is_some_and(|s| !s.is_empty()),
                    "{method} {path} lifts the API key: {security}"
                );
            }
            operations.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    operations.sort();
    assert_eq!(
        operations,
        [
            "DELETE /api/v1/server/api-keys/{id}",
            "DELETE /api/v1/server/rooms/{room}",
            "DELETE /api/v1/server/rooms/{room}/members/{user}",
            "GET /api/v1/server/api-keys",
            "GET /api/v1/server/connections",
            "GET /api/v1/server/rooms/{room}",
            "GET /api/v1/server/users/{user}",
            "GET /api/v1/server/users/{user}/rooms",
            "PATCH /api/v1/server/rooms/{room}/members/{user}",
            "POST /api/v1/server/api-keys",
            "POST /api/v1/server/publish",
            "POST /api/v1/server/rooms",
            "POST /api/v1/server/rooms/{room}/members",
            "POST /api/v1/server/users/{user}/disconnect",
        ]
    );
}
