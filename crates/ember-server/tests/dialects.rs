//! The OpenAI, Ollama and TEI routes and the native additions (dtype, precision, base64,
//! load/unload, timing headers) through `oneshot`: vectors checked against the tiny models'
//! reference, and each client mistake answered with its dialect's status and error shape.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use common::*;
use ember_server::Limits;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

fn expected(kind: &str) -> Value {
    serde_json::from_slice(&std::fs::read(tiny(kind).join("expected.json")).unwrap()).unwrap()
}

fn assert_close(got: &[f32], want: &Value, what: &str) {
    let c = cosine(got, &floats(want));
    assert!(c > 0.9999, "{what}: cosine {c}");
}

fn decode_b64(s: &Value) -> Vec<f32> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s.as_str().unwrap())
        .unwrap();
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn small() -> Limits {
    Limits {
        max_client_batch: 3,
        max_body_bytes: 4096,
        max_input_chars: 200,
    }
}

/// The error shape each dialect answers with.
#[derive(Clone, Copy, Debug)]
enum Shape {
    Native,
    OpenAi,
    Ollama,
    Tei,
}

fn check_shape(shape: Shape, body: &Value) -> String {
    let e = &body["error"];
    match shape {
        Shape::Native => {
            assert!(e["type"].is_string() && e["code"].is_u64(), "{body}");
            e["message"].as_str().unwrap().to_string()
        }
        Shape::OpenAi => {
            assert!(e["type"].is_string(), "{body}");
            assert!(
                e.get("param").is_some() && e.get("code").is_some(),
                "{body}"
            );
            e["message"].as_str().unwrap().to_string()
        }
        Shape::Ollama => {
            assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
            e.as_str().unwrap().to_string()
        }
        Shape::Tei => {
            assert!(body["error_type"].is_string(), "{body}");
            e.as_str().unwrap().to_string()
        }
    }
}

async fn expect(app: &axum::Router, req: Request<Body>, shape: Shape, status: u16, needle: &str) {
    let (got, body) = send(app, req).await;
    assert_eq!(got.as_u16(), status, "{shape:?}: {body}");
    let msg = check_shape(shape, &body);
    assert!(
        msg.contains(needle),
        "{shape:?}: {msg:?} should mention {needle:?}"
    );
}

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

    // Token ids: one list, and a list of lists.
    // tiny-bert pads with id 0.
    let unpad = |i: usize| -> Value {
        let ids = want["input_ids"][i].as_array().unwrap();
        json!(ids
            .iter()
            .filter(|x| x.as_u64() != Some(0))
            .collect::<Vec<_>>())
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
    let no_type = Request::post("/api/embed")
        .body(Body::from(r#"{"input":"a"}"#))
        .unwrap();
    expect(&app, no_type, s, 415, "Content-Type").await;
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
}

#[tokio::test]
async fn tei_embed_info_tokenize() {
    let app = test_app(Limits::default());
    let want = expected("xlm-roberta");
    let body = json!({"inputs": want["texts"], "model": "tiny-xlm-roberta"}).to_string();
    let (status, got) = send(&app, post_json("/embed", &body)).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    for (i, v) in got.as_array().unwrap().iter().enumerate() {
        assert_close(&floats(v), &want["normalized"][i], "tei embed");
    }
    let body =
        json!({"inputs": "hello world", "normalize": false, "truncation_direction": "Right"});
    let (status, got) = send(&app, post_json("/embed", &body.to_string())).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_close(
        &floats(&got[0]),
        &expected("bert")["raw_mean_pooled"][0],
        "tei raw",
    );

    let (status, info) = send(&app, get("/info")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(info["max_input_length"].as_u64().unwrap() > 0);
    assert!(
        info["model_type"]["embedding"]["pooling"].is_string(),
        "{info}"
    );

    let (status, toks) = send(
        &app,
        post_json("/tokenize", r#"{"inputs": ["hello world"]}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{toks}");
    let row = toks[0].as_array().unwrap();
    let ids: Vec<u64> = row.iter().map(|t| t["id"].as_u64().unwrap()).collect();
    let want_ids: Vec<u64> = expected("bert")["input_ids"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .filter(|&id| id != 0)
        .collect();
    assert_eq!(ids, want_ids);
    assert_eq!(row[0]["special"], true);
    assert_eq!(row[1]["special"], false);
    let (_, toks) = send(
        &app,
        post_json(
            "/tokenize",
            r#"{"inputs": "hello", "add_special_tokens": false}"#,
        ),
    )
    .await;
    assert!(toks[0]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["special"] == false));
}

#[tokio::test]
async fn tei_errors_in_tei_shape() {
    let app = test_app(small());
    let t = Shape::Tei;
    let e = |b: &str| post_json("/embed", b);
    expect(&app, e(r#"{"inputs": []}"#), t, 400, "empty").await;
    expect(&app, e(r#"{"input": "a"}"#), t, 400, "inputs").await;
    expect(
        &app,
        e(r#"{"inputs": "a", "truncation_direction": "Left"}"#),
        t,
        422,
        "Left",
    )
    .await;
    expect(
        &app,
        e(r#"{"inputs": ["a","b","c","d"]}"#),
        t,
        413,
        "at most 3",
    )
    .await;
    expect(
        &app,
        e(r#"{"inputs": "a", "model": "nope"}"#),
        t,
        404,
        "nope",
    )
    .await;
    expect(
        &app,
        e(r#"{"inputs": "a", "prompt_name": "query"}"#),
        t,
        400,
        "prompt",
    )
    .await;
    let long = format!(
        r#"{{"inputs": "{}", "truncate": false}}"#,
        "word ".repeat(39)
    );
    expect(&app, e(&long), t, 413, "input 0").await;
    expect(&app, e("{"), t, 400, "").await;
    let (_, body) = send(&app, e(r#"{"inputs": []}"#)).await;
    assert_eq!(body["error_type"], "empty");
    expect(
        &app,
        post_json("/tokenize", r#"{"inputs": 1}"#),
        t,
        400,
        "inputs",
    )
    .await;
}

#[tokio::test]
async fn native_dtype_precision_base64_headers() {
    let app = test_app(Limits::default());
    let want = expected("bert");
    let body = json!({"input": want["texts"], "dtype": "float16", "keep_alive": "10m"}).to_string();
    let resp = app
        .clone()
        .oneshot(post_json("/api/v1/embed", &body))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    for h in [
        "x-queue-time",
        "x-tokenization-time",
        "x-inference-time",
        "x-total-time",
    ] {
        let v: f64 = resp.headers()[h].to_str().unwrap().parse().unwrap();
        assert!(v >= 0.0, "{h}");
    }
    assert_eq!(resp.headers()["x-model-id"], "tiny-bert");
    let got: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(got["dtype"], "fp16");
    for i in 0..want["texts"].as_array().unwrap().len() {
        let c = cosine(
            &floats(&got["embeddings"][i]),
            &floats(&want["normalized"][i]),
        );
        assert!(c > 0.999, "fp16 text {i}: {c}");
    }

    let body = json!({"input": want["texts"][0], "encoding_format": "base64"}).to_string();
    let (_, got) = send(&app, post_json("/api/v1/embed", &body)).await;
    assert_close(
        &decode_b64(&got["embeddings"][0]),
        &want["normalized"][0],
        "native base64",
    );

    let body = json!({"input": want["texts"], "precision": "ubinary"}).to_string();
    let (status, got) = send(&app, post_json("/api/v1/embed", &body)).await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["precision"], "ubinary");
    let packed: Vec<u8> = got["embeddings"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u8)
        .collect();
    let signs: Vec<bool> = floats(&want["normalized"][0])
        .iter()
        .map(|x| *x > 0.0)
        .collect();
    for (j, s) in signs.iter().enumerate() {
        assert_eq!(packed[j / 8] & (0x80 >> (j % 8)) != 0, *s, "bit {j}");
    }
    let body = json!({"input": want["texts"], "precision": "int8"}).to_string();
    let (_, got) = send(&app, post_json("/api/v1/embed", &body)).await;
    let row = got["embeddings"][0].as_array().unwrap();
    assert_eq!(row.len(), 32);
    assert!(row
        .iter()
        .all(|v| (-128..=127).contains(&v.as_i64().unwrap())));

    let e = |b: &str| post_json("/api/v1/embed", b);
    let n = Shape::Native;
    expect(
        &app,
        e(r#"{"input": "a", "precision": "int8"}"#),
        n,
        400,
        "single embedding",
    )
    .await;
    expect(
        &app,
        e(r#"{"input": "a", "precision": "int4"}"#),
        n,
        400,
        "precision",
    )
    .await;
    expect(&app, e(r#"{"input": "a", "dtype": "fp8"}"#), n, 400, "fp8").await;
    expect(
        &app,
        e(r#"{"input": "a", "input_type": "query"}"#),
        n,
        400,
        "no prompts",
    )
    .await;
    expect(
        &app,
        e(r#"{"input": "a", "input_type": "code"}"#),
        n,
        400,
        "input_type",
    )
    .await;
    expect(
        &app,
        e(r#"{"input": "a", "keep_alive": true}"#),
        n,
        400,
        "keep_alive",
    )
    .await;
    expect(
        &app,
        e(r#"{"input": "a", "encoding_format": "hex"}"#),
        n,
        400,
        "encoding_format",
    )
    .await;
}

#[tokio::test]
async fn native_load_and_unload() {
    let app = test_app(Limits::default());
    let req = |m: &str, uri: &str, body: &str| {
        Request::builder()
            .method(m)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let (status, got) = send(
        &app,
        req(
            "POST",
            "/api/v1/models/tiny-mpnet/load",
            r#"{"dtype": "bf16", "keep_alive": "-1"}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{got}");
    assert_eq!(got["loaded"], true);
    let inst = got["instances"].as_array().unwrap();
    assert!(
        inst.iter()
            .any(|i| i["dtype"] == "bf16" && i["keep_alive"] == -1),
        "{got}"
    );
    let (status, _) = send(&app, req("POST", "/api/v1/models/tiny-mpnet/load", "")).await;
    assert_eq!(status, StatusCode::OK);

    let (_, list) = send(&app, get("/api/v1/models")).await;
    let m = list["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "tiny-mpnet")
        .unwrap();
    assert_eq!(m["instances"].as_array().unwrap().len(), 2, "{m}");

    let (status, got) = send(
        &app,
        req("DELETE", "/api/v1/models/tiny-mpnet?dtype=bf16", ""),
    )
    .await;
    assert_eq!(
        (status, got["unloaded"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{got}"
    );
    let (_, got) = send(&app, req("DELETE", "/api/v1/models/tiny-mpnet", "")).await;
    assert_eq!(got["unloaded"], 1);
    let (_, one) = send(&app, get("/api/v1/models/tiny-mpnet")).await;
    assert_eq!(one["loaded"], false);

    let n = Shape::Native;
    expect(
        &app,
        req("DELETE", "/api/v1/models/tiny-bert", ""),
        n,
        400,
        "pinned",
    )
    .await;
    expect(
        &app,
        req("DELETE", "/api/v1/models/nope", ""),
        n,
        404,
        "nope",
    )
    .await;
    expect(
        &app,
        req("POST", "/api/v1/models/nope/load", ""),
        n,
        404,
        "nope",
    )
    .await;
    expect(
        &app,
        req("POST", "/api/v1/models/tiny-bert/warm", ""),
        n,
        404,
        "warm",
    )
    .await;
    expect(
        &app,
        req("POST", "/api/v1/models/tiny-bert/load", "{"),
        n,
        400,
        "body",
    )
    .await;
    expect(
        &app,
        req("POST", "/api/v1/models/tiny-bert/load", r#"{"dtype": "x"}"#),
        n,
        400,
        "x",
    )
    .await;
}
