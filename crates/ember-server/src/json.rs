//! Body and path extractors whose rejections (malformed body, wrong content type, body over the
//! limit, a path segment that is not UTF-8) are answered in the route's own API dialect, not
//! axum's plain text.

use std::marker::PhantomData;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ApiErrorKind, Dialect, DialectError};

/// Like `axum::Json` (a JSON body with `Content-Type: application/json`), but a rejection is a
/// [`DialectError<D>`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T, D>(pub T, pub PhantomData<D>);

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

/// A JSON body whatever its content type says (Ollama reads its bodies this way, and its
/// documented `curl -d '{...}'` examples send `application/x-www-form-urlencoded`); a rejection
/// is a [`DialectError<D>`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyJson<T, D>(pub T, pub PhantomData<D>);

impl<S, T, D> FromRequest<S> for AnyJson<T, D>
where
    T: DeserializeOwned,
    S: Send + Sync,
    D: Dialect,
{
    type Rejection = DialectError<D>;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            ApiError::new(ApiErrorKind::PayloadTooLarge, r.body_text()).with_status(r.status())
        })?;
        let axum::Json(v) = axum::Json::<T>::from_bytes(&bytes)?;
        Ok(AnyJson(v, PhantomData))
    }
}

/// Like `axum::extract::Path`, but a rejection (e.g. a percent-encoded id that is not UTF-8) is a
/// [`DialectError<D>`] with axum's reason as the message.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T, D>(pub T, pub PhantomData<D>);

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
            Err(r) => Err(ApiError::new(ApiErrorKind::InvalidPath, r.body_text())
                .with_status(r.status())
                .into()),
        }
    }
}
