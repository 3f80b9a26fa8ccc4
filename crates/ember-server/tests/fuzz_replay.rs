//! Replays the committed inputs of the `http_request` fuzz target (`fuzz/seeds/http_request`,
//! `fuzz/min/http_request`) through the real router with the same checks the cargo-fuzz binary
//! makes: JSON bodies, no 5xx for a client's request, errors in the dialect's shape without
//! server paths (see docs/fuzzing.md).

#[path = "../../../fuzz/src/http.rs"]
mod http;
#[path = "../../../fuzz/src/replay.rs"]
mod replay;

#[test]
fn http_request_corpus() {
    replay::replay("http_request", 24, http::http_request);
}

/// The hand-written seeds reach what they were written for (a success in each dialect, each
/// kind of refusal, and each API-key case), so the fuzzer starts from deep inside every route.
#[test]
fn http_seeds_reach_their_routes() {
    let expected = [
        ("native_embed", 200),
        ("native_embed_options", 200),
        ("native_prompt_name", 400),
        ("openai_embeddings", 200),
        ("openai_tokens", 200),
        ("openai_token_list", 200),
        ("openai_token_out_of_vocab", 400),
        ("ollama_embed", 200),
        ("ollama_embed_empty", 200),
        ("ollama_embeddings", 200),
        ("tei_embed", 200),
        ("tei_tokenize", 200),
        ("load_mpnet_int8", 200),
        ("load_empty_body", 200),
        ("get_model", 200),
        ("openai_get_model", 200),
        ("unload_fp16", 200),
        ("wrong_content_type", 415),
        ("wrong_method", 405),
        ("malformed_json", 400),
        ("unknown_field", 400),
        ("auth_no_key", 401),
        ("auth_api_key", 200),
        ("auth_user_key_on_admin_route", 403),
        ("auth_admin_key", 200),
    ];
    let seeds = replay::inputs("http_request");
    for (name, status) in expected {
        let file = format!("seeds/http_request/{name}");
        let (_, data) = seeds
            .iter()
            .find(|(n, _)| *n == file)
            .unwrap_or_else(|| panic!("seed {file} is missing"));
        let (case, got, body) = http::respond(data).expect("seed decodes to a request");
        assert_eq!(
            got.as_u16(),
            status,
            "{} {}: {}",
            case.method,
            case.uri,
            String::from_utf8_lossy(&body)
        );
    }
}

/// Found by the fuzzer: a model id whose percent-decoded bytes are not UTF-8 got axum's plain-text
/// 400; it must be a JSON error in the route's dialect.
#[test]
fn non_utf8_model_id_is_a_json_error_in_the_dialect() {
    let get = |route: u8| {
        let (case, status, body) = http::respond(&[route, 0, b'a', 0xEA, b'b']).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body)
            .unwrap_or_else(|_| panic!("{}: {}", case.uri, String::from_utf8_lossy(&body)));
        (status.as_u16(), body)
    };
    let (status, native) = get(8);
    assert_eq!(status, 400, "{native}");
    assert_eq!(native["error"]["type"], "invalid_path", "{native}");
    assert!(
        native["error"]["message"]
            .as_str()
            .unwrap()
            .contains("UTF-8"),
        "{native}"
    );
    let (status, openai) = get(10);
    assert_eq!(status, 400, "{openai}");
    assert_eq!(openai["error"]["type"], "invalid_request_error", "{openai}");
    assert_eq!(openai["error"]["code"], "invalid_path", "{openai}");
}
