//! Ember's core: a registry of embedding models, file resolution, tokenization, encoders on candle
//! tensors and pooling that give sentence-transformers' vectors; cross-encoder scores and SPLADE
//! sparse vectors from heads on the same encoders.
//!
//! Pure Rust and synchronous; the HTTP server and the Python bindings add concurrency at the edges.
//!
//! ```no_run
//! use ember_core::{EmbedOptions, ModelManager, Registry, Resolver};
//! let manager = ModelManager::new(Registry::builtin(), Resolver::from_env());
//! let out = manager.embed(None, None, &["hello world".to_string()], &EmbedOptions::default())?;
//! assert_eq!(out.model, "all-MiniLM-L6-v2");
//! # Ok::<(), ember_core::Error>(())
//! ```

pub mod config;
pub mod dtype;
pub mod embedder;
pub mod error;
pub mod heads;
pub mod identity;
pub mod kernels;
pub(crate) mod loading;
pub mod manager;
pub mod models;
pub mod packaged;
pub mod pooling;
pub mod precision;
pub mod registry;
pub mod rerank;
pub mod resolve;
pub mod sparse;
pub mod tokenize;
pub mod weights;

pub use dtype::DType;
pub use embedder::{EmbedOptions, Embedder, Embeddings, ModelInfo};
pub use error::{Error, ErrorKind, Result};
pub use heads::sparse::SparseVector;
pub use heads::ModelKind;
pub use identity::{Chunk, InputType, ModelIdentity};
pub use loading::{LoadOptions, DEFAULT_MAX_INPUT_TOKENS};
pub use manager::{KeepAlive, ManagerConfig, ManagerStats, ModelManager, ModelStatus};
pub use pooling::{Matryoshka, Pooling};
pub use precision::{Precision, Quantized};
pub use registry::{ModelSpec, Packaged, Registry};
pub use rerank::{PredictInput, Ranked, RerankOptions, Scores};
pub use resolve::Resolver;
pub use sparse::{SparseEmbeddings, SparseOptions};
pub use tokenize::{Encoded, TokenInfo, TruncationSide};
