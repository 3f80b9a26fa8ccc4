//! Precedence with environment variables: flag > `EMBER_*` variable > file > default, for values
//! equal to their defaults too. Alone in its test binary: it sets process environment variables.

use std::path::Path;

use ember_server::{Flags, Settings};

#[test]
fn flag_beats_env_beats_file_beats_default_even_at_default_values() {
    let file = "[server]\nport = 9999\n[budget]\nmax_models = 3\n[limits]\nmax_client_batch = 5\n\
                [warmup]\nenabled = false\n";
    let load = |argv: &[&str]| {
        let flags =
            Flags::try_parse_from(std::iter::once("ember-server").chain(argv.iter().copied()))
                .unwrap();
        Settings::from_toml(&flags, file, Path::new("e.toml")).unwrap()
    };
    // The file over the defaults.
    let s = load(&[]);
    assert_eq!(
        (
            s.server.port,
            s.budget.max_models,
            s.limits.max_client_batch
        ),
        (9999, 3, 5)
    );
    assert!(!s.warmup.enabled);

    // Variables set to the defaults still win over the file.
    std::env::set_var("EMBER_PORT", "8080");
    std::env::set_var("EMBER_MAX_MODELS", "16");
    std::env::set_var("EMBER_NO_WARMUP", "false");
    let s = load(&[]);
    assert_eq!((s.server.port, s.budget.max_models), (8080, 16));
    assert!(s.warmup.enabled);
    assert_eq!(s.limits.max_client_batch, 5, "no variable: the file");

    // Flags win over the variables, also at the default value.
    std::env::set_var("EMBER_PORT", "8181");
    let s = load(&["--port", "8080", "--max-models", "2"]);
    assert_eq!((s.server.port, s.budget.max_models), (8080, 2));

    // The input cap: the variable over the file, the flag over the variable.
    let capped = |argv: &[&str]| {
        let flags =
            Flags::try_parse_from(std::iter::once("ember-server").chain(argv.iter().copied()))
                .unwrap();
        let file = "[limits]\nmax_input_tokens = 100\n";
        Settings::from_toml(&flags, file, Path::new("e.toml"))
            .unwrap()
            .manager_config(|_| None)
            .max_input_tokens
    };
    assert_eq!(capped(&[]), 100);
    std::env::set_var("EMBER_MAX_INPUT_TOKENS", "200");
    assert_eq!(capped(&[]), 200);
    assert_eq!(capped(&["--max-input-tokens", "300"]), 300);

    for v in [
        "EMBER_PORT",
        "EMBER_MAX_MODELS",
        "EMBER_NO_WARMUP",
        "EMBER_MAX_INPUT_TOKENS",
    ] {
        std::env::remove_var(v);
    }
}
