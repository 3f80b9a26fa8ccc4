//! The newer families over HTTP, in every dialect: NomicBERT (with its Matryoshka recipe and
//! `input_type` prompts), static model2vec, T5 + Dense, and INSTRUCTOR instructions through the
//! native `instruction` field, its prompts, and the OpenAI / Ollama `instruction` extension.
//! Vectors are checked against the reference outputs of `fixtures/reference/tiny/*`.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::StatusCode;
use common::{cosine, floats, post_json, send, tiny};
use ember_core::{ModelManager, ModelSpec, Registry, Resolver};
use ember_server::{app, AppState, Limits};
use serde_json::{json, Value};

fn expected(kind: &str) -> Value {
    serde_json::from_slice(&std::fs::read(tiny(kind).join("expected.json")).unwrap()).unwrap()
}

fn texts(v: &Value) -> Vec<String> {
    v["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

fn router(extra: Option<ModelSpec>) -> axum::Router {
    let mut reg = Registry::builtin();
    let prompts = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let mut nomic = ModelSpec::for_path("tiny-nomic", &tiny("nomic"));
    nomic.prompts = prompts(&[
        ("query", "search_query: "),
        ("document", "search_document: "),
    ]);
    nomic.is_default = true;
    let mut instructor = ModelSpec::for_path("tiny-instructor", &tiny("instructor"));
    instructor.prompts = prompts(&[("query", "Represent the science title: ")]);
    instructor.prompts_are_instructions = true;
    for spec in [
        nomic,
        instructor,
        ModelSpec::for_path("tiny-t5", &tiny("t5-dense")),
        ModelSpec::for_path("tiny-potion", &tiny("potion")),
    ]
    .into_iter()
    .chain(extra)
    {
        reg.register(spec).unwrap();
    }
    let manager = Arc::new(ModelManager::new(reg, Resolver::from_env()));
    app(AppState::new(manager, Limits::default()))
}

/// Mean ≥ 0.99999 and min ≥ 0.9999 cosine over the rows (zero rows in both count as equal).
fn assert_close(what: &str, got: &[Vec<f32>], want: &[Vec<f32>]) {
    assert_eq!(got.len(), want.len(), "{what}");
    let cos: Vec<f64> = got
        .iter()
        .zip(want)
        .map(|(g, w)| {
            if g.iter().chain(w).all(|x| x.abs() < 1e-12) {
                1.0
            } else {
                cosine(g, w)
            }
        })
        .collect();
    let mean = cos.iter().sum::<f64>() / cos.len() as f64;
    let min = cos.iter().cloned().fold(1.0, f64::min);
    assert!(
        mean >= 0.99999 && min >= 0.9999,
        "{what}: mean {mean} min {min}"
    );
}

fn rows_of(v: &Value) -> Vec<Vec<f32>> {
    v.as_array().unwrap().iter().map(floats).collect()
}

async fn post(app: &axum::Router, uri: &str, body: Value) -> (StatusCode, Value) {
    send(app, post_json(uri, &body.to_string())).await
}

#[tokio::test]
async fn nomic_over_every_dialect_matches_the_reference() {
    let app = router(None);
    let e = expected("nomic");
    let t = texts(&e);
    let want = rows_of(&e["normalized"]);

    let (s, b) = post(
        &app,
        "/api/v1/embed",
        json!({"input": t, "model": "tiny-nomic"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_close("native", &rows_of(&b["embeddings"]), &want);

    let (s, b) = post(
        &app,
        "/v1/embeddings",
        json!({"input": t, "model": "tiny-nomic"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let got: Vec<Vec<f32>> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| floats(&d["embedding"]))
        .collect();
    assert_close("openai", &got, &want);

    let (s, b) = post(
        &app,
        "/api/embed",
        json!({"input": t, "model": "tiny-nomic"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_close("ollama", &rows_of(&b["embeddings"]), &want);

    // Matryoshka: every route cuts by the model card's recipe (layer norm, cut, normalize).
    let mat = rows_of(&e["matryoshka_16"]);
    let (_, b) = post(
        &app,
        "/api/v1/embed",
        json!({"input": t, "model": "tiny-nomic", "dimensions": 16}),
    )
    .await;
    assert_close("native dimensions", &rows_of(&b["embeddings"]), &mat);
    let (_, b) = post(
        &app,
        "/v1/embeddings",
        json!({"input": t, "model": "tiny-nomic", "dimensions": 16}),
    )
    .await;
    let got: Vec<Vec<f32>> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| floats(&d["embedding"]))
        .collect();
    assert_close("openai dimensions", &got, &mat);
    let (_, b) = post(
        &app,
        "/api/embed",
        json!({"input": t, "model": "tiny-nomic", "dimensions": 16}),
    )
    .await;
    assert_close("ollama dimensions", &rows_of(&b["embeddings"]), &mat);

    // input_type picks the task prefix.
    let (_, by_type) = post(
        &app,
        "/api/v1/embed",
        json!({"input": "hello world", "model": "tiny-nomic", "input_type": "query"}),
    )
    .await;
    let (_, by_text) = post(
        &app,
        "/api/v1/embed",
        json!({"input": "search_query: hello world", "model": "tiny-nomic"}),
    )
    .await;
    let (a, b) = (
        floats(&by_type["embeddings"][0]),
        floats(&by_text["embeddings"][0]),
    );
    assert!(cosine(&a, &b) > 0.999999);
}

#[tokio::test]
async fn static_and_t5_dense_models_match_their_references() {
    let app = router(None);
    let e = expected("potion");
    let (s, b) = post(
        &app,
        "/api/v1/embed",
        json!({"input": texts(&e), "model": "tiny-potion"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["dimension"], 64);
    assert_close(
        "potion",
        &rows_of(&b["embeddings"]),
        &rows_of(&e["vectors"]),
    );

    let e = expected("t5-dense");
    let (s, b) = post(
        &app,
        "/api/embed",
        json!({"input": texts(&e), "model": "tiny-t5"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_close(
        "t5-dense",
        &rows_of(&b["embeddings"]),
        &rows_of(&e["normalized"]),
    );
}

#[tokio::test]
async fn instructions_reach_instructor_from_every_dialect() {
    let app = router(None);
    let e = expected("instructor");
    let inst = "Represent the science title: ";
    let rows: Vec<&Value> = e["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["instruction"] == inst)
        .collect();
    let t: Vec<&str> = rows.iter().map(|r| r["text"].as_str().unwrap()).collect();
    let want: Vec<Vec<f32>> = rows.iter().map(|r| floats(&r["normalized"])).collect();

    let (s, b) = post(
        &app,
        "/api/v1/embed",
        json!({"input": t, "model": "tiny-instructor", "instruction": inst}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_close("native instruction", &rows_of(&b["embeddings"]), &want);

    // The model's prompts are instructions: input_type reaches the same rule.
    let (_, b) = post(
        &app,
        "/api/v1/embed",
        json!({"input": t, "model": "tiny-instructor", "input_type": "query"}),
    )
    .await;
    assert_close("native input_type", &rows_of(&b["embeddings"]), &want);

    let (s, b) = post(
        &app,
        "/v1/embeddings",
        json!({"input": t, "model": "tiny-instructor", "instruction": inst}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let got: Vec<Vec<f32>> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| floats(&d["embedding"]))
        .collect();
    assert_close("openai instruction", &got, &want);

    let (s, b) = post(
        &app,
        "/api/embed",
        json!({"input": t, "model": "tiny-instructor", "instruction": inst}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_close("ollama instruction", &rows_of(&b["embeddings"]), &want);
}

#[tokio::test]
async fn broken_family_directories_are_client_visible_errors_not_500s() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("potion");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(tiny("potion").join(f), dir.join(f)).unwrap();
    }
    // A safetensors file holding one [2, 2] f32 tensor under another name.
    let header = br#"{"not_embeddings":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}"#;
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header);
    file.extend_from_slice(&[0u8; 16]);
    std::fs::write(dir.join("model.safetensors"), file).unwrap();
    let app = router(Some(ModelSpec::for_path("broken-static", &dir)));
    let (s, b) = post(
        &app,
        "/api/v1/embed",
        json!({"input": "a", "model": "broken-static"}),
    )
    .await;
    assert_ne!(s, StatusCode::INTERNAL_SERVER_ERROR, "{b}");
    assert!(
        s.is_client_error() || s == StatusCode::SERVICE_UNAVAILABLE,
        "{s}"
    );
    let msg = b["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("`embeddings`") && msg.contains("model.safetensors"),
        "{msg}"
    );

    // The catalog's v2 MoE entry: 400, naming the missing feature.
    let (s, b) = post(
        &app,
        "/api/v1/embed",
        json!({"input": "a", "model": "nomic-embed-text-v2-moe"}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(b.to_string().contains("mixture-of-experts"), "{b}");
}
