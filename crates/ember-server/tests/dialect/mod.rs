//! Helpers for the dialect tests: reference vectors, base64 decoding and each API dialect's
//! error shape.

#![allow(dead_code)]

use axum::body::Body;
use axum::http::Request;
use base64::Engine as _;
use ember_server::Limits;
use serde_json::Value;

use crate::common::*;

pub fn expected(kind: &str) -> Value {
    serde_json::from_slice(&std::fs::read(tiny(kind).join("expected.json")).unwrap()).unwrap()
}

pub fn assert_close(got: &[f32], want: &Value, what: &str) {
    let c = cosine(got, &floats(want));
    assert!(c > 0.9999, "{what}: cosine {c}");
}

pub fn decode_b64(s: &Value) -> Vec<f32> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.as_str().unwrap())
        .unwrap();
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

pub fn small() -> Limits {
    Limits {
        max_client_batch: 3,
        max_body_bytes: 4096,
        max_input_chars: 200,
        ..Limits::default()
    }
}

/// The error shape each dialect answers with.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    Native,
    OpenAi,
    Ollama,
    Tei,
}

pub fn check_shape(shape: Shape, body: &Value) -> String {
    let e = &body["error"];
    match shape {
        Shape::Native => {
            assert!(e["type"].is_string() && e["code"].is_u64(), "{body}");
            e["message"].as_str().unwrap().to_string()
        }
        Shape::OpenAi => {
            assert!(e["type"].is_string(), "{body}");
            assert!(
                e.get("param").is_some() && e.get("code").is_some(),
                "{body}"
            );
            e["message"].as_str().unwrap().to_string()
        }
        Shape::Ollama => {
            assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
            e.as_str().unwrap().to_string()
        }
        Shape::Tei => {
            assert!(body["error_type"].is_string(), "{body}");
            e.as_str().unwrap().to_string()
        }
    }
}

pub async fn expect(
    app: &axum::Router,
    req: Request<Body>,
    shape: Shape,
    status: u16,
    needle: &str,
) {
    let (got, body) = send(app, req).await;
    assert_eq!(got.as_u16(), status, "{shape:?}: {body}");
    let msg = check_shape(shape, &body);
    assert!(
        msg.contains(needle),
        "{shape:?}: {msg:?} should mention {needle:?}"
    );
}
