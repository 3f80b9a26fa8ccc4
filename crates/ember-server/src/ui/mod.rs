//! The web page: `GET /` and `GET /ui` serve one HTML page whose scripts, styles and icon are
//! compiled into the binary (`assets/`, `include_str!`) and served under `/ui/`; nothing is
//! fetched from anywhere else (the page's Content-Security-Policy forbids it), and every URL in
//! the page is relative, so it also works behind a reverse proxy under a path prefix.
//!
//! The page is public; its data is not. It reads `GET /ui/config.json` (public: the version and
//! whether keys are asked for, nothing else), then polls `GET /api/v1/stats` (keyed like every
//! data route, native error shape): the catalog with load states, the manager's memory and cache
//! counters, the queues, and the per-model traffic series of [`crate::traffic`]. Loading,
//! unloading and embedding go through the native routes like any client's.

mod assets;

use axum::extract::{OriginalUri, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};

use ember_core::InputType;

use crate::error::{ApiError, Dialect, DialectError};
use crate::routes::native::{self, Native};
use crate::{middleware, AppState};

pub use assets::{Asset, ASSETS};

/// What the page may load: its own scripts, styles and images, and JSON from its own origin.
/// No inline script or style, no form posting anywhere (the key must never land in a URL), no
/// framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The routes that serve the page (public, only request tracking), and the JSON it polls
/// (behind the native middleware stack: keys, limits, native error shape).
pub fn router(state: &AppState) -> Router<AppState> {
    let page = Router::new()
        .route("/", get(index))
        .route("/ui", get(index))
        .route("/ui/", get(to_page))
        .route("/ui/config.json", get(config))
        .route("/ui/{file}", get(asset))
        .method_not_allowed_fallback(wrong_method)
        .layer(from_fn_with_state(state.clone(), middleware::track));
    let data = Router::new()
        .route("/api/v1/stats", get(stats))
        .method_not_allowed_fallback(wrong_method);
    page.merge(middleware::stack::<Native>(data, state))
}

async fn wrong_method(OriginalUri(uri): OriginalUri) -> Response {
    Native::render(&ApiError::method_not_allowed(uri.path()))
}

/// Headers every page response carries.
fn page_headers(content_type: &'static str, etag: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Revalidated on every load, so a new binary's page is never mixed with old scripts.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h
}

/// `asset`, or 304 when the browser holds this very version.
fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let etag = asset.etag();
    let headers = page_headers(asset.content_type, &etag);
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    if fresh {
        (StatusCode::NOT_MODIFIED, headers).into_response()
    } else {
        (headers, asset.body).into_response()
    }
}

/// `GET /` and `GET /ui`: the page.
async fn index(request: HeaderMap) -> Response {
    serve(assets::page(), &request)
}

/// `GET /ui/`: the page's relative URLs would resolve one level too deep here, so this answers
/// with a relative redirect to `../ui` (which keeps a proxy's path prefix).
async fn to_page() -> Response {
    (
        StatusCode::PERMANENT_REDIRECT,
        [(header::LOCATION, HeaderValue::from_static("../ui"))],
    )
        .into_response()
}

/// `GET /ui/{file}`: a script, the stylesheet or the icon.
async fn asset(OriginalUri(uri): OriginalUri, request: HeaderMap) -> Response {
    let name = uri.path().rsplit('/').next().unwrap_or_default();
    match assets::find(name) {
        Some(a) => serve(a, &request),
        None => Native::render(&native::no_route(uri.path())),
    }
}

/// `GET /ui/config.json`: what the page needs before it has a key: the version, and whether API
/// keys and an admin key are asked for.
async fn config(State(state): State<AppState>) -> Response {
    let body = json!({
        "version": env!("CARGO_PKG_VERSION"),
        "auth": {
            "api_key": !state.auth.api_keys.is_empty(),
            "admin_key": state.auth.admin_key.is_some(),
        },
    });
    let mut resp = axum::Json(body).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The server at a glance, in one consistent read: the catalog with load states and per-model
/// counters (as `GET /api/v1/models`, plus each model's `tasks`: the `input_type`s it has
/// prompts for), the manager's memory and cache counters, the batch queues, and each model's
/// traffic over the last minutes in time buckets (requests, errors, p50/p95 latency, queue
/// depth, batch sizes, tokens).
#[utoipa::path(get, operation_id = "ui_stats", path = "/api/v1/stats", tag = "ui",
    responses((status = 200, description = "`{now_ms, default_model, models, manager, queues, traffic}`; \
        `models[].tasks` lists the `input_type`s a model has prompts for; \
        `traffic.models[]` holds one series per model, oldest bucket first, each bucket \
        `traffic.bucket_seconds` long, the last still filling")))]
pub async fn stats(
    State(state): State<AppState>,
) -> Result<axum::Json<Value>, DialectError<Native>> {
    let catalog = native::catalog(&state)?;
    let manager = state.manager.stats()?;
    let queues: Vec<Value> = state
        .batcher
        .depths()
        .into_iter()
        .map(|(model, dtype, depth)| json!({"model": model, "dtype": dtype, "depth": depth}))
        .collect();
    // The tasks each model has a prompt for, so the page sends `input_type` only where the
    // model takes it (core's table decides; a model without prompts refuses one).
    let models: Vec<Value> = catalog
        .models
        .iter()
        .map(|m| {
            let tasks: Vec<&str> = [InputType::Query, InputType::Document]
                .into_iter()
                .filter(|t| t.pick(|n| m.spec.prompts.contains_key(n)).is_some())
                .map(InputType::as_str)
                .collect();
            let mut v = serde_json::to_value(m).unwrap_or(Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.insert("tasks".into(), json!(tasks));
            }
            v
        })
        .collect();
    let traffic = state.metrics.traffic();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Ok(axum::Json(json!({
        "now_ms": now_ms,
        "default_model": catalog.default_model,
        "models": models,
        "manager": manager,
        "queues": queues,
        "traffic": traffic.snapshot(traffic.now()),
    })))
}

/// The OpenAPI paths of the page's JSON.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(paths(stats))]
pub struct Doc;
