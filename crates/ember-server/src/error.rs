//! The server's one error type, its single mapping from core errors to status codes, and how each
//! API dialect (native, OpenAI, Ollama, TEI) shapes the body of an error (documented for OpenAPI
//! by [`ErrorResponses`]). File-system paths in core errors are trimmed to their last component
//! before they reach a caller; the server log keeps them whole.

use std::marker::PhantomData;

use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ember_core::ErrorKind;
use serde_json::json;

/// An error: a status, a machine-readable kind and a message naming the field, model or limit.
/// As a response on its own it uses the native shape `{"error": {"type", "message", "code"}}`;
/// [`DialectError`] renders it in another API's shape.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    /// Machine-readable category, e.g. `invalid_request`, `model_not_found`.
    pub kind: &'static str,
    pub message: String,
}

impl ApiError {
    /// A 400 for a bad field.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request",
            message: message.into(),
        }
    }

    /// A 500 for a fault inside Ember.
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "internal",
            message: message.into(),
        }
    }

    /// A 404 for a route that does not exist.
    pub fn no_route(path: &str) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            kind: "not_found",
            message: format!("no route for {path}; see GET /api/v1/models and POST /api/v1/embed"),
        }
    }

    /// A 405 for a known route called with the wrong method.
    pub fn method_not_allowed(path: &str) -> Self {
        Self {
            status: StatusCode::METHOD_NOT_ALLOWED,
            kind: "method_not_allowed",
            message: format!("method not allowed on {path}"),
        }
    }

    /// A 413 for a request carrying more inputs than the server accepts.
    pub fn too_many_inputs(field: &str, n: usize, max: usize) -> Self {
        Self {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            kind: "too_many_inputs",
            message: format!(
                "`{field}` has {n} items; this server accepts at most {max} per request"
            ),
        }
    }
}

impl From<ember_core::Error> for ApiError {
    fn from(e: ember_core::Error) -> Self {
        let too_long = matches!(root(&e), ember_core::Error::InputTooLong { .. });
        // A catalog model whose files are nowhere (not packaged, not cached, no Hub). A model
        // the operator gave an explicit directory for that has vanished is the server's fault:
        // that stays a 503 (the resolver words that attempt "explicit path ...").
        let not_installed = matches!(
            root(&e),
            ember_core::Error::FilesNotFound { tried, .. }
                if !tried.iter().any(|t| t.starts_with("explicit path"))
        );
        let (status, kind) = match e.kind() {
            ErrorKind::ModelNotFound => (StatusCode::NOT_FOUND, "model_not_found"),
            // The caller asked for a model this server does not have (a 404, as Ollama answers
            // for a model not pulled). Broken or vanished files stay a 503 below.
            ErrorKind::ModelLoad if not_installed => (StatusCode::NOT_FOUND, "model_not_installed"),
            ErrorKind::InvalidInput if too_long => {
                (StatusCode::PAYLOAD_TOO_LARGE, "input_too_long")
            }
            ErrorKind::InvalidInput => (StatusCode::BAD_REQUEST, "invalid_request"),
            // The catalog lists it as `supported: false`: naming it is the caller's mistake.
            ErrorKind::Unsupported => (StatusCode::BAD_REQUEST, "model_unsupported"),
            ErrorKind::ModelLoad => (StatusCode::SERVICE_UNAVAILABLE, "model_load_failed"),
            ErrorKind::Capacity => (StatusCode::TOO_MANY_REQUESTS, "capacity"),
            ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let full = e.to_string();
        // Messages about the caller's own input echo it as given; the others may name files of
        // this machine (model directories, caches, site-packages), which stay in the log.
        let message = match e.kind() {
            ErrorKind::ModelNotFound | ErrorKind::InvalidInput | ErrorKind::Unsupported => full,
            _ => {
                let trimmed = redact_paths(&full);
                if trimmed != full {
                    tracing::warn!(error = %full, "request failed (paths trimmed in the answer)");
                    format!("{trimmed} (full paths in the server log)")
                } else {
                    trimmed
                }
            }
        };
        if status.is_server_error() {
            tracing::error!(error = %e, "request failed");
        }
        Self {
            status,
            kind,
            message,
        }
    }
}

/// `text` with every absolute file-system path (`/a/b/c`, `~/a/b`, `C:\a\b`) cut to `…/` plus
/// its last component, so a message still says which file without saying where it lives.
pub fn redact_paths(text: &str) -> String {
    const OPEN: &[char] = &['(', '[', '`', '\'', '"', '=', ':', ','];
    const CLOSE: &[char] = &[')', ']', '`', '\'', '"', ',', ';'];
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let boundary = i == 0 || chars[i - 1].is_whitespace() || OPEN.contains(&chars[i - 1]);
        let rest = &chars[i..];
        let starts_path = match rest {
            // `//` is a URL's authority (`https://host/...`), not a path.
            ['/', '/', ..] => false,
            ['/', c, ..] => !c.is_whitespace() && !CLOSE.contains(c),
            ['~', '/', ..] | ['~', '\\', ..] => true,
            [d, ':', '\\', ..] => d.is_ascii_alphabetic(),
            _ => false,
        };
        if !(boundary && starts_path) {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let end = rest
            .iter()
            .position(|c| c.is_whitespace() || CLOSE.contains(c))
            .map_or(chars.len(), |n| i + n);
        let token: String = chars[i..end].iter().collect();
        let body = token.trim_end_matches(['/', '\\']);
        let last = body.rsplit(['/', '\\']).next().unwrap_or("");
        out.push_str("…/");
        out.push_str(last);
        i = end;
    }
    out
}

/// The error under any [`ember_core::Error::Shared`] wrappers.
fn root(e: &ember_core::Error) -> &ember_core::Error {
    match e {
        ember_core::Error::Shared(inner) => root(inner),
        other => other,
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match &r {
            JsonRejection::MissingJsonContentType(_) => Self {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                kind: "unsupported_media_type",
                message: "expected `Content-Type: application/json`".to_string(),
            },
            JsonRejection::BytesRejection(_) => Self {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                kind: "payload_too_large",
                message: r.body_text(),
            },
            // body_text carries serde's message, which names the field and position.
            _ => Self {
                status: StatusCode::BAD_REQUEST,
                kind: "invalid_json",
                message: r.body_text(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        DialectError::<Native>::from(self).into_response()
    }
}

/// How one API family shapes an error body.
pub trait Dialect: Send + Sync + 'static {
    /// The response for `e`.
    fn render(e: &ApiError) -> Response;
}

/// Ember's own routes: `{"error": {"type", "message", "code"}}`.
#[derive(Debug, Clone, Copy)]
pub struct Native;

/// OpenAI's routes: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone, Copy)]
pub struct OpenAi;

/// Ollama's routes: `{"error": "..."}`.
#[derive(Debug, Clone, Copy)]
pub struct Ollama;

/// TEI's routes: `{"error": "...", "error_type": "..."}`.
#[derive(Debug, Clone, Copy)]
pub struct Tei;

impl Dialect for Native {
    fn render(e: &ApiError) -> Response {
        let body = json!({
            "error": {"type": e.kind, "message": e.message, "code": e.status.as_u16()}
        });
        (e.status, axum::Json(body)).into_response()
    }
}

impl Dialect for OpenAi {
    fn render(e: &ApiError) -> Response {
        // OpenAI's `type` is coarse; `code` carries the specific reason.
        let kind = match e.status {
            StatusCode::NOT_FOUND if is_model_kind(e.kind) => "invalid_request_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            StatusCode::UNAUTHORIZED => "authentication_error",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request_error",
        };
        let param = if is_model_kind(e.kind) || e.kind == "model_unsupported" {
            Some("model")
        } else {
            param_of(&e.message)
        };
        let body = json!({
            "error": {"message": e.message, "type": kind, "param": param, "code": e.kind}
        });
        (e.status, axum::Json(body)).into_response()
    }
}

impl Dialect for Ollama {
    fn render(e: &ApiError) -> Response {
        (e.status, axum::Json(json!({"error": e.message}))).into_response()
    }
}

impl Dialect for Tei {
    fn render(e: &ApiError) -> Response {
        // TEI's error types: Unhealthy, Backend, Overloaded, Validation, Tokenizer, Empty.
        let kind = match e.status {
            StatusCode::TOO_MANY_REQUESTS => "overloaded",
            StatusCode::SERVICE_UNAVAILABLE => "unhealthy",
            s if s.is_server_error() => "backend",
            _ if e.kind == "empty" => "empty",
            _ => "validation",
        };
        let body = json!({"error": e.message, "error_type": kind});
        (e.status, axum::Json(body)).into_response()
    }
}

/// Whether `kind` is about the `model` field.
fn is_model_kind(kind: &str) -> bool {
    matches!(kind, "model_not_found" | "model_not_installed")
}

/// The request field a message is about, for OpenAI's `param`: a JSON error's field path, a
/// message starting with the field's name, or the first field named in backticks.
fn param_of(message: &str) -> Option<&str> {
    const FIELDS: [&str; 5] = ["input", "model", "encoding_format", "dimensions", "user"];
    let known = |p: &str| FIELDS.contains(&p.split('[').next().unwrap_or(p));
    if let Some((_, rest)) = message.split_once("into the target type: ") {
        if let Some((path, _)) = rest.split_once(": ") {
            if known(path) {
                return Some(path);
            }
        }
    }
    if let Some(first) = message.split(' ').next().filter(|w| known(w)) {
        return Some(first);
    }
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    let p = &message[start..start + len];
    let field = p.split('[').next().unwrap_or(p);
    FIELDS.contains(&field).then_some(p)
}

/// An [`ApiError`] answered in dialect `D`'s shape.
#[derive(Debug)]
pub struct DialectError<D>(pub ApiError, PhantomData<D>);

impl<D> DialectError<D> {
    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }
}

impl<D> From<ApiError> for DialectError<D> {
    fn from(e: ApiError) -> Self {
        Self(e, PhantomData)
    }
}

impl<D> From<ember_core::Error> for DialectError<D> {
    fn from(e: ember_core::Error) -> Self {
        Self(e.into(), PhantomData)
    }
}

impl<D> From<JsonRejection> for DialectError<D> {
    fn from(r: JsonRejection) -> Self {
        Self(r.into(), PhantomData)
    }
}

impl<D: Dialect> IntoResponse for DialectError<D> {
    fn into_response(self) -> Response {
        D::render(&self.0)
    }
}

/// OpenAPI: the error statuses every operation may answer, each with its dialect's error body
/// (chosen by the operation's tag), so a schema checker can validate error answers too.
#[derive(Debug)]
pub struct ErrorResponses;

/// Native error body.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct NativeError {
    error: NativeErrorDetail,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct NativeErrorDetail {
    /// Machine-readable kind: `invalid_request`, `model_not_found`, `input_too_long`, ...
    r#type: String,
    message: String,
    /// The HTTP status.
    code: u16,
}

/// OpenAI's error body.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct OpenAiError {
    error: OpenAiErrorDetail,
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct OpenAiErrorDetail {
    message: String,
    /// `invalid_request_error`, `authentication_error`, `rate_limit_error`, `server_error`, ...
    r#type: String,
    /// The request field at fault, when one is.
    param: Option<String>,
    /// Ember's specific kind, as in the native shape.
    code: Option<String>,
}

/// Ollama's error body.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct OllamaError {
    error: String,
}

/// TEI's error body.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct TeiError {
    error: String,
    /// `validation`, `empty`, `overloaded`, `unhealthy`, `backend`, ...
    error_type: String,
}

impl utoipa::Modify for ErrorResponses {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        use utoipa::{PartialSchema, ToSchema};

        let components = api.components.get_or_insert_with(Default::default);
        for (name, schema) in [
            (NativeError::name(), NativeError::schema()),
            (NativeErrorDetail::name(), NativeErrorDetail::schema()),
            (OpenAiError::name(), OpenAiError::schema()),
            (OpenAiErrorDetail::name(), OpenAiErrorDetail::schema()),
            (OllamaError::name(), OllamaError::schema()),
            (TeiError::name(), TeiError::schema()),
        ] {
            components.schemas.insert(name.into_owned(), schema);
        }
        for (path, item) in api.paths.paths.iter_mut() {
            let ops = [
                (&mut item.get, false),
                (&mut item.post, true),
                (&mut item.delete, false),
            ];
            for (op, has_body) in ops {
                let Some(op) = op.as_mut() else { continue };
                let tag = op.tags.as_ref().and_then(|t| t.first()).map(String::as_str);
                let body = match tag {
                    Some("native") => NativeError::name(),
                    Some("openai") => OpenAiError::name(),
                    Some("ollama") => OllamaError::name(),
                    Some("tei") => TeiError::name(),
                    _ => continue, // health and the document itself: public, no model
                };
                let names_model = !matches!(
                    path.as_str(),
                    "/api/v1/models" | "/v1/models" | "/api/tags" | "/api/ps" | "/api/version"
                );
                let admin = path.starts_with("/api/v1/models/")
                    && (has_body || op.operation_id.as_deref() == Some("native_unload_model"));
                let mut statuses = vec![
                    ("401", "No valid API key (when keys are set)"),
                    (
                        "429",
                        "Too many requests at once, or the model's queue is full",
                    ),
                    ("500", "A fault inside Ember"),
                ];
                if has_body || names_model {
                    statuses.push((
                        "400",
                        "Invalid request (the message names the field), or a model listed as not supported yet",
                    ));
                }
                if has_body {
                    statuses.extend([
                        (
                            "413",
                            "Too many inputs or characters, or a body over the limit",
                        ),
                        ("415", "The body is not `application/json`"),
                    ]);
                }
                if names_model {
                    statuses.extend([
                        ("404", "Unknown model (or route)"),
                        ("503", "The model's files could not be found or loaded"),
                    ]);
                }
                if admin {
                    statuses.push(("403", "An API key where the admin key is needed"));
                }
                for (status, description) in statuses {
                    let content = ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name(body.clone())))
                        .build();
                    let kept = match op.responses.responses.get(status) {
                        Some(utoipa::openapi::RefOr::T(r)) if !r.description.is_empty() => {
                            r.description.clone()
                        }
                        _ => description.to_string(),
                    };
                    let response = ResponseBuilder::new()
                        .description(kept)
                        .content("application/json", content)
                        .build();
                    op.responses
                        .responses
                        .insert(status.to_string(), response.into());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_cut_to_their_last_component() {
        let cases = [
            (
                "cannot read /home/u/.cache/ember/m/model.safetensors: No such file",
                "cannot read …/model.safetensors: No such file",
            ),
            (
                "tried:\n  - EMBER_MODELS_DIR: /srv/models/x\n  - Hugging Face cache /root/.cache/huggingface/hub (a/b@main)",
                "tried:\n  - EMBER_MODELS_DIR: …/x\n  - Hugging Face cache …/hub (a/b@main)",
            ),
            ("model directory `/a/b/` has no x", "model directory `…/b` has no x"),
            ("in ~/models/e5 and C:\\Users\\me\\m", "in …/e5 and …/m"),
            ("no paths: a/b, 3/4 and / alone", "no paths: a/b, 3/4 and / alone"),
            (
                "Hub download from https://huggingface.co: failed",
                "Hub download from https://huggingface.co: failed",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(redact_paths(text), want, "{text}");
        }
    }

    #[test]
    fn load_failures_do_not_show_paths_but_input_errors_echo_the_input() {
        let e = ember_core::Error::PickleOnly {
            dir: "/secret/place/model".into(),
        };
        let api = ApiError::from(e);
        assert_eq!(api.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!api.message.contains("/secret"), "{}", api.message);
        assert!(
            api.message.contains("…/model holds only pytorch_model.bin"),
            "{}",
            api.message
        );
        let e = ember_core::Error::invalid("input", "`/etc/x` is not a string");
        assert!(ApiError::from(e).message.contains("/etc/x"));
    }

    #[test]
    fn param_is_the_first_backticked_field() {
        assert_eq!(param_of("`input[2]` must be a string"), Some("input[2]"));
        assert_eq!(param_of("unknown model `all-minilm`"), None);
        assert_eq!(param_of("no field"), None);
        assert_eq!(
            param_of("dimensions 999 is out of range for model `m`"),
            Some("dimensions")
        );
        assert_eq!(
            param_of("Failed to deserialize the JSON body into the target type: dimensions: invalid type"),
            Some("dimensions")
        );
    }
}
