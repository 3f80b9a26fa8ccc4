//! How an API family shapes an error body ([`Dialect`]), an error answered in a dialect's shape
//! ([`DialectError`]), and the errors of axum's extractors turned into [`ApiError`]s (axum's own
//! rejections are plain text).

use std::marker::PhantomData;

use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{ApiError, ApiErrorKind};

/// One API family's error shape. Implemented by each dialect's marker type next to its routes
/// (`routes/<dialect>.rs`).
pub trait Dialect: Send + Sync + 'static {
    /// The JSON body answering `e` (the status is `e.status`).
    fn body(e: &ApiError) -> Value;

    /// The response for `e`, carrying a copy of `e` for the logging middleware.
    fn render(e: &ApiError) -> Response {
        let mut resp = (e.status, axum::Json(Self::body(e))).into_response();
        resp.extensions_mut().insert(e.clone());
        resp
    }
}

/// An [`ApiError`] answered in dialect `D`'s shape.
#[derive(Debug, Clone)]
pub struct DialectError<D>(pub ApiError, PhantomData<D>);

impl<D> DialectError<D> {
    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }
}

impl<D> From<ApiError> for DialectError<D> {
    fn from(e: ApiError) -> Self {
        Self(e, PhantomData)
    }
}

impl<D> From<ember_core::Error> for DialectError<D> {
    fn from(e: ember_core::Error) -> Self {
        Self(e.into(), PhantomData)
    }
}

impl<D> From<JsonRejection> for DialectError<D> {
    fn from(r: JsonRejection) -> Self {
        Self(r.into(), PhantomData)
    }
}

impl<D: Dialect> IntoResponse for DialectError<D> {
    fn into_response(self) -> Response {
        D::render(&self.0)
    }
}

/// The JSON path of a deserialization error (`dimensions`, `input[2]`), read from serde's typed
/// error in the rejection's source chain.
fn json_path(r: &JsonRejection) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(r);
    while let Some(s) = source {
        if let Some(e) = s.downcast_ref::<serde_path_to_error::Error<serde_json::Error>>() {
            let path = e.path().to_string();
            return (path != ".").then_some(path);
        }
        source = s.source();
    }
    None
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match &r {
            JsonRejection::MissingJsonContentType(_) => ApiError::new(
                ApiErrorKind::UnsupportedMediaType,
                "expected `Content-Type: application/json`",
            ),
            JsonRejection::BytesRejection(_) => {
                ApiError::new(ApiErrorKind::PayloadTooLarge, r.body_text())
            }
            // body_text carries serde's message, which names the field and position.
            _ => {
                let mut e = ApiError::new(ApiErrorKind::InvalidJson, r.body_text());
                e.field = json_path(&r).map(Into::into);
                e
            }
        }
    }
}
