//! `POST /api/v1/chunk` through `oneshot`: the windows the core cuts in-process (`Embedder::chunk`),
//! in characters, with the prompt counted against the limit, and its bad input in the native
//! error shape, each naming the field, model or limit.

mod common;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::Router;
use common::*;
use ember_core::{Chunk, EmbedOptions, Embedder, InputType, ModelManager, ModelSpec, Registry};
use ember_server::{app, AppState, Limits};
use serde_json::{json, Value};

/// The tiny BERT (default), the tiny Qwen3 (with a query prompt) and a tiny cross-encoder.
fn chunk_app() -> Router {
    let mut reg = Registry::builtin();
    for (id, dir) in [
        ("tiny-bert", "bert"),
        ("tiny-qwen3", "qwen3"),
        ("tiny-cross", "cross-bert"),
    ] {
        let mut spec = ModelSpec::for_path(id, &tiny(dir));
        spec.is_default = id == "tiny-bert";
        reg.register(spec).unwrap();
    }
    let manager = Arc::new(ModelManager::new(reg, ember_core::Resolver::from_env()));
    app(AppState::new(manager, Limits::default()))
}

async fn chunk(app: &Router, body: Value) -> (StatusCode, Value) {
    send(app, post_json("/api/v1/chunk", &body.to_string())).await
}

fn triples(spans: &Value) -> Vec<(usize, usize, usize)> {
    let n = |v: &Value| v.as_u64().unwrap() as usize;
    spans
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (n(&c["start"]), n(&c["end"]), n(&c["tokens"])))
        .collect()
}

const TEXTS: [&str; 3] = [
    "Ünïcödé café naïve résumé — one two three four five six seven eight",
    "short",
    "",
];

#[tokio::test]
async fn chunks_are_the_core_s_windows_in_characters() {
    let app = chunk_app();
    let core = Embedder::load("tiny-bert", &tiny("bert")).unwrap();
    let opts = EmbedOptions::default();
    let body = json!({"input": TEXTS, "chunk_tokens": 4, "chunk_overlap": 1, "return_text": true});
    let (status, got) = chunk(&app, body).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["model"], "tiny-bert");
    assert_eq!(
        (got["chunk_tokens"].as_u64(), got["chunk_overlap"].as_u64()),
        (Some(4), Some(1))
    );
    let mut content = 0;
    for (i, text) in TEXTS.iter().enumerate() {
        let want = Chunk::in_chars(text, &core.chunk(text, 4, 1, &opts).unwrap());
        let want: Vec<_> = want.iter().map(|c| (c.start, c.end, c.tokens)).collect();
        assert_eq!(triples(&got["chunks"][i]), want, "text {i}");
        // Character offsets: `text` is the slice of the text's characters.
        let chars: Vec<char> = text.chars().collect();
        for c in got["chunks"][i].as_array().unwrap() {
            let (s, e) = (
                c["start"].as_u64().unwrap() as usize,
                c["end"].as_u64().unwrap() as usize,
            );
            assert_eq!(c["text"], chars[s..e].iter().collect::<String>());
        }
        content += core.tokenizer().content_spans(text).unwrap().len();
    }
    // The first text is long enough to need several windows, and the usage counts each content
    // token once, overlaps included.
    assert!(got["chunks"][0].as_array().unwrap().len() > 2);
    assert_eq!(got["usage"]["prompt_tokens"], content);
    // Without `return_text` no text is sent.
    let (_, plain) = chunk(&app, json!({"input": "one two", "chunk_tokens": 4})).await;
    assert!(plain["chunks"][0][0].get("text").is_none(), "{plain}");
}

#[tokio::test]
async fn the_default_window_is_the_largest_that_fits_with_the_prompt() {
    let app = chunk_app();
    let core = Embedder::load("tiny-qwen3", &tiny("qwen3")).unwrap();
    let plain = core.max_chunk_tokens(&EmbedOptions::default()).unwrap();
    let query = EmbedOptions {
        input_type: Some(InputType::Query),
        ..EmbedOptions::default()
    };
    let with_prompt = core.max_chunk_tokens(&query).unwrap();
    // The query prompt's tokens count against the limit.
    assert!(with_prompt < plain, "{with_prompt} {plain}");
    for (input_type, want) in [(None, plain), (Some("query"), with_prompt)] {
        let mut body = json!({"input": ["a b c"], "model": "tiny-qwen3"});
        if let Some(t) = input_type {
            body["input_type"] = json!(t);
        }
        let (status, got) = chunk(&app, body).await;
        assert_eq!(status, StatusCode::OK, "{got}");
        assert_eq!(got["chunk_tokens"], want);
    }
    // A window one past the largest is refused, naming the largest.
    let body = json!({"input": "a", "model": "tiny-qwen3", "input_type": "query",
        "chunk_tokens": with_prompt + 1});
    let (status, err) = chunk(&app, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("use at most {with_prompt}")),
        "{message}"
    );
}

#[tokio::test]
async fn bad_chunk_requests_name_the_field_model_or_limit() {
    let app = chunk_app();
    let cases = [
        (
            json!({"input": "a b", "chunk_tokens": 0}),
            StatusCode::BAD_REQUEST,
            "chunk_tokens",
        ),
        (
            json!({"input": "a b", "chunk_tokens": 4, "chunk_overlap": 4}),
            StatusCode::BAD_REQUEST,
            "chunk_overlap",
        ),
        (
            json!({"input": [], "chunk_tokens": 4}),
            StatusCode::BAD_REQUEST,
            "input",
        ),
        (
            json!({"input": [1], "chunk_tokens": 4}),
            StatusCode::BAD_REQUEST,
            "input[0]",
        ),
        (json!({"chunk_tokens": 4}), StatusCode::BAD_REQUEST, "input"),
        (
            json!({"input": "a", "chunk_size": 4}),
            StatusCode::BAD_REQUEST,
            "chunk_size",
        ),
        (
            json!({"input": "a", "input_type": "query", "prompt_name": "query"}),
            StatusCode::BAD_REQUEST,
            "input_type",
        ),
        (
            json!({"input": "a", "prompt_name": "nope"}),
            StatusCode::BAD_REQUEST,
            "nope",
        ),
        (
            json!({"input": "a", "model": "no-such-model"}),
            StatusCode::NOT_FOUND,
            "no-such-model",
        ),
        (
            json!({"input": "a", "model": "tiny-cross"}),
            StatusCode::BAD_REQUEST,
            "reranker",
        ),
        (
            json!({"input": "a", "dtype": "fp64"}),
            StatusCode::BAD_REQUEST,
            "fp64",
        ),
    ];
    for (body, status, named) in cases {
        let (got, err) = chunk(&app, body.clone()).await;
        assert_eq!(got, status, "{body} -> {err}");
        let message = err["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(named), "{body} -> {message}");
    }
    // The route is listed in the API description.
    let (_, doc) = send(&app, get("/openapi.json")).await;
    assert!(doc["paths"]["/api/v1/chunk"]["post"].is_object());
}
