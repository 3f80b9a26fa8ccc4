//! A JSON extractor whose rejections (malformed body, wrong content type, body over the limit)
//! are answered in the route's own API dialect, not axum's plain text.

use std::marker::PhantomData;

use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::error::{Dialect, DialectError, Native};

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
