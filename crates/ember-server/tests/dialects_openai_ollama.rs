//! The OpenAI and Ollama routes through `oneshot`: vectors checked against the tiny models'
//! reference, and each client mistake answered with the dialect's status and error shape.

mod common;
mod dialect;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use dialect::*;
use ember_server::Limits;
use serde_json::{json, Value};

#[tokio::test]
async fn openai_embeddings_float_base64_and_tokens() {
    let app = test_app(Limits::default());
    let want = expected("mpnet");
    let body = json!({"model": "tiny-mpnet", "input": want["texts"], "user": "u1"}).to_string();
    let (status, got) = send(&app, post_json("/v1/embeddings", &body)).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["object"], "list");
    assert_eq!(got["model"], "tiny-mpnet");
    for (i, d) in got["data"].as_array().unwrap().iter().enumerate() {
        assert_eq!(
            (d["object"].as_str(), d["index"].as_u64()),
            (Some("embedding"), Some(i as u64))
        );
        assert_close(&floats(&d["embedding"]), &want["normalized"][i], "float");
    }
    let usage = &got["usage"];
    assert!(usage["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(usage["prompt_tokens"], usage["total_tokens"]);

    // base64 (the OpenAI SDK's default) on the alias route, default model.
    let want = expected("bert");
    let body = json!({"input": want["texts"][1], "encoding_format": "base64"}).to_string();
    let (status, got) = send(&app, post_json("/embeddings", &body)).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_close(
        &decode_b64(&got["data"][0]["embedding"]),
        &want["normalized"][1],
        "base64",
    );

    // Token ids: one list, and a list of lists. They are the content's ids: the model's
    // special tokens ([CLS], [SEP]) are added as for text. tiny-bert pads with id 0.
    let unpad = |i: usize| -> Value {
        let ids: Vec<&Value> = want["input_ids"][i]
            .as_array()
            .unwrap()
            .iter()
            .filter(|x| x.as_u64() != Some(0))
            .collect();
        json!(ids[1..ids.len() - 1])
    };
    for (input, rows) in [
        (unpad(1), vec![1]),
        (json!([unpad(0), unpad(1)]), vec![0, 1]),
    ] {
        let body = json!({"input": input}).to_string();
        let (status, got) = send(&app, post_json("/v1/embeddings", &body)).await;
        assert_eq!(status, StatusCode::OK, "{got}");
        for (k, &i) in rows.iter().enumerate() {
            let v = floats(&got["data"][k]["embedding"]);
            assert_close(&v, &want["normalized"][i], "token ids");
        }
    }

    // dimensions
    let body = json!({"input": "hi", "dimensions": 8}).to_string();
    let (_, got) = send(&app, post_json("/v1/embeddings", &body)).await;
    assert_eq!(got["data"][0]["embedding"].as_array().unwrap().len(), 8);
}

#[tokio::test]
async fn openai_models_and_errors_in_openai_shape() {
    let app = test_app(small());
    let (status, got) = send(&app, get("/v1/models")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["object"], "list");
    assert!(got["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == "tiny-bert"));
    let (_, one) = send(&app, get("/v1/models/all-minilm")).await;
    assert_eq!(
        (one["id"].as_str(), one["object"].as_str()),
        (Some("all-MiniLM-L6-v2"), Some("model"))
    );

    let o = Shape::OpenAi;
    let e = |b: &str| post_json("/v1/embeddings", b);
    let (status, body) = send(&app, e(r#"{"model": "gpt-nope", "input": "a"}"#)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["param"], "model");
    assert_eq!(body["error"]["code"], "model_not_found");
    expect(&app, e(r#"{"input": "#), o, 400, "").await;
    expect(&app, e(r#"{"model": "tiny-bert"}"#), o, 400, "input").await;
    expect(&app, e(r#"{"input": 5}"#), o, 400, "input").await;
    expect(&app, e(r#"{"input": ["a", 1]}"#), o, 400, "input[1]").await;
    expect(&app, e(r#"{"input": [[1, 2], "a"]}"#), o, 400, "input[1]").await;
    expect(&app, e(r#"{"input": [[1, -2]]}"#), o, 400, "input[0][1]").await;
    expect(
        &app,
        e(r#"{"input": [[1, 99999999]]}"#),
        o,
        400,
        "vocabulary",
    )
    .await;
    expect(&app, e(r#"{"input": []}"#), o, 400, "empty").await;
    expect(
        &app,
        e(r#"{"input": ["a","b","c","d"]}"#),
        o,
        413,
        "at most 3",
    )
    .await;
    expect(
        &app,
        e(r#"{"input": [[1],[2],[3],[4]]}"#),
        o,
        413,
        "at most 3",
    )
    .await;
    expect(
        &app,
        e(r#"{"input": "a", "encoding_format": "hex"}"#),
        o,
        400,
        "encoding_format",
    )
    .await;
    expect(
        &app,
        e(r#"{"input": "a", "dimensions": 999}"#),
        o,
        400,
        "dimensions",
    )
    .await;
    let long = format!(r#"{{"input": "{}"}}"#, "x".repeat(300));
    expect(&app, e(&long), o, 413, "characters").await;
    let huge = format!(r#"{{"input": "{}"}}"#, "x".repeat(5000));
    expect(&app, e(&huge), o, 413, "").await;
    let no_type = Request::post("/v1/embeddings")
        .body(Body::from(r#"{"input":"a"}"#))
        .unwrap();
    expect(&app, no_type, o, 415, "Content-Type").await;
    let bad_utf8 = Request::post("/v1/embeddings")
        .header("content-type", "application/json")
        .body(Body::from(vec![b'{', b'"', b'i', 0xff, b'"', b'}']))
        .unwrap();
    expect(&app, bad_utf8, o, 400, "").await;
    expect(&app, get("/v1/nothing"), o, 404, "/v1/nothing").await;
    expect(&app, get("/v1/embeddings"), o, 405, "").await;
}

#[tokio::test]
async fn ollama_embed_embeddings_and_listing() {
    let app = test_app(Limits::default());
    let want = expected("bert");
    let body =
        json!({"model": "tiny-bert", "input": want["texts"], "keep_alive": "5m"}).to_string();
    let (status, got) = send(&app, post_json("/api/embed", &body)).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["model"], "tiny-bert");
    for (i, v) in got["embeddings"].as_array().unwrap().iter().enumerate() {
        assert_close(&floats(v), &want["normalized"][i], "ollama embed");
    }
    assert!(got["total_duration"].as_u64().unwrap() > 0);
    assert!(got["load_duration"].is_u64());
    assert!(got["prompt_eval_count"].as_u64().unwrap() > 0);
    let body = json!({"model": "tiny-bert", "input": "hi", "dimensions": 4, "keep_alive": 300});
    let (_, got) = send(&app, post_json("/api/embed", &body.to_string())).await;
    let v = floats(&got["embeddings"][0]);
    assert_eq!(v.len(), 4);
    assert!((v.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-4);
    // Empty input: no vectors, as Ollama answers.
    let (status, got) = send(
        &app,
        post_json("/api/embed", r#"{"model":"tiny-bert","input":[]}"#),
    )
    .await;
    assert_eq!(
        (status, got["embeddings"].as_array().unwrap().len()),
        (StatusCode::OK, 0)
    );

    // Legacy route: not normalized.
    let body = json!({"model": "tiny-bert", "prompt": want["texts"][1]}).to_string();
    let (status, got) = send(&app, post_json("/api/embeddings", &body)).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    let v = floats(&got["embedding"]);
    let raw = floats(&want["raw_mean_pooled"][1]);
    let rel: f32 = v
        .iter()
        .zip(&raw)
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f32>()
        .sqrt()
        / raw.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!(
        rel < 1e-4,
        "legacy embedding differs from raw pooled: {rel}"
    );

    let (status, tags) = send(&app, get("/api/tags")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(tags["models"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["name"] == "all-MiniLM-L6-v2"));
    let (_, ps) = send(&app, get("/api/ps")).await;
    let loaded = ps["models"].as_array().unwrap();
    let bert = loaded.iter().find(|m| m["name"] == "tiny-bert").unwrap();
    assert!(bert["size"].as_u64().unwrap() > 0);
    assert!(bert["expires_at"].as_str().unwrap().ends_with('Z'));
    let (_, v) = send(&app, get("/api/version")).await;
    assert!(v["version"].is_string());
}

#[tokio::test]
async fn ollama_errors_in_ollama_shape() {
    let app = test_app(small());
    let s = Shape::Ollama;
    let e = |b: &str| post_json("/api/embed", b);
    expect(
        &app,
        e(r#"{"model": "nope:latest", "input": "a"}"#),
        s,
        404,
        "nope:latest",
    )
    .await;
    expect(&app, e(r#"{"model": "tiny-bert", "input": "#), s, 400, "").await;
    expect(&app, e(r#"{"model": "tiny-bert"}"#), s, 400, "input").await;
    expect(&app, e(r#"{"input": [1]}"#), s, 400, "input[0]").await;
    expect(
        &app,
        e(r#"{"input": ["a","b","c","d"]}"#),
        s,
        413,
        "at most 3",
    )
    .await;
    expect(
        &app,
        e(r#"{"input": "a", "keep_alive": "soon"}"#),
        s,
        400,
        "keep_alive",
    )
    .await;
    let long = format!(
        r#"{{"input": "{}", "truncate": false}}"#,
        "word ".repeat(39)
    );
    expect(
        &app,
        e(&long),
        s,
        400,
        "the input length exceeds the context length",
    )
    .await;
    // Ollama reads a JSON body whatever its content type says (its documented curl examples
    // send none, so curl sends `application/x-www-form-urlencoded`).
    for content_type in [None, Some("application/x-www-form-urlencoded")] {
        let mut req = Request::post("/api/embed");
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let (status, body) = send(&app, req.body(Body::from(r#"{"input":"a"}"#)).unwrap()).await;
        assert_eq!(status, StatusCode::OK, "{content_type:?}: {body}");
        assert_eq!(body["embeddings"].as_array().unwrap().len(), 1);
    }
    let legacy_no_type = Request::post("/api/embeddings")
        .body(Body::from(r#"{"prompt":"a"}"#))
        .unwrap();
    let (status, body) = send(&app, legacy_no_type).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let not_json = Request::post("/api/embed")
        .body(Body::from("input=a"))
        .unwrap();
    expect(&app, not_json, s, 400, "").await;
    let legacy = |b: &str| post_json("/api/embeddings", b);
    expect(&app, legacy(r#"{"model": "tiny-bert"}"#), s, 400, "prompt").await;
    expect(
        &app,
        legacy(r#"{"model": "nope", "prompt": "a"}"#),
        s,
        404,
        "nope",
    )
    .await;
    expect(&app, legacy(r#"{"prompt": 3}"#), s, 400, "").await;
    // Routes Ollama has and Ember does not answer in Ollama's shape too.
    expect(
        &app,
        post_json("/api/generate", "{}"),
        s,
        404,
        "/api/generate",
    )
    .await;
    expect(&app, get("/api/embed"), s, 405, "/api/embed").await;
}

/// Token ids go to the encoder as they are: ids that a decode/encode round trip would change
/// (a [SEP] in the middle, which decoding drops) give the vector of those very ids.
#[tokio::test]
async fn token_ids_are_not_decoded_and_re_encoded() {
    use ember_core::EmbedOptions;

    let manager = manager();
    let app = ember_server::app(ember_server::AppState::new(
        manager.clone(),
        ember_server::Limits::default(),
    ));
    let model = manager.lease(Some("tiny-bert"), None).unwrap();
    let content = model.tokenizer().content_ids("hello world").unwrap();
    let sep = *model
        .tokenize(&["x".to_string()], &EmbedOptions::default())
        .unwrap()[0]
        .ids
        .last()
        .unwrap();
    let ids: Vec<u32> = content
        .iter()
        .copied()
        .chain([sep])
        .chain(content.iter().copied())
        .collect();
    let opts = EmbedOptions::default();
    let encoded = model
        .tokenize_ids(std::slice::from_ref(&ids), &opts)
        .unwrap();
    assert_eq!(encoded[0].ids.len(), ids.len() + 2, "[CLS] and [SEP] added");
    let raw = model.embed_encoded(&encoded, 8).unwrap();
    let (_, direct) = model.finish(&raw, &opts);
    let round_trip = model
        .embed(&[model.decode(0, &ids).unwrap()], &opts)
        .unwrap()
        .data;
    assert!(
        cosine(&direct, &round_trip) < 0.999,
        "the round trip must differ"
    );

    let body = json!({"input": ids, "model": "tiny-bert"}).to_string();
    let (status, got) = send(&app, post_json("/v1/embeddings", &body)).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    let served = floats(&got["data"][0]["embedding"]);
    assert!(cosine(&served, &direct) > 0.99999);
    assert_eq!(got["usage"]["prompt_tokens"], ids.len() + 2);
}

/// With `--openai-token-ids cl100k_base` token ids are OpenAI's (as LangChain sends them):
/// decoded with that encoding, then tokenized for the served model.
#[tokio::test]
async fn cl100k_token_ids_are_decoded_to_text() {
    use ember_server::settings::{OpenAiSettings, TokenIds};

    let state = ember_server::AppState::new(manager(), ember_server::Limits::default())
        .with_openai(OpenAiSettings {
            token_ids: TokenIds::Cl100kBase,
        });
    let app = ember_server::app(state);
    let text = "The quick brown fox jumps over the lazy dog";
    let ids = tiktoken_rs::cl100k_base_singleton().encode_ordinary(text);
    let (_, want) = send(
        &app,
        post_json("/v1/embeddings", &json!({"input": text}).to_string()),
    )
    .await;
    let (status, got) = send(
        &app,
        post_json("/v1/embeddings", &json!({"input": [ids]}).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{got}");
    let (a, b) = (
        floats(&got["data"][0]["embedding"]),
        floats(&want["data"][0]["embedding"]),
    );
    assert!(cosine(&a, &b) > 0.99999);
    assert_eq!(got["usage"], want["usage"]);
    let bad = json!({"input": [[u32::MAX]]}).to_string();
    expect(
        &app,
        post_json("/v1/embeddings", &bad),
        Shape::OpenAi,
        400,
        "cl100k_base",
    )
    .await;
}
