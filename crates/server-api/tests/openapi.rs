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

#[test]
fn every_operation_asks_for_an_api_key() {
    let doc: serde_json::Value = serde_json::from_str(&chat_server_api::openapi_json()).unwrap();
    assert_eq!(doc["security"][0]["api_key"], serde_json::json!([]));
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );
    for path in [
        "/api/v1/server/publish",
        "/api/v1/server/api-keys",
        "/api/v1/server/api-keys/{id}",
    ] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
}
