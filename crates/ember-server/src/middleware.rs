//! Middleware around the routes: a request id (`x-request-id` accepted or made, echoed back) and
//! a tracing span carrying it; request metrics by route, model and status; the log line of each
//! request and of each error answered; the request body read whole within `--body-timeout`,
//! `--max-body-bytes` and the server-wide bound on body bytes in flight before the request takes
//! a slot; a limit on requests served at once; and `Retry-After` on every overload answer.
//!
//! [`stack`] wraps one dialect's routes in all of it, so every refusal is answered in that
//! dialect's error shape: there is no table of paths to dialects.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::Response;
use axum::Router;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use crate::error::{ApiError, ApiErrorKind, Dialect};
use crate::metrics::{Served, REQUEST_MODEL};
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

/// `router` behind the whole stack, answering refusals in `D`'s shape (outermost first): request
/// id, span, metrics and logs; API keys; the body read under its deadline and limits; the
/// concurrency limit; axum's body limit for its extractors.
pub fn stack<D: Dialect>(router: Router<AppState>, state: &AppState) -> Router<AppState> {
    router
        .layer(DefaultBodyLimit::max(state.limits.max_body_bytes))
        .layer(from_fn_with_state(state.clone(), limit_concurrency::<D>))
        .layer(from_fn_with_state(state.clone(), read_body::<D>))
        .layer(from_fn_with_state(
            state.clone(),
            crate::auth::require_key::<D>,
        ))
        .layer(from_fn_with_state(state.clone(), track))
}

/// Outermost middleware: id, span, metrics, the request's log line (and its error's), and
/// `Retry-After`.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id(&req);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().clone();
    let span = tracing::info_span!("request", id = %id, method = %method, route = %route);
    let slot = Arc::new(Mutex::new(Served::default()));
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
    let served = slot.lock().map(|s| s.clone()).unwrap_or_default();
    let model = served.model.clone().unwrap_or_default();
    let elapsed = started.elapsed();
    span.in_scope(|| {
        if let Some(e) = resp.extensions().get::<ApiError>() {
            log_error(e);
        }
        // Probes, scrapes and the web page's files and polling are frequent and uninteresting:
        // counted, not logged.
        if !quiet(&route) {
            tracing::info!(
                status = status.as_u16(),
                model = %model,
                ms = elapsed.as_secs_f64() * 1e3,
                "request"
            )
        }
    });
    state
        .metrics
        .request(&route, &served, status.as_u16(), elapsed);
    resp
}

/// Routes whose requests are counted but not logged.
fn quiet(route: &str) -> bool {
    route.starts_with("/health/")
        || route.starts_with("/ui")
        || matches!(route, "/metrics" | "/" | "/api/v1/stats")
}

/// The log line of an error answered: server faults as errors, and the whole message of an
/// answer whose file-system paths were trimmed.
fn log_error(e: &ApiError) {
    let detail = e.log_detail.as_deref().unwrap_or(&e.message);
    if e.status.is_server_error() {
        tracing::error!(kind = %e.kind, error = %detail, "request failed");
    } else if e.log_detail.is_some() {
        tracing::warn!(kind = %e.kind, error = %detail, "request failed (paths trimmed in the answer)");
    }
}

/// Why a body could not be read whole.
enum BodyError {
    TooLarge,
    /// The server-wide bound on body bytes in flight is reached.
    Busy,
    Read(axum::Error),
}

/// Bytes of request bodies held by one request, counted against `--max-inflight-body-bytes`
/// until it is dropped (when the request's answer is ready).
struct BodyBytes {
    pool: Arc<Semaphore>,
    held: Option<OwnedSemaphorePermit>,
}

impl BodyBytes {
    /// Takes `n` more bytes from the pool, or fails at once when it has fewer free.
    fn take(&mut self, n: usize) -> Result<(), BodyError> {
        if n == 0 {
            return Ok(());
        }
        let n = u32::try_from(n).map_err(|_| BodyError::Busy)?;
        let permit = self
            .pool
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| BodyError::Busy)?;
        match &mut self.held {
            Some(held) => held.merge(permit),
            None => self.held = Some(permit),
        }
        Ok(())
    }
}

/// The whole body, refused as soon as it passes `limit` bytes or the bytes in flight across
/// requests would pass their bound. `reserved` bytes were taken already (the declared length).
async fn collect_limited(
    mut body: Body,
    limit: usize,
    bytes: &mut BodyBytes,
    reserved: usize,
) -> Result<Bytes, BodyError> {
    let mut buf = Vec::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(BodyError::Read)?;
        if let Ok(data) = frame.into_data() {
            let len = buf.len() + data.len();
            if len > limit {
                return Err(BodyError::TooLarge);
            }
            bytes.take(len.saturating_sub(reserved.max(buf.len())))?;
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.into())
}

/// Reads the request body whole before the request takes a slot of the concurrency limit, so a
/// client that sends slowly (a Slowloris) holds a connection but never a slot: past
/// `--body-timeout` it is answered 408. A body over `--max-body-bytes` is refused with 413 as
/// soon as it is seen to be (from `Content-Length`, else while reading). Bodies of all requests
/// together hold at most `--max-inflight-body-bytes`: one more is answered 429 before its bytes
/// are read, so memory does not grow with the number of senders. Runs after the key check, so
/// bodies of unauthenticated requests are never read.
pub async fn read_body<D: Dialect>(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let limit = state.limits.max_body_bytes;
    let too_large = || {
        ApiError::new(
            ApiErrorKind::PayloadTooLarge,
            format!(
                "the request body is larger than this server's limit of {limit} bytes \
                 (--max-body-bytes)"
            ),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return D::render(&too_large());
    }
    let busy = || {
        state.metrics.rejected("body_bytes");
        ApiError::new(
            ApiErrorKind::Overloaded,
            format!(
                "the server is receiving its limit of {} bytes of request bodies at once \
                 (--max-inflight-body-bytes); retry later",
                state.limits.max_inflight_body_bytes
            ),
        )
    };
    let mut bytes = BodyBytes {
        pool: state.body_bytes.clone(),
        held: None,
    };
    let reserved = declared.map_or(0, |n| n as usize);
    if bytes.take(reserved).is_err() {
        return D::render(&busy());
    }
    let (parts, body) = req.into_parts();
    let read = collect_limited(body, limit, &mut bytes, reserved);
    let read = match state.body_timeout() {
        Some(t) => match tokio::time::timeout(t, read).await {
            Ok(r) => r,
            Err(_) => {
                state.metrics.rejected("body_timeout");
                return D::render(&ApiError::new(
                    ApiErrorKind::BodyTimeout,
                    format!(
                        "the request body did not arrive within {} s (--body-timeout)",
                        t.as_secs_f64()
                    ),
                ));
            }
        },
        None => read.await,
    };
    match read {
        Ok(body) => {
            let resp = next.run(Request::from_parts(parts, Body::from(body))).await;
            drop(bytes);
            resp
        }
        Err(BodyError::TooLarge) => D::render(&too_large()),
        Err(BodyError::Busy) => D::render(&busy()),
        // The client broke off or sent malformed chunked encoding: nobody may be listening, but
        // the status still says what happened.
        Err(BodyError::Read(e)) => D::render(&ApiError::invalid(format!(
            "the request body could not be read: {e}"
        ))),
    }
}

/// Refuses a request beyond `--max-concurrent-requests` with 429.
pub async fn limit_concurrency<D: Dialect>(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    match state.inflight.clone().try_acquire_owned() {
        Ok(permit) => {
            let resp = next.run(req).await;
            drop(permit);
            resp
        }
        Err(_) => {
            state.metrics.rejected("concurrency");
            D::render(&ApiError::new(
                ApiErrorKind::Overloaded,
                format!(
                    "the server is serving its limit of {} requests at once \
                     (--max-concurrent-requests); retry later",
                    state.limits_max_concurrent()
                ),
            ))
        }
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
