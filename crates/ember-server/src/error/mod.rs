//! The server's one error type: an [`ApiErrorKind`] (what went wrong, as a type), the request
//! field at fault when there is one, a status and a message naming the field, model or limit.
//!
//! - `kind.rs`: the kinds, each with its wire name and usual status.
//! - `from_core.rs`: the single mapping from a core error to a kind and status, by variant.
//! - `redact.rs`: file-system paths trimmed from messages before they reach a caller.
//! - `dialect.rs`: the [`Dialect`] trait (how one API family shapes an error body) and
//!   [`DialectError`], an error answered in a dialect's shape. Each dialect's renderer lives
//!   with its routes (`routes/<dialect>.rs`).
//!
//! Rendering an error stores a copy of it in the response's extensions; the `track` middleware
//! logs it from there (nothing logs while converting or rendering).

mod dialect;
mod from_core;
mod kind;
mod redact;

use std::borrow::Cow;
use std::sync::Arc;

use axum::http::StatusCode;

pub use dialect::{Dialect, DialectError};
pub use kind::ApiErrorKind;
pub use redact::redact_paths;

/// An error answered to a caller. It has no response shape of its own: a handler answers it as a
/// [`DialectError`] of its route's dialect (`?` converts).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: ApiErrorKind,
    /// The request field at fault (`input`, `input[2]`, `model`, `dimensions`), when one is: OpenAI's
    /// `param`.
    pub field: Option<Cow<'static, str>>,
    /// What the caller sees.
    pub message: String,
    /// The full message for the server log, when `message` had file-system paths trimmed.
    pub log_detail: Option<Arc<str>>,
}

impl ApiError {
    /// An error of `kind` with its usual status.
    pub fn new(kind: ApiErrorKind, message: impl Into<String>) -> Self {
        Self {
            status: kind.status(),
            kind,
            field: None,
            message: message.into(),
            log_detail: None,
        }
    }

    /// The same error about request field `field`.
    pub fn with_field(mut self, field: impl Into<Cow<'static, str>>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// The same error answered with `status`.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// A 400 for a bad request that is about no single field.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ApiErrorKind::InvalidRequest, message)
    }

    /// A 400 for a bad value of `field`.
    pub fn invalid_field(field: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::invalid(message).with_field(field)
    }

    /// A 500 for a fault inside Ember.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ApiErrorKind::Internal, message)
    }

    /// A 404 for a route that does not exist; `hint` names the routes that do.
    pub fn no_route(path: &str, hint: &str) -> Self {
        Self::new(
            ApiErrorKind::NotFound,
            format!("no route for {path}; {hint}"),
        )
    }

    /// A 405 for a known route called with the wrong method.
    pub fn method_not_allowed(path: &str) -> Self {
        Self::new(
            ApiErrorKind::MethodNotAllowed,
            format!("method not allowed on {path}"),
        )
    }

    /// A 413 for a request carrying more inputs than the server accepts.
    pub fn too_many_inputs(field: &str, n: usize, max: usize) -> Self {
        Self::new(
            ApiErrorKind::TooManyInputs,
            format!("`{field}` has {n} items; this server accepts at most {max} per request"),
        )
        .with_field(field.to_string())
    }
}

#[cfg(test)]
mod tests;
