//! The committed `openapi.json` at the repository root matches the document generated from the
//! code, and `GET /openapi.json` serves it. Regenerate with
//! `EMBER_UPDATE_OPENAPI=1 cargo test --release -p ember-server --test openapi`.

mod common;

use axum::http::StatusCode;
use common::*;
use ember_server::routes::openapi::document;
use ember_server::Limits;

#[test]
fn committed_openapi_is_current() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../openapi.json");
    let generated = document();
    if std::env::var_os("EMBER_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale; regenerate it with EMBER_UPDATE_OPENAPI=1 cargo test --release -p ember-server --test openapi",
        path.display()
    );
}

#[tokio::test]
async fn served_document_lists_every_dialect() {
    let app = test_app(Limits::default());
    let (status, doc) = send(&app, get("/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    for route in [
        "/api/v1/embed",
        "/api/v1/models/{id}/load",
        "/v1/embeddings",
        "/api/embed",
        "/api/embeddings",
        "/embed",
        "/tokenize",
    ] {
        assert!(doc["paths"][route].is_object(), "{route} missing");
    }
}
