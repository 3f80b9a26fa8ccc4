//! Model identity and chunking on the tiny seeded models: the weights hash against `sha256sum`
//! of the fixture files (and kept until the files change), prompts picked per input type, and
//! token windows.

mod common;

use ember_core::{Chunk, EmbedOptions, Embedder, InputType};

fn tiny(kind: &str) -> Embedder {
    Embedder::load(kind, &common::tiny(kind)).unwrap()
}

#[test]
fn weights_hash_is_the_files_sha256() {
    // `sha256sum fixtures/reference/tiny/*/model.safetensors`.
    for (kind, want) in [
        (
            "bert",
            "d00b725346ec2ce9ff642ce833496f8d0f390883caa8f6fd0b6aac06de9074c9",
        ),
        (
            "mpnet",
            "adc491bf4005332f43a1a9ab127740c104c9e9873181152a3509737f53398b4e",
        ),
    ] {
        let m = tiny(kind);
        assert_eq!(m.weights_sha256().unwrap(), want, "{kind}");
        let id = m.identity(&EmbedOptions::default()).unwrap();
        assert_eq!(id.weights_sha256, want);
        assert_eq!(
            (id.dimension, id.dtype.as_str(), id.normalize),
            (32, "fp32", true)
        );
        assert_eq!(id.prompt, None);
    }
}

#[test]
fn sharded_weights_hash_joins_the_shard_digests() {
    let dir = tempfile::tempdir().unwrap();
    let src = std::fs::read(common::tiny("bert").join("model.safetensors")).unwrap();
    std::fs::write(dir.path().join("a.safetensors"), &src).unwrap();
    std::fs::write(dir.path().join("b.safetensors"), &src).unwrap();
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        r#"{"weight_map": {"x": "a.safetensors", "y": "b.safetensors"}}"#,
    )
    .unwrap();
    // printf '%s\n%s' "$d" "$d" | sha256sum, with d the file's digest above.
    assert_eq!(
        ember_core::identity::weights_sha256(dir.path()).unwrap(),
        "31ff69185ab497be8140abd27a966f46c8adcf5f9b513831f02a170f3d86177f"
    );
}

#[test]
fn hashes_are_kept_until_the_files_change_and_a_loaded_model_sees_the_change() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    common::copy_dir(&common::tiny("bert"), dir);
    let hashes = ember_core::identity::WeightsHashes::default();
    let first = hashes.get(dir).unwrap();
    assert_eq!(
        first,
        "d00b725346ec2ce9ff642ce833496f8d0f390883caa8f6fd0b6aac06de9074c9"
    );
    let m = Embedder::load("copy", dir).unwrap();
    assert!(!m.weights_changed_on_disk());
    assert_eq!(m.known_weights_sha256(), None);
    common::perturb_weights(dir);
    assert!(m.weights_changed_on_disk());
    let second = hashes.get(dir).unwrap();
    assert_ne!(second, first);
    assert_eq!(
        second,
        ember_core::identity::weights_sha256(dir).unwrap(),
        "the new files' hash, not the cached one"
    );
}

#[test]
fn input_types_pick_the_models_prompts() {
    let has = |names: &'static [&'static str]| move |n: &str| names.contains(&n);
    assert_eq!(
        InputType::Query.pick(has(&["query", "passage"])),
        Some("query")
    );
    assert_eq!(
        InputType::Document.pick(has(&["query", "passage"])),
        Some("passage")
    );
    assert_eq!(InputType::Document.pick(has(&["query"])), None);
    assert!("code".parse::<InputType>().is_err());
    let m = tiny("bert").with_catalog_prompts(
        &[("query".to_string(), "query: ".to_string())]
            .into_iter()
            .collect(),
    );
    assert_eq!(m.prompt_name_for(InputType::Query), Some("query"));
    let opts = EmbedOptions {
        prompt_name: Some("query".into()),
        ..EmbedOptions::default()
    };
    let id = m.identity(&opts).unwrap();
    assert_eq!(
        (id.prompt_name.as_deref(), id.prompt.as_deref()),
        (Some("query"), Some("query: "))
    );
}

#[test]
fn chunks_are_token_windows_with_overlap() {
    let m = tiny("bert");
    let opts = EmbedOptions::default();
    let text = "one two three four five six seven";
    let spans = m.tokenizer().content_spans(text).unwrap();
    let chunks = m.chunk(text, 3, 1, &opts).unwrap();
    // Windows start every 2 tokens and the last one reaches the end.
    let starts: Vec<usize> = chunks.iter().map(|c| c.start).collect();
    let want: Vec<usize> = (0..spans.len()).step_by(2).map(|i| spans[i].0).collect();
    assert_eq!(starts, want[..chunks.len()].to_vec());
    assert_eq!(chunks.last().unwrap().end, text.len());
    assert!(chunks.iter().all(|c| c.tokens <= 3 && c.tokens > 0));
    // A text that fits is one chunk covering it; an empty text one empty chunk.
    let one = m.chunk("one two", 8, 2, &opts).unwrap();
    assert_eq!((one.len(), one[0].start, one[0].end), (1, 0, 7));
    assert_eq!(m.chunk("", 8, 2, &opts).unwrap()[0].end, 0);
    // Each chunk, embedded, has at most the window's tokens plus the special ones.
    let pieces: Vec<String> = chunks
        .iter()
        .map(|c| text[c.start..c.end].to_string())
        .collect();
    for n in m.count_tokens(&pieces).unwrap() {
        assert!(n <= 3 + 2, "{n}");
    }
}

#[test]
fn chunk_windows_that_do_not_fit_are_refused() {
    let m = tiny("bert");
    let opts = EmbedOptions::default();
    let limit = m.info().max_seq_length;
    let err = m.chunk("a b", limit, 0, &opts).unwrap_err().to_string();
    assert!(err.contains(&format!("use at most {}", limit - 2)), "{err}");
    assert!(m
        .chunk("a b", 4, 4, &opts)
        .unwrap_err()
        .to_string()
        .contains("chunk_overlap"));
    assert!(m.chunk("a b", 0, 0, &opts).is_err());
    // The largest window that fits is the limit less [CLS] and [SEP].
    assert_eq!(m.max_chunk_tokens(&opts).unwrap(), limit - 2);
    assert!(m.chunk("a b", limit - 2, 0, &opts).is_ok());
}

#[test]
fn spans_map_back_through_lowercasing() {
    // A lowercasing model: offsets index the original text, even where lowercasing changes a
    // character's length (U+0130 becomes two characters).
    let dir = tempfile::tempdir().unwrap();
    common::copy_dir(&common::tiny("bert"), dir.path());
    std::fs::write(
        dir.path().join("sentence_bert_config.json"),
        r#"{"max_seq_length": 64, "do_lower_case": true}"#,
    )
    .unwrap();
    let m = Embedder::load("lower", dir.path()).unwrap();
    let text = "İSTANBUL and ÅNGSTRÖM";
    for (start, end) in m.tokenizer().content_spans(text).unwrap() {
        assert!(text.is_char_boundary(start) && text.is_char_boundary(end));
        assert!(start <= end && end <= text.len());
    }
    let chunks = m.chunk(text, 2, 0, &EmbedOptions::default()).unwrap();
    assert_eq!(chunks.last().unwrap().end, text.len());
    // In characters, each chunk covers the same piece of the text.
    let chars: Vec<char> = text.chars().collect();
    for (b, c) in chunks.iter().zip(Chunk::in_chars(text, &chunks)) {
        let piece: String = chars[c.start..c.end].iter().collect();
        assert_eq!(piece, text[b.start..b.end]);
        assert_eq!(b.tokens, c.tokens);
    }
}
