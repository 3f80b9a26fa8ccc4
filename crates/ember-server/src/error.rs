//! The server's one error type and its single mapping to status codes and JSON bodies.

use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ember_core::ErrorKind;
use serde_json::json;

/// An error answered as `{"error": {"type", "message", "code"}}`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    /// Machine-readable category, e.g. `invalid_request`, `model_not_found`.
    pub kind: &'static str,
    pub message: String,
}

impl ApiError {
    /// A 400 for a bad field.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request",
            message: message.into(),
        }
    }

    /// A 500 for a fault inside Ember.
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "internal",
            message: message.into(),
        }
    }

    /// A 404 for a route that does not exist.
    pub fn no_route(path: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            kind: "not_found",
            message: format!("no route for {path}; see GET /api/v1/models and POST /api/v1/embed"),
        }
    }
}

impl From<ember_core::Error> for ApiError {
    fn from(e: ember_core::Error) -> Self {
        let (status, kind) = match e.kind() {
            ErrorKind::ModelNotFound => (StatusCode::NOT_FOUND, "model_not_found"),
            ErrorKind::InvalidInput => match e {
                ember_core::Error::InputTooLong { .. } => {
                    (StatusCode::PAYLOAD_TOO_LARGE, "input_too_long")
                }
                _ => (StatusCode::BAD_REQUEST, "invalid_request"),
            },
            ErrorKind::Unsupported => (StatusCode::NOT_IMPLEMENTED, "model_unsupported"),
            ErrorKind::ModelLoad => (StatusCode::SERVICE_UNAVAILABLE, "model_load_failed"),
            ErrorKind::Capacity => (StatusCode::TOO_MANY_REQUESTS, "capacity"),
            ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "request failed");
        }
        Self {
            status,
            kind,
            message: e.to_string(),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let (status, kind) = match &r {
            JsonRejection::MissingJsonContentType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            JsonRejection::BytesRejection(_) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            _ => (StatusCode::BAD_REQUEST, "invalid_json"),
        };
        let message = match &r {
            JsonRejection::MissingJsonContentType(_) => {
                "expected `Content-Type: application/json`".to_string()
            }
            // body_text carries serde's message, which names the field and position.
            _ => r.body_text(),
        };
        Self {
            status,
            kind,
            message,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": {"type": self.kind, "message": self.message, "code": self.status.as_u16()}
        });
        (self.status, axum::Json(body)).into_response()
    }
}
