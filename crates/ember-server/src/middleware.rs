//! Middleware around every route: a request id (`x-request-id` accepted or made, echoed back) and
//! a tracing span carrying it; request metrics by route, model and status; the request body read
//! whole within `--body-timeout` and `--max-body-bytes` before the request takes a slot; a limit
//! on requests served at once; `Retry-After` on every overload answer; and `GET /metrics`.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::error::ApiError;
use crate::metrics::REQUEST_MODEL;
use crate::AppState;

/// The header carrying the request id.
pub const REQUEST_ID: &str = "x-request-id";

/// Seconds a client is asked to wait after a 429 or 503.
const RETRY_AFTER_SECS: &str = "1";

/// A request id: the caller's when it is short printable ASCII, else a fresh one.
fn request_id(req: &Request) -> String {
    if let Some(v) = req.headers().get(REQUEST_ID) {
        if let Ok(s) = v.to_str() {
            let ok = !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic());
            if ok {
                return s.to_string();
            }
        }
    }
    new_id()
}

/// 64 random bits (from the std hasher's per-process random keys) plus a counter: unique within
/// the process, hard to guess across processes, and no dependency.
fn new_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let seed = *SEED.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.finish()
    });
    format!("{seed:016x}-{:08x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Outermost middleware: id, span, metrics, access log, `Retry-After`.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(&req);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().clone();
    let span = tracing::info_span!("request", id = %id, method = %method, route = %route);
    let slot = Arc::new(Mutex::new(None::<String>));
    let mut resp = REQUEST_MODEL
        .scope(slot.clone(), next.run(req).instrument(span.clone()))
        .await;
    let status = resp.status();
    if matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) && !resp.headers().contains_key(header::RETRY_AFTER)
    {
        resp.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECS),
        );
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    let model = slot.lock().ok().and_then(|m| m.clone()).unwrap_or_default();
    let elapsed = started.elapsed();
    // Probes and scrapes are frequent and uninteresting: counted, not logged.
    if !(route.starts_with("/health/") || route == "/metrics") {
        span.in_scope(|| {
            tracing::info!(
                status = status.as_u16(),
                model = %model,
                ms = elapsed.as_secs_f64() * 1e3,
                "request"
            )
        });
    }
    state
        .metrics
        .request(&route, &model, status.as_u16(), elapsed);
    resp
}

/// Why a body could not be read whole.
enum BodyError {
    TooLarge,
    Read(axum::Error),
}

/// The whole body, refused as soon as it passes `limit` bytes.
async fn collect_limited(mut body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let mut buf = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(BodyError::Read)?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(BodyError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.into())
}

/// Reads the request body whole before the request takes a slot of the concurrency limit, so a
/// client that sends slowly (a Slowloris) holds a connection but never a slot: past
/// `--body-timeout` it is answered 408. A body over `--max-body-bytes` is refused with 413 as
/// soon as it is seen to be (from `Content-Length`, else while reading). Runs after the key check,
/// so bodies of unauthenticated requests are never read.
pub async fn read_body(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if path.starts_with("/health/") || path == "/metrics" {
        return next.run(req).await;
    }
    let limit = state.limits.max_body_bytes;
    let too_large = || ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        kind: "payload_too_large",
        message: format!(
            "the request body is larger than this server's limit of {limit} bytes \
             (--max-body-bytes)"
        ),
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return render(&path, too_large());
    }
    let (parts, body) = req.into_parts();
    let read = collect_limited(body, limit);
    let read = match state.body_timeout {
        Some(t) => match tokio::time::timeout(t, read).await {
            Ok(r) => r,
            Err(_) => {
                state.metrics.rejected("body_timeout");
                let e = ApiError {
                    status: StatusCode::REQUEST_TIMEOUT,
                    kind: "body_timeout",
                    message: format!(
                        "the request body did not arrive within {} s (--body-timeout)",
                        t.as_secs_f64()
                    ),
                };
                return render(&path, e);
            }
        },
        None => read.await,
    };
    match read {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(BodyError::TooLarge) => render(&path, too_large()),
        // The client broke off or sent malformed chunked encoding: nobody may be listening, but
        // the status still says what happened.
        Err(BodyError::Read(e)) => render(
            &path,
            ApiError::invalid(format!("the request body could not be read: {e}")),
        ),
    }
}

/// Refuses a request beyond `--max-concurrent-requests` with 429 (health and metrics pass).
pub async fn limit_concurrency(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    if path.starts_with("/health/") || path == "/metrics" {
        return next.run(req).await;
    }
    match state.inflight.clone().try_acquire_owned() {
        Ok(permit) => {
            let resp = next.run(req).await;
            drop(permit);
            resp
        }
        Err(_) => {
            state.metrics.rejected("concurrency");
            let e = ApiError {
                status: StatusCode::TOO_MANY_REQUESTS,
                kind: "overloaded",
                message: format!(
                    "the server is serving its limit of {} requests at once \
                     (--max-concurrent-requests); retry later",
                    state.limits_max_concurrent()
                ),
            };
            render(path, e)
        }
    }
}

/// `GET /metrics`: Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let manager = state.manager.clone();
    let queues = state.batcher.depths();
    let inflight = state.limits_max_concurrent() - state.inflight.available_permits();
    let ready = state.ready.load(Ordering::Acquire);
    let metrics = state.metrics.clone();
    // The manager's status takes its locks; keep that off the async workers.
    let text =
        tokio::task::spawn_blocking(move || metrics.render(&manager, &queues, inflight, ready))
            .await;
    match text {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => ApiError::internal(format!("rendering metrics failed: {e}")).into_response(),
    }
}

/// An error in the shape of the API `path` belongs to (OpenAI under `/v1` and `/embeddings`,
/// Ollama under `/api/` but not `/api/v1`, TEI's root routes, else native).
pub fn render(path: &str, e: ApiError) -> Response {
    use crate::error::{Dialect, Native, Ollama, OpenAi, Tei};
    if path.starts_with("/v1/") || path == "/embeddings" || path == "/v1" {
        OpenAi::render(&e)
    } else if path.starts_with("/api/") && !path.starts_with("/api/v1/") {
        Ollama::render(&e)
    } else if matches!(
        path,
        "/embed" | "/info" | "/tokenize" | "/rerank" | "/predict"
    ) {
        Tei::render(&e)
    } else {
        Native::render(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_callers_are_kept() {
        assert_ne!(new_id(), new_id());
        let req = Request::builder()
            .header(REQUEST_ID, "abc-123")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(request_id(&req), "abc-123");
        let bad = Request::builder()
            .header(REQUEST_ID, "has space")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_ne!(request_id(&bad), "has space");
    }
}
