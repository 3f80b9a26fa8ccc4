//! What went wrong, as a type: each kind has the name callers see (native `type`, OpenAI `code`)
//! and the status it usually answers with.

use axum::http::StatusCode;

/// The kinds of error the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiErrorKind {
    /// A field's value is wrong.
    InvalidRequest,
    /// The body is not JSON of the expected shape.
    InvalidJson,
    /// A path segment could not be read (e.g. not UTF-8).
    InvalidPath,
    /// A list that must not be empty is.
    Empty,
    /// No such route.
    NotFound,
    /// The route exists with other methods.
    MethodNotAllowed,
    /// More inputs than `--max-client-batch`.
    TooManyInputs,
    /// An input over a character or token limit.
    InputTooLong,
    /// A body over `--max-body-bytes`.
    PayloadTooLarge,
    /// The body is not `application/json`.
    UnsupportedMediaType,
    /// The body did not arrive within `--body-timeout`.
    BodyTimeout,
    /// The model is neither in the catalog nor an allowed directory.
    ModelNotFound,
    /// A catalog model whose files are not on this machine.
    ModelNotInstalled,
    /// A catalog model Ember has no encoder for.
    ModelUnsupported,
    /// The model's files are broken or vanished.
    ModelLoadFailed,
    /// The memory budget or the model count stops a load.
    Capacity,
    /// The model's batch queue is full.
    QueueFull,
    /// The server is at its limit of requests (or request bytes) at once.
    Overloaded,
    /// No valid API key.
    Unauthorized,
    /// An API key where the admin key is needed.
    Forbidden,
    /// A fault inside Ember.
    Internal,
}

impl ApiErrorKind {
    /// The name callers see.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidJson => "invalid_json",
            Self::InvalidPath => "invalid_path",
            Self::Empty => "empty",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::TooManyInputs => "too_many_inputs",
            Self::InputTooLong => "input_too_long",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::BodyTimeout => "body_timeout",
            Self::ModelNotFound => "model_not_found",
            Self::ModelNotInstalled => "model_not_installed",
            Self::ModelUnsupported => "model_unsupported",
            Self::ModelLoadFailed => "model_load_failed",
            Self::Capacity => "capacity",
            Self::QueueFull => "queue_full",
            Self::Overloaded => "overloaded",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::Internal => "internal",
        }
    }

    /// The status this kind answers with unless the error says otherwise.
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidRequest
            | Self::InvalidJson
            | Self::InvalidPath
            | Self::Empty
            | Self::ModelUnsupported => StatusCode::BAD_REQUEST,
            Self::NotFound | Self::ModelNotFound | Self::ModelNotInstalled => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::TooManyInputs | Self::InputTooLong | Self::PayloadTooLarge => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::ModelLoadFailed => StatusCode::SERVICE_UNAVAILABLE,
            Self::Capacity | Self::QueueFull | Self::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Whether the error is about the request's `model` field.
    pub fn is_about_model(self) -> bool {
        matches!(
            self,
            Self::ModelNotFound | Self::ModelNotInstalled | Self::ModelUnsupported
        )
    }
}

impl std::fmt::Display for ApiErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
