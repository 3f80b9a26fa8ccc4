//! Fuzz body for HTTP request parsing in every API dialect: arbitrary bytes become one request to
//! the real router (`ember_server::app`) over the tiny fixture models, and the answer must be a
//! JSON body with a status below 500 in the route's error shape. Shared by the cargo-fuzz binary
//! `http_request` and the replay test `crates/ember-server/tests/fuzz_replay.rs`.
//!
//! Input layout: byte 0 picks the route, byte 1 the content type (bits 0-2), the method (bit 3:
//! GET instead of the route's own, expecting a 405) and the model id for the `/api/v1/models/{id}`
//! routes (bits 4-5), and the API-key case (bits 6-7, see [`Auth`]); the rest is the body (or the
//! id / query for the routes that take one).

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use ember_core::{ModelManager, ModelSpec, Registry, Resolver};
use ember_server::config::Secret;
use ember_server::{app, AppState, AuthConfig, Limits};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// The routes the fuzzer drives, by byte 0 modulo their count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    NativeEmbed,
    OpenAiEmbeddings,
    OpenAiEmbeddingsUnversioned,
    OllamaEmbed,
    OllamaEmbeddings,
    TeiEmbed,
    TeiTokenize,
    /// `POST /api/v1/models/{id}/load` with the body as the load request.
    NativeLoad,
    /// `GET /api/v1/models/{body}` (the body percent-encoded into the path).
    NativeGetModel,
    /// `DELETE /api/v1/models/{id}?dtype={body}`.
    NativeUnload,
    /// `GET /v1/models/{body}` (the body percent-encoded into the path).
    OpenAiGetModel,
}

const ROUTES: [Route; 11] = [
    Route::NativeEmbed,
    Route::OpenAiEmbeddings,
    Route::OpenAiEmbeddingsUnversioned,
    Route::OllamaEmbed,
    Route::OllamaEmbeddings,
    Route::TeiEmbed,
    Route::TeiTokenize,
    Route::NativeLoad,
    Route::NativeGetModel,
    Route::NativeUnload,
    Route::OpenAiGetModel,
];

const CONTENT_TYPES: [Option<&str>; 8] = [
    Some("application/json"),
    Some("application/json; charset=utf-8"),
    None,
    Some("text/plain"),
    Some("application/x-www-form-urlencoded"),
    Some("application/vnd.api+json"),
    Some("APPLICATION/JSON"),
    Some("multipart/form-data; boundary=x"),
];

/// Model ids for the routes that take one in the path (the last is unknown).
const MODEL_IDS: [&str; 4] = [
    "tiny-bert",
    "tiny-mpnet",
    "TINY-XLM-ROBERTA",
    "no-such-model",
];

/// The API key of the keyed server the [`Auth`] cases other than `Open` talk to.
const API_KEY: &str = "fuzz-key";
/// Its admin key (the load and unload routes take only this one).
const ADMIN_KEY: &str = "fuzz-admin";

/// Which server a request goes to, and which key it presents (flags bits 6-7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// A server that asks for no key; no key sent.
    Open,
    /// A keyed server; the route's own key sent (the admin key on admin routes).
    RightKey,
    /// A keyed server; no `Authorization` header.
    NoKey,
    /// A keyed server; the API key everywhere, which the admin routes must refuse.
    UserKey,
}

/// One decoded fuzz input.
#[derive(Debug)]
pub struct Case {
    pub route: Route,
    pub auth: Auth,
    pub method: Method,
    pub uri: String,
    pub content_type: Option<&'static str>,
    pub body: Vec<u8>,
}

impl Case {
    /// The request `data` stands for, or `None` when it is too short to pick a route.
    pub fn decode(data: &[u8]) -> Option<Self> {
        let (&r, rest) = data.split_first()?;
        let (&flags, body) = rest.split_first()?;
        let route = ROUTES[r as usize % ROUTES.len()];
        let id = MODEL_IDS[(flags as usize >> 4) & 3];
        let (own, uri, body) = match route {
            Route::NativeEmbed => (Method::POST, "/api/v1/embed".into(), body.to_vec()),
            Route::OpenAiEmbeddings => (Method::POST, "/v1/embeddings".into(), body.to_vec()),
            Route::OpenAiEmbeddingsUnversioned => {
                (Method::POST, "/embeddings".into(), body.to_vec())
            }
            Route::OllamaEmbed => (Method::POST, "/api/embed".into(), body.to_vec()),
            Route::OllamaEmbeddings => (Method::POST, "/api/embeddings".into(), body.to_vec()),
            Route::TeiEmbed => (Method::POST, "/embed".into(), body.to_vec()),
            Route::TeiTokenize => (Method::POST, "/tokenize".into(), body.to_vec()),
            Route::NativeLoad => (
                Method::POST,
                format!("/api/v1/models/{id}/load"),
                body.to_vec(),
            ),
            Route::NativeGetModel => (
                Method::GET,
                format!("/api/v1/models/{}", percent_encode(body)),
                Vec::new(),
            ),
            Route::NativeUnload => (
                Method::DELETE,
                format!("/api/v1/models/{id}?dtype={}", percent_encode(body)),
                Vec::new(),
            ),
            Route::OpenAiGetModel => (
                Method::GET,
                format!("/v1/models/{}", percent_encode(body)),
                Vec::new(),
            ),
        };
        let method = if flags & 8 != 0 && own != Method::GET {
            Method::GET
        } else {
            own
        };
        let auth = [Auth::Open, Auth::RightKey, Auth::NoKey, Auth::UserKey][flags as usize >> 6];
        Some(Self {
            route,
            auth,
            method,
            uri,
            content_type: CONTENT_TYPES[flags as usize & 7],
            body,
        })
    }

    /// The model the request names (body `model`, or the path id), if any.
    fn named_model(&self) -> Option<String> {
        match self.route {
            Route::NativeLoad | Route::NativeUnload => {
                let id = self.uri.trim_start_matches("/api/v1/models/");
                Some(id.split(['/', '?']).next().unwrap_or(id).to_string())
            }
            Route::NativeGetModel => Some(percent_decode(
                self.uri.trim_start_matches("/api/v1/models/"),
            )),
            Route::OpenAiGetModel => {
                Some(percent_decode(self.uri.trim_start_matches("/v1/models/")))
            }
            _ => serde_json::from_slice::<Value>(&self.body)
                .ok()?
                .get("model")?
                .as_str()
                .map(str::to_string),
        }
    }

    /// Loading and unloading models: routes behind the admin key (as a GET, the unload route's
    /// path is the keyed model-info route).
    fn is_admin(&self) -> bool {
        matches!(self.route, Route::NativeLoad | Route::NativeUnload) && self.method != Method::GET
    }

    fn request(&self) -> Option<Request<Body>> {
        let mut b = Request::builder()
            .method(self.method.clone())
            .uri(&self.uri);
        if let Some(ct) = self.content_type {
            b = b.header("content-type", ct);
        }
        let key = match self.auth {
            Auth::Open | Auth::NoKey => None,
            Auth::RightKey if self.is_admin() => Some(ADMIN_KEY),
            Auth::RightKey | Auth::UserKey => Some(API_KEY),
        };
        if let Some(key) = key {
            b = b.header("authorization", format!("Bearer {key}"));
        }
        b.body(Body::from(self.body.clone())).ok()
    }
}

/// Bytes outside the URL-unreserved set as `%XX`.
fn percent_encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Where the harness points the resolver: folders that do not exist, so catalog models other
/// than the tiny fixtures fail fast and offline, and that must never show up in a response.
fn scratch() -> PathBuf {
    std::env::temp_dir().join("ember-fuzz-http-scratch")
}

struct Harness {
    runtime: tokio::runtime::Runtime,
    /// Asks for no key.
    open: Router,
    /// Asks for [`API_KEY`], and [`ADMIN_KEY`] on admin routes; same models and manager.
    keyed: Router,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let mut registry = Registry::builtin();
        for kind in ["bert", "mpnet", "xlm-roberta"] {
            let dir = crate::replay::repo_root()
                .join("fixtures/reference/tiny")
                .join(kind);
            let mut spec = ModelSpec::for_path(&format!("tiny-{kind}"), &dir);
            spec.is_default = kind == "bert";
            registry.register(spec).expect("tiny model registers");
        }
        let mut resolver = Resolver::from_env();
        resolver.models_dir = None;
        resolver.hf_cache = scratch().join("hf");
        resolver.cache_dir = scratch().join("cache");
        resolver.python_paths = Vec::new();
        resolver.offline = true;
        let manager = Arc::new(ModelManager::new(registry, resolver));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let state = AppState::new(manager, Limits::default());
        let keyed = app(state.clone().with_auth(AuthConfig {
            api_keys: vec![Secret::new(API_KEY)],
            admin_key: Some(Secret::new(ADMIN_KEY)),
            metrics_require_key: true,
        }));
        Harness {
            runtime,
            open: app(state),
            keyed,
        }
    })
}

/// True when `model` names a built-in catalog entry (not a tiny fixture): its files are not on
/// this machine, so a 503 "model load failed" is the server's honest answer, not a bug.
fn catalog_model_without_files(model: &str) -> bool {
    Registry::builtin()
        .lookup(model)
        .is_ok_and(|spec| spec.path.is_none())
}

/// Sends `data` as one request (see the module docs) and checks the answer; panics on a bug.
pub fn http_request(data: &[u8]) {
    if let Some((case, status, body)) = respond(data) {
        check(&case, status, &body);
    }
}

/// The request `data` stands for, sent to the router, with the status and body it got; `None`
/// when `data` is too short or not a valid request line.
pub fn respond(data: &[u8]) -> Option<(Case, StatusCode, Vec<u8>)> {
    let case = Case::decode(data)?;
    let req = case.request()?;
    let h = harness();
    let (status, bytes) = h.runtime.block_on(async {
        let router = match case.auth {
            Auth::Open => &h.open,
            _ => &h.keyed,
        };
        let resp = router
            .clone()
            .oneshot(req)
            .await
            .expect("router is infallible");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (status, bytes.to_vec())
    });
    Some((case, status, bytes))
}

fn check(case: &Case, status: StatusCode, bytes: &[u8]) {
    let shown = || {
        format!(
            "{} {} ({:?}) body {:?} -> {status} {}",
            case.method,
            case.uri,
            case.content_type,
            String::from_utf8_lossy(&case.body),
            String::from_utf8_lossy(bytes)
        )
    };
    let body: Value = serde_json::from_slice(bytes)
        .unwrap_or_else(|e| panic!("response is not JSON ({e}): {}", shown()));
    if status.is_server_error() {
        let allowed = status == StatusCode::SERVICE_UNAVAILABLE
            && case
                .named_model()
                .is_some_and(|m| catalog_model_without_files(&m));
        assert!(allowed, "server error for a client's request: {}", shown());
    }
    // Without the route's key nothing is served, whatever else the request holds.
    let refused = match case.auth {
        Auth::NoKey => true,
        Auth::UserKey => case.is_admin(),
        Auth::Open | Auth::RightKey => false,
    };
    assert!(
        !(refused && status.is_success()),
        "served without the route's key: {}",
        shown()
    );
    if !refused {
        assert!(
            !matches!(status.as_u16(), 401 | 403),
            "refused with the route's key: {}",
            shown()
        );
    }
    if status.is_client_error() || status.is_server_error() {
        assert!(
            body.get("error").is_some(),
            "error without an `error` field: {}",
            shown()
        );
        let text = String::from_utf8_lossy(bytes);
        let sent = String::from_utf8_lossy(&case.body);
        let root = crate::replay::repo_root();
        for secret in [root.as_path(), scratch().as_path()] {
            let secret = secret.to_string_lossy();
            assert!(
                !text.contains(&*secret) || sent.contains(&*secret) || case.uri.contains(&*secret),
                "error leaks the server path {secret}: {}",
                shown()
            );
        }
        return;
    }
    assert!(status.is_success(), "unexpected status: {}", shown());
    assert!(
        !has_null_number(&body),
        "a vector holds null (a NaN or infinity serialized): {}",
        shown()
    );
    if let Some(want) = expected_rows(case) {
        let got = match case.route {
            Route::NativeEmbed => body["embeddings"].as_array().map(Vec::len),
            Route::OpenAiEmbeddings | Route::OpenAiEmbeddingsUnversioned => {
                body["data"].as_array().map(Vec::len)
            }
            Route::OllamaEmbed => body["embeddings"].as_array().map(Vec::len),
            Route::TeiEmbed | Route::TeiTokenize => body.as_array().map(Vec::len),
            _ => return,
        };
        assert_eq!(got, Some(want), "rows answered: {}", shown());
    }
}

/// How many vectors (or token lists) an embedding request must get back, when the request says.
fn expected_rows(case: &Case) -> Option<usize> {
    let req: Value = serde_json::from_slice(&case.body).ok()?;
    let input = match case.route {
        Route::TeiEmbed | Route::TeiTokenize => req.get("inputs")?,
        Route::NativeEmbed
        | Route::OpenAiEmbeddings
        | Route::OpenAiEmbeddingsUnversioned
        | Route::OllamaEmbed => req.get("input")?,
        _ => return None,
    };
    match input {
        Value::String(s) if case.route == Route::OllamaEmbed && s.is_empty() => Some(0),
        Value::String(_) => Some(1),
        // OpenAI: one list of token ids is one input.
        Value::Array(a) if matches!(a.first(), Some(Value::Number(_))) => Some(1),
        Value::Array(a) => Some(a.len()),
        _ => None,
    }
}

/// A `null` inside a list: how serde_json writes a NaN or an infinity in a vector.
fn has_null_number(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.iter().any(|x| x.is_null() || has_null_number(x)),
        Value::Object(o) => o.values().any(has_null_number),
        _ => false,
    }
}
