//! The routes, one module per API dialect. Each dialect module owns everything about its API: a
//! marker type implementing [`Dialect`] (its error shape) and [`Api`] (its router, with its own
//! 404/405 fallbacks, and its OpenAPI paths), the request and response types, and the handlers.
//! `ops` holds the probes, `/metrics` and `/openapi.json`; `shared` the parsing every dialect
//! uses. Adding a dialect is adding a module and one entry to [`for_each_dialect!`].

pub mod cohere;
pub mod native;
pub mod ollama;
pub mod openai;
pub mod openapi;
pub mod ops;
pub mod shared;
pub mod tei;

use axum::Router;
use utoipa::openapi::{Components, OpenApi};

use crate::error::Dialect;
use crate::AppState;

/// One API dialect's routes and their documentation.
pub trait Api: Dialect {
    /// The OpenAPI tag of its operations.
    const TAG: &'static str;
    /// The tag's description.
    const DESCRIPTION: &'static str;

    /// Its routes (absolute paths) with their own 404 and 405 fallbacks where it owns a path
    /// prefix. `app()` wraps them in the middleware stack answering in this dialect's shape;
    /// `state` is there for route layers such as the admin key check.
    fn routes(state: &AppState) -> Router<AppState>;

    /// The OpenAPI paths and schemas of its routes. The error answers every operation may give
    /// are added by [`openapi`] from the statuses an operation lists.
    fn paths() -> OpenApi;

    /// Adds the schemas of its error body to `components` and returns the body's name.
    fn error_schema(components: &mut Components) -> String;
}

/// Calls `f::<D>(args)` for every dialect `D`, in the order the OpenAPI document lists their
/// tags, and gives the results as an array. This list is the one place a dialect is named.
#[macro_export]
macro_rules! for_each_dialect {
    ($f:ident ( $($arg:expr),* )) => {
        [
            $f::<$crate::routes::native::Native>($($arg),*),
            $f::<$crate::routes::openai::OpenAi>($($arg),*),
            $f::<$crate::routes::ollama::Ollama>($($arg),*),
            $f::<$crate::routes::tei::Tei>($($arg),*),
            $f::<$crate::routes::cohere::Cohere>($($arg),*),
        ]
    };
}

/// `D`'s routes inside the middleware stack that answers in `D`'s shape.
fn mount<D: Api>(state: &AppState) -> Router<AppState> {
    crate::middleware::stack::<D>(D::routes(state), state)
}

/// Every route: each dialect's, the operational ones, the web page's ([`crate::ui`]), and the
/// fallback for paths no dialect owns (in the native shape).
pub fn router(state: &AppState) -> Router<AppState> {
    for_each_dialect!(mount(state))
        .into_iter()
        .fold(ops::router(state), Router::merge)
        .merge(crate::ui::router(state))
}
