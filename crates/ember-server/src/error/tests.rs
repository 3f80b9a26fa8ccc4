use axum::http::StatusCode;

use super::*;

#[test]
fn load_failures_do_not_show_paths_but_input_errors_echo_the_input() {
    let e = ember_core::Error::PickleOnly {
        dir: "/secret/place/model".into(),
    };
    let api = ApiError::from(e);
    assert_eq!(api.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(api.kind, ApiErrorKind::ModelLoadFailed);
    assert!(!api.message.contains("/secret"), "{}", api.message);
    assert!(
        api.message.contains("…/model holds only pytorch_model.bin"),
        "{}",
        api.message
    );
    // The log keeps the whole message.
    assert!(api.log_detail.unwrap().contains("/secret/place/model"));
    let e = ember_core::Error::invalid("input", "`/etc/x` is not a string");
    let api = ApiError::from(e);
    assert!(api.message.contains("/etc/x"));
    assert_eq!(api.field.as_deref(), Some("input"));
}

#[test]
fn core_errors_map_by_variant() {
    use ember_core::Error;
    let cases: Vec<(Error, ApiErrorKind, Option<&str>)> = vec![
        (
            Error::ModelNotFound {
                id: "x".into(),
                known: "a".into(),
            },
            ApiErrorKind::ModelNotFound,
            Some("model"),
        ),
        (
            Error::FilesNotFound {
                id: "x".into(),
                tried: vec!["explicit path /a (does not exist)".into()],
            },
            ApiErrorKind::ModelNotInstalled,
            Some("model"),
        ),
        (
            Error::ModelDirMissing {
                id: "x".into(),
                path: "/srv/models/x".into(),
            },
            ApiErrorKind::ModelLoadFailed,
            None,
        ),
        (
            Error::Dimensions {
                model: "m".into(),
                requested: 9,
                max: 4,
            },
            ApiErrorKind::InvalidRequest,
            Some("dimensions"),
        ),
        (
            Error::InputTooLong {
                model: "m".into(),
                index: 1,
                tokens: 9,
                limit: 4,
            },
            ApiErrorKind::InputTooLong,
            Some("input"),
        ),
        (
            Error::Shared(std::sync::Arc::new(Error::Capacity {
                message: "full".into(),
            })),
            ApiErrorKind::Capacity,
            None,
        ),
    ];
    for (e, kind, field) in cases {
        let shown = e.to_string();
        let api = ApiError::from(e);
        assert_eq!(api.kind, kind, "{shown}");
        assert_eq!(api.status, kind.status(), "{shown}");
        assert_eq!(api.field.as_deref(), field, "{shown}");
    }
}

#[test]
fn every_kind_has_a_distinct_name() {
    use std::collections::HashSet;
    let kinds = [
        ApiErrorKind::InvalidRequest,
        ApiErrorKind::InvalidJson,
        ApiErrorKind::InvalidPath,
        ApiErrorKind::Empty,
        ApiErrorKind::NotFound,
        ApiErrorKind::MethodNotAllowed,
        ApiErrorKind::TooManyInputs,
        ApiErrorKind::InputTooLong,
        ApiErrorKind::PayloadTooLarge,
        ApiErrorKind::UnsupportedMediaType,
        ApiErrorKind::BodyTimeout,
        ApiErrorKind::ModelNotFound,
        ApiErrorKind::ModelNotInstalled,
        ApiErrorKind::ModelUnsupported,
        ApiErrorKind::ModelLoadFailed,
        ApiErrorKind::Capacity,
        ApiErrorKind::QueueFull,
        ApiErrorKind::Overloaded,
        ApiErrorKind::Unauthorized,
        ApiErrorKind::Forbidden,
        ApiErrorKind::Internal,
    ];
    let names: HashSet<_> = kinds.iter().map(|k| k.as_str()).collect();
    assert_eq!(names.len(), kinds.len());
}
