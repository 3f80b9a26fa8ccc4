//! The real server on port 0: readiness flips after start-up loading, requests are served over a
//! socket, and shutdown is graceful. Also real all-MiniLM-L6-v2 parity over HTTP when available.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use ember_server::{Flags, Settings};
use serde_json::Value;

/// Minimal HTTP/1.1 client over std (keeps the test free of an HTTP client dependency).
fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status: u16 = raw[9..12].parse().unwrap();
    let payload = raw.split("\r\n\r\n").nth(1).unwrap_or("");
    // Bodies here are small and sent with Content-Length (no chunking).
    (status, serde_json::from_str(payload).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_on_a_real_socket_and_shuts_down() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let settings =
        Settings::load(&Flags::try_parse_from(["ember-server", "--model", "tiny-mpnet"]).unwrap())
            .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        ember_server::serve(listener, &settings, manager(), async {
            let _ = stop_rx.await;
        })
        .await
    });
    let result = tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        loop {
            let (status, _) = request(addr, "GET", "/health/ready", None);
            if status == 200 {
                break;
            }
            assert_eq!(status, 503);
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "never became ready"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let (status, body) = request(
            addr,
            "POST",
            "/api/v1/embed",
            Some(r#"{"input":["a","b"]}"#),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["model"], "tiny-bert");
        let (_, models) = request(addr, "GET", "/api/v1/models/tiny-mpnet", None);
        assert_eq!(
            models["loaded"], true,
            "start-up models are loaded: {models}"
        );
    })
    .await;
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    result.unwrap();
}

/// Real-model parity over HTTP against sentence-transformers' vectors (`fixtures/reference`).
async fn real_model_over_http(id: &str, alias: &str) {
    let reference: Value = serde_json::from_slice(
        &std::fs::read(fixtures().join(format!("reference/{id}.json"))).unwrap(),
    )
    .unwrap();
    let manager = std::sync::Arc::new(ember_core::ModelManager::new(
        ember_core::Registry::builtin(),
        ember_core::Resolver::from_env(),
    ));
    if let Err(e) = manager.lease(Some(id), None) {
        if std::env::var("EMBER_REQUIRE_REAL_MODELS").as_deref() == Ok("1") {
            panic!("{id} not available: {e}");
        }
        eprintln!("note: skipping real-model HTTP parity for {id}: {e}");
        return;
    }
    let app = ember_server::app(ember_server::AppState::new(manager, Default::default()));
    let texts = reference["texts"].clone();
    let n = texts.as_array().unwrap().len();
    for normalize in [true, false] {
        let body =
            serde_json::json!({"input": texts, "model": alias, "normalize": normalize}).to_string();
        let (status, got) = send(&app, post_json("/api/v1/embed", &body)).await;
        assert_eq!(status, 200, "{got}");
        assert_eq!(got["model"], id);
        if normalize {
            let mut sum = 0.0;
            for i in 0..n {
                let c = cosine(
                    &floats(&got["embeddings"][i]),
                    &floats(&reference["normalized"][i]),
                );
                assert!(c >= 0.9999, "{id} text {i}: cosine {c}");
                sum += c;
            }
            assert!(sum / n as f64 >= 0.99999);
        } else {
            for i in 0..n {
                let (a, b) = (
                    floats(&got["embeddings"][i]),
                    floats(&reference["raw_mean_pooled"][i]),
                );
                let diff: f64 = a
                    .iter()
                    .zip(&b)
                    .map(|(x, y)| ((x - y) as f64).powi(2))
                    .sum::<f64>()
                    .sqrt();
                let norm: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum::<f64>().sqrt();
                assert!(
                    diff / norm < 1e-4,
                    "{id} raw text {i}: rel L2 {}",
                    diff / norm
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_minilm_over_http_matches_sentence_transformers() {
    real_model_over_http("all-MiniLM-L6-v2", "all-minilm").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_mpnet_over_http_matches_sentence_transformers() {
    real_model_over_http("all-mpnet-base-v2", "all-mpnet-base-v2").await;
}

/// A client that trickles its request headers (a Slowloris) has its connection closed after
/// `--header-timeout`; other clients are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_headers_is_cut_off() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let flags = ember_server::Flags::try_parse_from([
        "ember-server",
        "--header-timeout",
        "1",
        "--lazy",
        "--no-warmup",
    ])
    .unwrap();
    let settings = Settings::load(&flags).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        ember_server::serve(listener, &settings, manager(), async {
            let _ = stop_rx.await;
        })
        .await
    });
    let trickle = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        s.write_all(b"POST /api/v1/embed HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        let start = Instant::now();
        let header = b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        for &b in header.iter().cycle() {
            if s.write_all(&[b]).is_err() {
                break; // closed by the server
            }
            // Waits ~100 ms for the server to say something or close.
            let mut buf = [0u8; 512];
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "a trickling client kept its connection"
            );
        }
        start.elapsed()
    });
    // Meanwhile an ordinary client is served.
    let ok = tokio::task::spawn_blocking(move || request(addr, "GET", "/health/live", None).0);
    assert_eq!(ok.await.unwrap(), 200);
    let held = trickle.await.unwrap();
    assert!(held >= Duration::from_millis(900), "cut off after {held:?}");
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
}
