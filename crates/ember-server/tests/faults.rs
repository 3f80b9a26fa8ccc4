//! Faults, with tiny models: model files corrupted or deleted after their model was loaded (the
//! copy in memory keeps serving; once it leaves the cache, requests get a 503 naming the model
//! while other models serve), clients that disconnect mid-request (their queued work is skipped
//! and every gauge returns to zero), slow clients (a slow reader holds no request slot; a slow
//! body is cut off by `--body-timeout` with a 408 and holds no slot meanwhile). Real sockets
//! where the connection itself is the point; workers are paused so nothing depends on timing.
//!
//! Other faults are tested next to the code they exercise; `docs/faults.md` lists them all.

mod common;
mod dialect;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::*;
use dialect::{check_shape, Shape};
use ember_core::{ManagerConfig, ModelManager, ModelSpec, Registry, Resolver};
use ember_server::{app, AppState, BatchConfig, Gate, Limits};
use serde_json::{json, Value};
use tokio::net::TcpSocket;

/// The tiny models plus `flaky`, a copy of tiny-bert in `dir` whose files the tests break.
fn flaky_manager(dir: &Path, max_models: usize) -> Arc<ModelManager> {
    let mut reg = Registry::builtin();
    for kind in ["bert", "mpnet"] {
        let mut spec = ModelSpec::for_path(&format!("tiny-{kind}"), &tiny(kind));
        spec.is_default = kind == "bert";
        reg.register(spec).unwrap();
    }
    reg.register(ModelSpec::for_path("flaky", dir)).unwrap();
    let config = ManagerConfig {
        max_models,
        ..ManagerConfig::default()
    };
    Arc::new(ModelManager::with_config(reg, Resolver::from_env(), config))
}

/// One embedding request for `model` in each dialect, with that dialect's error shape.
fn each_dialect(model: &str) -> Vec<(Shape, &'static str, String)> {
    vec![
        (
            Shape::Native,
            "/api/v1/embed",
            json!({"input": "hello", "model": model}).to_string(),
        ),
        (
            Shape::OpenAi,
            "/v1/embeddings",
            json!({"input": "hello", "model": model}).to_string(),
        ),
        (
            Shape::Ollama,
            "/api/embed",
            json!({"input": "hello", "model": model}).to_string(),
        ),
        (
            Shape::Tei,
            "/embed",
            json!({"inputs": "hello", "model": model}).to_string(),
        ),
    ]
}

/// Every dialect answers `model` with a 503 in its own error shape, naming the model.
async fn expect_unavailable(router: &axum::Router, model: &str, needle: &str) {
    for (shape, uri, body) in each_dialect(model) {
        let resp = tower::ServiceExt::oneshot(router.clone(), post_json(uri, &body))
            .await
            .unwrap();
        let status = resp.status();
        let retry = resp.headers().get("retry-after").cloned();
        let bytes = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{shape:?}: {v}");
        assert!(retry.is_some(), "{shape:?}: a 503 carries Retry-After");
        let msg = check_shape(shape, &v);
        assert!(
            msg.contains(model) && msg.contains(needle),
            "{shape:?}: {msg:?} should name `{model}` and say {needle:?}"
        );
        if let Shape::Native = shape {
            assert_eq!(v["error"]["type"], "model_load_failed", "{v}");
        }
    }
}

/// Every dialect still serves `model`.
async fn expect_serving(router: &axum::Router, model: &str) {
    for (shape, uri, body) in each_dialect(model) {
        let (status, v) = send(router, post_json(uri, &body)).await;
        assert_eq!(status, StatusCode::OK, "{shape:?} {model}: {v}");
    }
}

fn first_vector(v: &Value) -> Vec<f32> {
    floats(&v["embeddings"][0])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_file_corrupted_after_load_fails_cleanly_once_evicted_and_others_serve() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("flaky");
    copy_dir(&tiny("bert"), &dir);
    // Two slots: the pinned default and one more, so loading tiny-mpnet evicts `flaky`.
    let state = AppState::new(flaky_manager(&dir, 2), Limits::default());
    let router = app(state.clone());
    expect_serving(&router, "tiny-bert").await;
    let body = r#"{"input": "hello", "model": "flaky"}"#;
    let (status, v) = send(&router, post_json("/api/v1/embed", body)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let before = first_vector(&v);

    let weights = dir.join("model.safetensors");
    let good = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, b"\x10\0\0\0\0\0\0\0{not a header").unwrap();
    // The loaded copy does not read its files again: it keeps answering, with the same vectors.
    let (status, v) = send(&router, post_json("/api/v1/embed", body)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(cosine(&first_vector(&v), &before) > 0.9999);

    expect_serving(&router, "tiny-mpnet").await;
    let (_, status) = send(&router, get("/api/v1/models/flaky")).await;
    assert_eq!(status["loaded"], false, "evicted by tiny-mpnet: {status}");

    // Reloading reads the broken file: a 503 naming the model, in every dialect. A failure is
    // not cached: each request, sent after the previous one was answered, tries the load again.
    let failures = state.manager.stats().unwrap().load_failures;
    expect_unavailable(&router, "flaky", "corrupt").await;
    for _ in 0..16 {
        let (status, v) = send(&router, post_json("/api/v1/embed", body)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    }
    let tried = state.manager.stats().unwrap().load_failures - failures;
    assert_eq!(tried, 4 + 16, "one load attempt per request");
    let (_, status) = send(&router, get("/api/v1/models/flaky")).await;
    assert_eq!(status["state"], "failed", "{status}");
    assert!(status["error"].as_str().unwrap().contains("corrupt"));
    // The other models keep serving, the default one included.
    expect_serving(&router, "tiny-bert").await;
    expect_serving(&router, "tiny-mpnet").await;
    let stats = state.manager.stats().unwrap();
    assert!(stats.load_failures >= 4, "{stats:?}");
    assert!(stats.evictions.lru >= 1, "{stats:?}");

    // A failure is not cached: once the file is repaired the next request loads it.
    std::fs::write(&weights, good).unwrap();
    let (status, v) = send(&router, post_json("/api/v1/embed", body)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(cosine(&first_vector(&v), &before) > 0.9999);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_deleted_after_load_fails_cleanly_once_unloaded_and_others_serve() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("flaky");
    copy_dir(&tiny("bert"), &dir);
    let state = AppState::new(flaky_manager(&dir, 16), Limits::default());
    let router = app(state.clone());
    expect_serving(&router, "flaky").await;
    expect_serving(&router, "tiny-mpnet").await;

    std::fs::remove_dir_all(&dir).unwrap();
    expect_serving(&router, "flaky").await;
    let unload = axum::http::Request::delete("/api/v1/models/flaky")
        .body(axum::body::Body::empty())
        .unwrap();
    let (status, v) = send(&router, unload).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["unloaded"], 1, "{v}");

    expect_unavailable(&router, "flaky", "flaky").await;
    expect_serving(&router, "tiny-bert").await;
    expect_serving(&router, "tiny-mpnet").await;
    // Readiness is about start-up models: a broken extra model does not take the server out.
    let (status, _) = send(&router, get("/health/ready")).await;
    assert_eq!(status, StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// Real sockets.

async fn serve(state: AppState) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app(state)).await.unwrap() });
    addr
}

fn request(method: &str, path: &str, body: &str) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads a whole `Connection: close` response: status and body (chunked bodies decoded).
/// Blocking: call it from `spawn_blocking`.
fn read_response(stream: &mut TcpStream) -> (u16, Vec<u8>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .expect("no answer within 120 s");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no header end");
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head[9..12].parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let line = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..line]).unwrap(), 16);
            let size = size.unwrap();
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[line + 2..line + 2 + size]);
            rest = &rest[line + 4 + size..];
        }
        body = out;
    }
    (status, body)
}

/// Sends `req` on a fresh connection and reads the answer, off the async workers.
async fn exchange(addr: SocketAddr, req: Vec<u8>) -> (u16, Vec<u8>) {
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        // A server that refuses a body may answer and close before it is all sent.
        let _ = s.write_all(&req);
        read_response(&mut s)
    })
    .await
    .unwrap()
}

async fn call(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    let (status, body) = exchange(addr, request(method, path, body)).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// Connects and sends `req` without reading; the caller drops or reads the stream.
async fn send_only(addr: SocketAddr, req: Vec<u8>) -> TcpStream {
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&req).unwrap();
        s
    })
    .await
    .unwrap()
}

/// Requests holding a slot of the concurrency limit.
fn in_flight(state: &AppState) -> usize {
    state.limits_max_concurrent() - state.inflight.available_permits()
}

fn queued(state: &AppState) -> usize {
    state.batcher.depths().iter().map(|d| d.2).sum()
}

/// Requests (or handles) using any instance of `model`.
fn in_use(state: &AppState, model: &str) -> usize {
    let status = state.manager.model_status(model).unwrap();
    status.instances.iter().map(|i| i.in_use).sum()
}

/// Waits (bounded) until `what` holds.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(60), "never: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_that_disconnects_mid_request_leaves_nothing_behind() {
    let gate = Gate::default();
    let state = AppState::new(manager(), Limits::default()).with_batching(BatchConfig {
        gate: Some(gate.clone()),
        ..BatchConfig::default()
    });
    let addr = serve(state.clone()).await;
    let (status, v) = call(addr, "POST", "/api/v1/embed", r#"{"input":"warm"}"#).await;
    assert_eq!(status, 200, "{v}");
    let gone = || {
        state
            .metrics
            .counter("ember_rejected_requests_total", r#"reason="client_gone""#)
    };

    // Queued: a request the paused worker holds, then the one whose client leaves.
    gate.close();
    let held =
        tokio::spawn(
            async move { call(addr, "POST", "/api/v1/embed", r#"{"input":"held"}"#).await },
        );
    until("the first request is in flight", || in_flight(&state) == 1).await;
    let texts: Vec<String> = (0..512).map(|i| format!("text number {i}")).collect();
    let big = json!({ "input": texts }).to_string();
    let leaver = send_only(addr, request("POST", "/api/v1/embed", &big)).await;
    until("the second request is queued", || queued(&state) == 1).await;
    drop(leaver);
    // The server notices the closed connection and drops the handler: its slot comes back
    // while the job still sits in the queue.
    until("the abandoned request's slot is released", || {
        in_flight(&state) == 1
    })
    .await;
    gate.open();
    let (status, v) = held.await.unwrap();
    assert_eq!(status, 200, "{v}");
    // The worker skips the abandoned job instead of embedding 512 texts for nobody.
    until("the abandoned job is skipped", || gone() == 1).await;
    until("nothing left in flight", || {
        in_flight(&state) == 0 && queued(&state) == 0 && in_use(&state, "tiny-bert") == 0
    })
    .await;
    let texts_embedded = state.metrics.counter_total("ember_embedded_texts_total");
    assert!(texts_embedded < 512, "{texts_embedded} texts embedded");

    // Running: the client leaves while its batch may already be in the model. The answer is
    // thrown away; every gauge still returns to zero.
    let leaver = send_only(addr, request("POST", "/api/v1/embed", &big)).await;
    until("the request is in flight", || in_flight(&state) == 1).await;
    drop(leaver);
    until("nothing left in flight", || {
        in_flight(&state) == 0 && queued(&state) == 0 && in_use(&state, "tiny-bert") == 0
    })
    .await;
    let (status, v) = call(addr, "POST", "/api/v1/embed", r#"{"input":"after"}"#).await;
    assert_eq!(status, 200, "{v}");
    let (_, metrics) = exchange(addr, request("GET", "/metrics", "")).await;
    let text = String::from_utf8(metrics).unwrap();
    assert!(text.contains("ember_inflight_requests 0"), "{text}");
    assert!(
        text.contains(r#"ember_queue_depth{model="tiny-bert",dtype="fp32"} 0"#),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_reader_holds_no_request_slot() {
    // One slot: if the slow reader held it while its answer is written, the next request
    // would get a 429.
    let limits = Limits {
        max_concurrent_requests: 1,
        ..Limits::default()
    };
    let state = AppState::new(manager(), limits);
    let addr = serve(state.clone()).await;
    // An answer far larger than the socket buffers (the server's send buffer tops out at a
    // few MB, and the reader's receive buffer is made tiny).
    let texts: Vec<String> = (0..2048)
        .map(|i| format!("{i} {}", "the cat sat on the mat ".repeat(12)))
        .collect();
    let body = json!({ "inputs": texts }).to_string();
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let slow = socket.connect(addr).await.unwrap().into_std().unwrap();
    slow.set_nonblocking(false).unwrap();
    let req = request("POST", "/tokenize", &body);
    let slow = tokio::task::spawn_blocking(move || {
        let mut slow = slow;
        slow.write_all(&req).unwrap();
        slow
    })
    .await
    .unwrap();
    // Wait until the handler has answered and the slot is free, while nothing is read.
    until("the slow reader's request took its slot", || {
        in_flight(&state) == 1
    })
    .await;
    until("the slot is released before the answer is read", || {
        in_flight(&state) == 0
    })
    .await;
    let (status, v) = call(addr, "POST", "/api/v1/embed", r#"{"input":"meanwhile"}"#).await;
    assert_eq!(status, 200, "{v}");

    let (status, answer) = tokio::task::spawn_blocking(move || {
        let mut slow = slow;
        read_response(&mut slow)
    })
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert!(
        answer.len() > 16 << 20,
        "the answer ({} bytes) must exceed every socket buffer for this test to mean anything",
        answer.len()
    );
    let tokens: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(tokens.as_array().unwrap().len(), 2048);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_body_gets_a_408_and_holds_no_request_slot() {
    // One slot, and one second to send a body.
    let limits = Limits {
        max_concurrent_requests: 1,
        body_timeout: 1,
        ..Limits::default()
    };
    let state = AppState::new(manager(), limits);
    let addr = serve(state.clone()).await;
    let body = r#"{"input": "a body that arrives one byte at a time"}"#;
    // A Slowloris: headers, then a trickle of bytes that never completes the body in time.
    let trickle = |path: &'static str, chunked: bool| {
        tokio::task::spawn_blocking(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            let framing = if chunked {
                "Transfer-Encoding: chunked".to_string()
            } else {
                format!("Content-Length: {}", body.len())
            };
            write!(
                s,
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 {framing}\r\nConnection: close\r\n\r\n"
            )
            .unwrap();
            // Stop sending once the server has answered (writes fail or the answer is there).
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            for b in body.bytes() {
                let sent = if chunked {
                    s.write_all(format!("1\r\n{}\r\n", b as char).as_bytes())
                } else {
                    s.write_all(&[b])
                };
                let mut peek = [0u8; 1];
                if sent.is_err() || s.peek(&mut peek).is_ok_and(|n| n > 0) {
                    break;
                }
            }
            read_response(&mut s)
        })
    };
    let slow = trickle("/api/v1/embed", false);
    let slow_openai = trickle("/v1/embeddings", true);
    // While they trickle, the only slot is free for others.
    let (status, v) = call(addr, "POST", "/api/v1/embed", r#"{"input":"meanwhile"}"#).await;
    assert_eq!(status, 200, "{v}");

    let (status, answer) = slow.await.unwrap();
    let v: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(status, 408, "{v}");
    let msg = check_shape(Shape::Native, &v);
    assert!(msg.contains("--body-timeout"), "{msg}");
    assert_eq!(v["error"]["type"], "body_timeout");
    let (status, answer) = slow_openai.await.unwrap();
    let v: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(status, 408, "{v}");
    assert!(check_shape(Shape::OpenAi, &v).contains("--body-timeout"));
    assert_eq!(
        state
            .metrics
            .counter("ember_rejected_requests_total", r#"reason="body_timeout""#),
        2
    );
    until("nothing left in flight", || in_flight(&state) == 0).await;

    // A body announced larger than the limit is refused before it is read; a chunked one as
    // soon as it passes the limit.
    let limit = Limits::default().max_body_bytes;
    let huge = format!(
        "POST /api/v1/embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{{",
        limit + 1
    );
    let (status, answer) = exchange(addr, huge.into_bytes()).await;
    let v: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(status, 413, "{v}");
    assert!(check_shape(Shape::Native, &v).contains("--max-body-bytes"));
    let mut chunked = b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
        Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        .to_vec();
    // Exactly the limit, then one byte more: the server has read (almost) everything when it
    // answers, so closing the connection does not reset it under the answer.
    let piece = vec![b' '; limit / 8];
    for _ in 0..8 {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(&piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"1\r\n \r\n0\r\n\r\n");
    let (status, answer) = exchange(addr, chunked).await;
    let v: Value = serde_json::from_slice(&answer).unwrap();
    assert_eq!(status, 413, "{v}");
    assert!(check_shape(Shape::Tei, &v).contains("--max-body-bytes"));
}
