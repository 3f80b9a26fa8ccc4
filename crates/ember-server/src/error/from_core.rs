//! The one mapping from a core error to an [`ApiError`]: kind, status and field by the error's
//! variant and core kind, never by its message. Messages that may name files of this machine are
//! trimmed; the whole message stays in `log_detail` for the server log.

use ember_core::{Error, ErrorKind};

use super::{redact_paths, ApiError, ApiErrorKind};

/// The error under any [`Error::Shared`] wrappers (one load failure shared by its waiters).
fn root(e: &Error) -> &Error {
    match e {
        Error::Shared(inner) => root(inner),
        other => other,
    }
}

/// The request field a core error is about, when it names one.
fn field_of(e: &Error) -> Option<String> {
    match root(e) {
        Error::InvalidInput { field, .. } => Some(field.clone()),
        Error::UnknownPrompt { .. } => Some("prompt_name".into()),
        Error::Dimensions { .. } => Some("dimensions".into()),
        Error::InputTooLong { .. } => Some("input".into()),
        Error::WrongKind { .. } => Some("model".into()),
        _ => None,
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let kind = match (e.kind(), root(&e)) {
            (ErrorKind::ModelNotFound, _) => ApiErrorKind::ModelNotFound,
            // The caller asked for a catalog model whose files are nowhere (not packaged, not
            // cached, no Hub): a 404, as Ollama answers for a model not pulled. A directory the
            // operator configured that has vanished (`ModelDirMissing`) is the server's fault.
            (ErrorKind::ModelLoad, Error::FilesNotFound { .. }) => ApiErrorKind::ModelNotInstalled,
            (ErrorKind::ModelLoad, _) => ApiErrorKind::ModelLoadFailed,
            (ErrorKind::InvalidInput, Error::InputTooLong { .. }) => ApiErrorKind::InputTooLong,
            (ErrorKind::InvalidInput, _) => ApiErrorKind::InvalidRequest,
            // Listed as `supported: false`: naming it is the caller's mistake.
            (ErrorKind::Unsupported, _) => ApiErrorKind::ModelUnsupported,
            (ErrorKind::Capacity, _) => ApiErrorKind::Capacity,
            (ErrorKind::Internal, _) => ApiErrorKind::Internal,
        };
        let full = e.to_string();
        let mut out = match e.kind() {
            // About the caller's own input: echoed as given.
            ErrorKind::ModelNotFound | ErrorKind::InvalidInput | ErrorKind::Unsupported => {
                ApiError::new(kind, full)
            }
            // May name model directories, caches, site-packages: those stay in the log.
            _ => {
                let trimmed = redact_paths(&full);
                if trimmed == full {
                    ApiError::new(kind, full)
                } else {
                    let mut a =
                        ApiError::new(kind, format!("{trimmed} (full paths in the server log)"));
                    a.log_detail = Some(full.into());
                    a
                }
            }
        };
        out.field = if kind.is_about_model() {
            Some("model".into())
        } else {
            field_of(&e).map(Into::into)
        };
        out
    }
}
