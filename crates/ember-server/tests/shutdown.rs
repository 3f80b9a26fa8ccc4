//! The real `ember-server` binary on port 0: SIGTERM while requests are in flight stops it
//! accepting, lets every in-flight request finish, and exits 0.

#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::tiny;

/// The listening address from the server's log line (`ember listening addr=…`).
fn parse_addr(line: &str) -> Option<SocketAddr> {
    // Strip ANSI colour codes, in case the logger adds them.
    let mut plain = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    if !plain.contains("ember listening") {
        return None;
    }
    let rest = &plain[plain.find("addr=")? + 5..];
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    addr.parse().ok()
}

/// Sends one request; returns the status once the whole answer has been read.
fn post(addr: SocketAddr, path: &str, body: &str, sent: &mpsc::Sender<()>) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    s.flush().unwrap();
    sent.send(()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let head = String::from_utf8_lossy(&raw[..raw.len().min(12)]).into_owned();
    head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// `ember_inflight_requests` from `/metrics` (counting the metrics request itself, if it does).
fn inflight(addr: SocketAddr) -> f64 {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    raw.lines()
        .find_map(|l| l.strip_prefix("ember_inflight_requests "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn sigterm_finishes_in_flight_requests_and_exits_zero() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ember-server"))
        .args(["--port", "0", "--warmup-batch-sizes", "1"])
        .arg("--default-model")
        .arg(tiny("bert"))
        .env("NO_COLOR", "1")
        .env("EMBER_LOG", "info")
        .env_remove("EMBER_CONFIG")
        .env_remove("EMBER_API_KEYS")
        .env_remove("EMBER_ADMIN_KEY")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (addr_tx, addr_rx) = mpsc::channel();
    let log = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(a) = parse_addr(&line) {
                let _ = addr_tx.send(a);
            }
            lines.push(line);
        }
        lines
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the server never logged its address");

    // Wait for readiness (the default model loaded and warmed up).
    let mut ready = false;
    for _ in 0..600 {
        let mut s = TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET /health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = String::new();
        let _ = s.read_to_string(&mut raw);
        if raw.starts_with("HTTP/1.1 200") {
            ready = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ready, "the server never became ready");

    let baseline = inflight(addr);
    // Large requests, so several are still queued or running when SIGTERM arrives.
    let texts: Vec<String> = (0..1500)
        .map(|i| format!("sentence number {i} {}", "with several words ".repeat(8)))
        .collect();
    let body = serde_json::json!({ "input": texts }).to_string();
    let (sent_tx, sent_rx) = mpsc::channel();
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let body = body.clone();
            let sent = sent_tx.clone();
            std::thread::spawn(move || post(addr, "/api/v1/embed", &body, &sent))
        })
        .collect();
    for _ in 0..clients.len() {
        sent_rx.recv_timeout(Duration::from_secs(60)).unwrap();
    }
    // A request still in the kernel's accept queue when the listener closes is reset, not
    // in flight: wait until the server has taken all of them in before SIGTERM.
    let mut taken = false;
    for _ in 0..1200 {
        if inflight(addr) >= baseline + clients.len() as f64 {
            taken = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(taken, "the server never had all requests in flight");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    for c in clients {
        assert_eq!(c.join().unwrap(), 200, "an in-flight request failed");
    }
    let exit = child.wait().unwrap();
    let lines = log.join().unwrap();
    assert_eq!(exit.code(), Some(0), "log:\n{}", lines.join("\n"));
    assert!(
        lines.iter().any(|l| l.contains("shutting down")),
        "log:\n{}",
        lines.join("\n")
    );
    let stop = lines
        .iter()
        .position(|l| l.contains("shutting down"))
        .unwrap();
    let after = lines[stop..]
        .iter()
        .filter(|l| l.contains("status=200"))
        .count();
    eprintln!("{after} of 6 requests finished after SIGTERM");
    // The listener is gone.
    assert!(TcpStream::connect(addr).is_err());
}
