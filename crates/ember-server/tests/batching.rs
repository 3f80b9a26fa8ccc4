//! Dynamic batching and overload, through the router with tiny models: concurrent requests are
//! coalesced into fewer forward passes (counted through metrics) with answers equal to the
//! unbatched ones; a full queue answers 429 with `Retry-After` while every accepted request
//! succeeds; a request whose client left is skipped; the concurrency limit refuses with 429.
//! Workers are held at a closed [`Gate`] while requests queue, so no test depends on timing.

mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use common::*;
use ember_core::EmbedOptions;
use ember_server::{app, AppState, BatchConfig, Gate, Limits};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

async fn call(app: &Router, req: Request<Body>) -> (StatusCode, HeaderMap, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (parts.status, parts.headers, v)
}

/// Waits until `n` requests sit in the queues (bounded; the workers are paused).
async fn wait_queued(state: &AppState, n: usize) {
    let start = Instant::now();
    loop {
        let queued: usize = state.batcher.depths().iter().map(|d| d.2).sum();
        if queued >= n {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "only {queued} of {n} requests queued"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn passes(state: &AppState) -> u64 {
    state.metrics.counter_total("ember_forward_passes_total")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_share_forward_passes_and_match_unbatched() {
    let gate = Gate::default();
    let state = AppState::new(manager(), Limits::default()).with_batching(BatchConfig {
        gate: Some(gate.clone()),
        ..BatchConfig::default()
    });
    let router = app(state.clone());
    // Load the model first, so every request below lands in one queue.
    let (status, _, _) = call(&router, post_json("/api/v1/embed", r#"{"input":"warm"}"#)).await;
    assert_eq!(status, StatusCode::OK);
    let before = passes(&state);

    gate.close();
    let n = 40;
    let mut tasks = Vec::new();
    for i in 0..n {
        // Different lengths and options: batch mates must not change anyone's answer.
        // Request 5 is far over the model's limit: it is truncated, and counted after.
        let words = if i == 5 { 3000 } else { i % 7 };
        let text = format!("request {i}: {}", "word ".repeat(words));
        let body = match i % 3 {
            0 => json!({"input": text}),
            1 => json!({"input": [text.clone(), format!("{text} again")], "normalize": false}),
            _ => json!({"input": text, "dimensions": 16}),
        };
        let router = router.clone();
        tasks.push(tokio::spawn(async move {
            let out = call(&router, post_json("/api/v1/embed", &body.to_string())).await;
            (body, out)
        }));
    }
    // The worker holds the first request, the other n-1 wait behind it.
    wait_queued(&state, n - 1).await;
    gate.open();

    let manager = state.manager.clone();
    for t in tasks {
        let (body, (status, _, got)) = t.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{got}");
        let texts: Vec<String> = match &body["input"] {
            Value::String(s) => vec![s.clone()],
            v => serde_json::from_value(v.clone()).unwrap(),
        };
        let opts = EmbedOptions {
            normalize: body["normalize"].as_bool().unwrap_or(true),
            dimensions: body["dimensions"].as_u64().map(|d| d as usize),
            ..EmbedOptions::default()
        };
        let alone = manager.embed(None, None, &texts, &opts).unwrap();
        assert_eq!(got["usage"]["prompt_tokens"], alone.prompt_tokens, "{body}");
        for (i, want) in alone.iter().enumerate() {
            let have = floats(&got["embeddings"][i]);
            assert_eq!(have.len(), want.len(), "{body}");
            let worst = have
                .iter()
                .zip(want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-5, "{body}: input {i} differs by {worst}");
            assert!(cosine(&have, want) > 0.99999, "{body}");
        }
    }
    let used = passes(&state) - before;
    // 40 requests (53 texts) in one batch of at most 64 sequences per pass.
    assert!(used < n as u64, "{used} forward passes for {n} requests");
    assert!(used <= 2, "{used} forward passes");
    let batched = state.metrics.counter_total("ember_batches_total");
    assert!(batched <= 3, "{batched} batches");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_queue_answers_429_and_accepted_requests_succeed() {
    let gate = Gate::default();
    let state = AppState::new(manager(), Limits::default()).with_batching(BatchConfig {
        queue_size: 2,
        gate: Some(gate.clone()),
        ..BatchConfig::default()
    });
    let router = app(state.clone());
    gate.close();
    let mut tasks = Vec::new();
    for i in 0..12 {
        let router = router.clone();
        let body = json!({"input": format!("text {i}")}).to_string();
        tasks.push(tokio::spawn(async move {
            call(&router, post_json("/api/v1/embed", &body)).await
        }));
    }
    // Let every request reach the queue or be refused before releasing the worker (the one the
    // worker holds is in neither count).
    let start = Instant::now();
    loop {
        let queued: usize = state.batcher.depths().iter().map(|d| d.2).sum();
        let refused = state
            .metrics
            .counter("ember_rejected_requests_total", r#"reason="queue_full""#);
        if queued as u64 + refused >= 11 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "requests never refused"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gate.open();
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        let (status, headers, body) = t.await.unwrap();
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                refused += 1;
                assert_eq!(headers["retry-after"], "1");
                assert_eq!(body["error"]["type"], "queue_full");
                assert!(body["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("tiny-bert"));
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    // At most one held by the worker and two in the queue: the rest were refused.
    assert_eq!(ok + refused, 12);
    assert!((2..=3).contains(&ok), "{ok} accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_whose_client_left_is_skipped() {
    let gate = Gate::default();
    let state = AppState::new(manager(), Limits::default()).with_batching(BatchConfig {
        gate: Some(gate.clone()),
        ..BatchConfig::default()
    });
    let router = app(state.clone());
    let (status, _, _) = call(&router, post_json("/api/v1/embed", r#"{"input":"warm"}"#)).await;
    assert_eq!(status, StatusCode::OK);
    gate.close();
    let spawn = |text: &'static str| {
        let router = router.clone();
        let body = json!({ "input": text }).to_string();
        tokio::spawn(async move { call(&router, post_json("/api/v1/embed", &body)).await })
    };
    let held = spawn("a");
    let gone = spawn("b");
    // Both reached the batcher: one taken by the paused worker and one queued, or both queued.
    let start = Instant::now();
    loop {
        let queued: usize = state.batcher.depths().iter().map(|d| d.2).sum();
        let used = state.limits_max_concurrent() - state.inflight.available_permits();
        if (queued == 1 && used == 2) || queued == 2 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "requests never queued"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    gone.abort();
    let _ = gone.await;
    gate.open();
    let (status, _, _) = held.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let start = Instant::now();
    while state
        .metrics
        .counter("ember_rejected_requests_total", r#"reason="client_gone""#)
        == 0
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the abandoned job was not skipped"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_concurrency_limit_answers_429_with_retry_after() {
    let gate = Gate::default();
    let limits = Limits {
        max_concurrent_requests: 1,
        ..Limits::default()
    };
    let state = AppState::new(manager(), limits).with_batching(BatchConfig {
        gate: Some(gate.clone()),
        ..BatchConfig::default()
    });
    let router = app(state.clone());
    gate.close();
    let first = {
        let router = router.clone();
        tokio::spawn(
            async move { call(&router, post_json("/api/v1/embed", r#"{"input":"a"}"#)).await },
        )
    };
    let start = Instant::now();
    while state.inflight.available_permits() > 0 {
        assert!(start.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (status, headers, body) = call(
        &router,
        post_json("/v1/embeddings", r#"{"input":"b","model":"tiny-bert"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(headers["retry-after"], "1");
    // OpenAI's error shape on an OpenAI route.
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    // Probes are never limited.
    let (status, _, _) = call(&router, get("/health/live")).await;
    assert_eq!(status, StatusCode::OK);
    gate.open();
    assert_eq!(first.await.unwrap().0, StatusCode::OK);
}

/// Bodies held by all requests together stay under `--max-inflight-body-bytes`: one more is
/// answered 429 (in its dialect's shape) before its bytes are read, and served once the bytes
/// in flight are released.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bytes_of_bodies_in_flight_are_bounded_server_wide() {
    let gate = Gate::default();
    let limits = Limits {
        max_body_bytes: 100,
        max_inflight_body_bytes: 150,
        ..Limits::default()
    };
    let state = AppState::new(manager(), limits).with_batching(BatchConfig {
        gate: Some(gate.clone()),
        ..BatchConfig::default()
    });
    let router = app(state.clone());
    let body = |text: &str| json!({ "input": format!("{text} {}", "x".repeat(60)) }).to_string();
    gate.close();
    // The first request's body (~80 bytes) is read and held while its job waits at the gate.
    let first = {
        let (router, body) = (router.clone(), body("first"));
        tokio::spawn(async move { call(&router, post_json("/api/v1/embed", &body)).await })
    };
    let start = Instant::now();
    while state.limits_max_concurrent() - state.inflight.available_permits() < 1 {
        assert!(start.elapsed() < Duration::from_secs(30), "never in flight");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (status, headers, got) = call(&router, post_json("/v1/embeddings", &body("second"))).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{got}");
    assert_eq!(headers["retry-after"], "1");
    assert_eq!(got["error"]["type"], "rate_limit_error", "{got}");
    assert!(got["error"]["message"]
        .as_str()
        .unwrap()
        .contains("--max-inflight-body-bytes"));
    gate.open();
    assert_eq!(first.await.unwrap().0, StatusCode::OK);
    // Released with the first answer: the same body is served now.
    let (status, _, got) = call(&router, post_json("/v1/embeddings", &body("second"))).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(
        state
            .metrics
            .counter("ember_rejected_requests_total", r#"reason="body_bytes""#),
        1
    );
}
