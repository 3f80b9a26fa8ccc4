use super::*;

fn flags(argv: &[&str]) -> Flags {
    Flags::try_parse_from(std::iter::once("ember-server").chain(argv.iter().copied())).unwrap()
}

fn from(argv: &[&str], toml: &str) -> Settings {
    Settings::from_toml(&flags(argv), toml, Path::new("e.toml")).unwrap()
}

#[test]
fn a_flag_equal_to_its_default_still_wins_over_the_file() {
    let file = "[server]\nport = 9999\n[budget]\nmax_models = 3\n[warmup]\nenabled = false\n";
    let s = from(&[], file);
    assert_eq!((s.server.port, s.budget.max_models), (9999, 3));
    assert!(!s.warmup.enabled);
    // 8080 and 16 are the defaults: given, they win all the same.
    let s = from(&["--port", "8080", "--max-models", "16"], file);
    assert_eq!((s.server.port, s.budget.max_models), (8080, 16));
    let s = from(&["--no-warmup=false"], file);
    assert!(s.warmup.enabled);
}

#[test]
fn model_roots_and_total_chars_come_from_the_file_unless_flagged() {
    let text = "model_roots = [\"/srv/a\"]\n[limits]\nmax_total_chars = 5000\n";
    let s = from(&[], text);
    assert_eq!(s.model_roots, vec![PathBuf::from("/srv/a")]);
    assert_eq!(s.limits.max_total_chars, 5000);

    let s = from(&["--model-roots", "/flag", "--max-total-chars", "7"], text);
    assert_eq!(s.model_roots, vec![PathBuf::from("/flag")]);
    assert_eq!(s.limits.max_total_chars, 7);

    let zero = "[limits]\nmax_total_chars = 0\n";
    let e = Settings::from_toml(&flags(&[]), zero, Path::new("e.toml")).unwrap_err();
    assert!(e.to_string().contains("max_total_chars"), "{e}");
}

#[test]
fn queue_size_is_read_from_limits_too() {
    assert_eq!(
        from(&[], "[limits]\nqueue_size = 5\n").batching.queue_size,
        5
    );
    assert_eq!(
        from(&[], "[batching]\nqueue_size = 6\n")
            .batching
            .queue_size,
        6
    );
    let both = "[limits]\nqueue_size = 5\n[batching]\nqueue_size = 6\n";
    let e = Settings::from_toml(&flags(&[]), both, Path::new("e.toml")).unwrap_err();
    assert!(e.to_string().contains("both"), "{e}");
}

#[test]
fn the_defaults_are_the_sections_defaults() {
    let s = Settings::load(&Flags::defaults()).unwrap();
    assert_eq!(s.limits, Limits::default());
    assert_eq!(s.server, ServerSettings::default());
    assert_eq!(s.budget.max_models, ManagerConfig::default().max_models);
    assert_eq!(
        s.batching.max_batch_tokens,
        BatchConfig::default().max_batch_tokens
    );
}

#[test]
fn the_effective_configuration_reads_as_key_value_lines() {
    let f = flags(&[
        "--port",
        "0",
        "--api-key",
        "sk-secret",
        "--model",
        "tiny-bert",
    ]);
    let s = Settings::load(&f).unwrap();
    let lines = s.describe(&f);
    let server = lines.iter().find(|l| l.starts_with("server: ")).unwrap();
    assert!(
        server.contains(" port=0 ") || server.ends_with(" port=0"),
        "{server}"
    );
    assert!(server.contains("host=127.0.0.1"), "{server}");
    let all = lines.join("\n");
    assert!(!all.contains("sk-secret"), "{all}");
    assert!(all.contains("api_keys=<redacted>"), "{all}");
    assert!(all.contains("max_memory=none"), "{all}");
    assert!(!all.contains("Some("), "{all}");
    assert!(
        all.contains("start-up model: dtype=none id=tiny-bert"),
        "{all}"
    );
    assert!(
        all.contains("given=api_keys=flag,models=flag,port=flag"),
        "{all}"
    );
    assert!(lines.iter().all(|l| l.len() < 400), "{all}");
}

#[test]
fn max_input_tokens_is_a_limit_the_manager_loads_with() {
    assert_eq!(from(&[], "").limits.max_input_tokens, 8192);
    let file = "[limits]\nmax_input_tokens = 32768\n";
    let s = from(&[], file);
    assert_eq!(s.limits.max_input_tokens, 32768);
    assert_eq!(s.manager_config(|_| None).max_input_tokens, 32768);
    // A flag equal to the default still wins over the file.
    let s = from(&["--max-input-tokens", "8192"], file);
    assert_eq!(s.manager_config(|_| None).max_input_tokens, 8192);
    let f = flags(&["--max-input-tokens", "512"]);
    let lines = Settings::load(&f).unwrap().describe(&f).join("\n");
    assert!(lines.contains("max_input_tokens=512"), "{lines}");
    let zero = "[limits]\nmax_input_tokens = 0\n";
    let e = Settings::from_toml(&flags(&[]), zero, Path::new("e.toml")).unwrap_err();
    assert!(e.to_string().contains("max_input_tokens"), "{e}");
}
