//! A JSON body extractor and a path extractor whose rejections (malformed body, wrong content
//! type, body over the limit, a path segment that is not UTF-8) are answered in the route's own
//! API dialect, not axum's plain text.

use std::marker::PhantomData;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, Dialect, DialectError, Native};

/// Like `axum::Json`, but a rejection is a [`DialectError<D>`] (Ember's native shape by default).
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T, D = Native>(pub T, pub PhantomData<D>);

impl<T, D> Json<T, D> {
    /// The parsed body.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<S, T, D> FromRequest<S> for Json<T, D>
where
    T: DeserializeOwned,
    S: Send + Sync,
    D: Dialect,
{
    type Rejection = DialectError<D>;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(v) = axum::Json::<T>::from_request(req, state).await?;
        Ok(Json(v, PhantomData))
    }
}

/// Like `axum::extract::Path`, but a rejection (e.g. a percent-encoded id that is not UTF-8) is a
/// [`DialectError<D>`] with axum's reason as the message.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T, D = Native>(pub T, pub PhantomData<D>);

impl<S, T, D> FromRequestParts<S> for Path<T, D>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
    D: Dialect,
{
    type Rejection = DialectError<D>;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v, PhantomData)),
            Err(r) => Err(ApiError {
                status: r.status(),
                kind: "invalid_path",
                message: r.body_text(),
            }
            .into()),
        }
    }
}
