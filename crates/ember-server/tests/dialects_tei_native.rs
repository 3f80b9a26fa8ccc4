//! The TEI routes and the native additions (dtype, precision, base64, load/unload, timing
//! headers) through `oneshot`, checked against the tiny models' reference.

mod common;
mod dialect;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use dialect::*;
use ember_server::Limits;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

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
    assert_eq!(row[0]["start"], Value::Null);
    assert_eq!(row[1]["special"], false);
    // Text tokens carry byte offsets into the input, and `text` is the slice they cover.
    for t in &row[1..row.len() - 1] {
        let (start, stop) = (t["start"].as_u64().unwrap(), t["stop"].as_u64().unwrap());
        assert_eq!(
            t["text"],
            &"hello world"[start as usize..stop as usize],
            "{t}"
        );
    }
    assert_eq!(row[1]["start"], 0);
    assert_eq!(row[row.len() - 2]["stop"], 11);
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

/// `truncation_direction: Left` keeps the end of an over-long input: its vector is the vector of
/// the input's last tokens, and differs from the default (`Right`), which keeps the beginning.
#[tokio::test]
async fn tei_truncation_direction_left_keeps_the_end() {
    let app = test_app(Limits::default());
    let (_, info) = send(&app, get("/info")).await;
    let limit = info["max_input_length"].as_u64().unwrap() as usize;
    // "hello" and "world" are one token each; [CLS] and [SEP] take two of the limit.
    let long = format!("{}world world", "hello ".repeat(limit + 10));
    let tail = format!("{}world world", "hello ".repeat(limit - 4));
    let head = "hello ".repeat(limit - 2);
    let embed = |text: &str, side: Option<&str>| {
        let mut body = json!({"inputs": text});
        if let Some(side) = side {
            body["truncation_direction"] = json!(side);
        }
        post_json("/embed", &body.to_string())
    };
    let one = |v: Value| floats(&v[0]);
    let (status, left) = send(&app, embed(&long, Some("Left"))).await;
    assert_eq!(status, StatusCode::OK, "{left}");
    let (_, want_left) = send(&app, embed(&tail, None)).await;
    let (_, right) = send(&app, embed(&long, Some("right"))).await;
    let (_, want_right) = send(&app, embed(&head, None)).await;
    assert!(cosine(&one(left.clone()), &one(want_left)) > 0.99999);
    assert!(cosine(&one(right.clone()), &one(want_right)) > 0.99999);
    assert!(cosine(&one(left), &one(right)) < 0.9999);
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
        e(r#"{"inputs": "a", "truncation_direction": "Middle"}"#),
        t,
        400,
        "truncation_direction",
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
    // A wrong method on a TEI route answers in TEI's shape; a root path no dialect serves in
    // the native one (TEI's routes own no prefix).
    expect(&app, get("/embed"), t, 405, "/embed").await;
    expect(
        &app,
        post_json("/classify", "{}"),
        Shape::Native,
        404,
        "/classify",
    )
    .await;
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
        e(r#"{"input": "a", "input_type": "query", "prompt_name": "query"}"#),
        n,
        400,
        "not both",
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
