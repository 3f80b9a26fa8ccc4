//! Task heads over an encoder's last hidden state, and what kind of model a directory holds.
//!
//! Ember's models come in three kinds that share the encoders, the tokenizer, the manager and
//! its memory budget: embedders (pooling, the default), rerankers (a sequence-classification
//! head, sentence-transformers' `CrossEncoder`) and sparse encoders (a masked-LM head pooled into
//! SPLADE vectors, sentence-transformers' `SparseEncoder`). The heads read the hidden state on
//! the host and run their matrices through the same kernels as the encoders (the masked-LM head
//! in the model's dtype, the small classifier head in FP32: see `classifier`); they never change
//! an encoder.
//!
//! The kind is read from the files: `modules.json` naming `SpladePooling` (directly or inside a
//! `Router`) is sparse, a `config.json` whose architecture ends in `ForSequenceClassification` is
//! a reranker, anything else embeds. A catalog entry's `kind` is a hint for checkpoints that
//! ship no `modules.json` (a bare `BertForMaskedLM` listed as sparse).

pub mod classifier;
pub(crate) mod distilbert;
pub mod sparse;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{read_json_opt, ModuleEntry};
use crate::error::Result;

/// What a model computes.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// Dense sentence vectors (pooling over the last hidden state).
    #[default]
    Embedder,
    /// A cross-encoder: one score (or one per label) for a (query, document) pair.
    Reranker,
    /// SPLADE: one weight per vocabulary entry, most of them zero.
    Sparse,
}

impl ModelKind {
    /// The name used in the catalog and in errors.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelKind::Embedder => "embedder",
            ModelKind::Reranker => "reranker",
            ModelKind::Sparse => "sparse",
        }
    }

    /// The kind with its article, for messages ("an embedder", "a sparse encoder").
    pub fn described(self) -> &'static str {
        match self {
            ModelKind::Embedder => "an embedder (kind `embedder`)",
            ModelKind::Reranker => "a reranker (kind `reranker`)",
            ModelKind::Sparse => "a sparse encoder (kind `sparse`)",
        }
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a model's pieces are, read from its files.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub kind: ModelKind,
    /// The folder holding `config.json`, the tokenizer and the encoder's weights: the model
    /// directory itself, or a router's transformer folder.
    pub transformer_dir: PathBuf,
    /// The `SpladePooling` folder (sparse models).
    pub splade_dir: Option<PathBuf>,
    /// The `SparseStaticEmbedding` folder of an inference-free model's query route.
    pub static_query_dir: Option<PathBuf>,
}

/// A `Router`'s `router_config.json`: module folders by id, and the ids of each route.
#[derive(Debug, Deserialize)]
struct RouterConfig {
    types: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    structure: std::collections::BTreeMap<String, Vec<String>>,
}

fn architecture(dir: &Path) -> Option<String> {
    let cfg: Value = read_json_opt(&dir.join("config.json")).ok().flatten()?;
    cfg.get("architectures")?
        .get(0)?
        .as_str()
        .map(str::to_string)
}

impl Layout {
    /// Reads `dir`'s module files; `hint` (the catalog's kind) decides for a masked-LM checkpoint
    /// without sentence-transformers files.
    pub fn read(dir: &Path, hint: ModelKind) -> Result<Self> {
        let mut layout = Layout {
            kind: ModelKind::Embedder,
            transformer_dir: dir.to_path_buf(),
            splade_dir: None,
            static_query_dir: None,
        };
        let modules: Vec<ModuleEntry> =
            read_json_opt(&dir.join("modules.json"))?.unwrap_or_default();
        for m in &modules {
            if m.kind.ends_with("SpladePooling") {
                layout.kind = ModelKind::Sparse;
                layout.splade_dir = Some(dir.join(&m.path));
            } else if m.kind.ends_with("Router") {
                layout.read_router(dir, &dir.join(&m.path))?;
            }
        }
        if layout.kind == ModelKind::Embedder {
            let arch = architecture(&layout.transformer_dir).unwrap_or_default();
            if arch.ends_with("ForSequenceClassification") {
                layout.kind = ModelKind::Reranker;
            } else if arch.ends_with("ForMaskedLM") && hint == ModelKind::Sparse {
                layout.kind = ModelKind::Sparse;
            }
        }
        Ok(layout)
    }

    /// A router (sentence-transformers' asymmetric models): the document route's transformer
    /// and pooling, and the query route's static weights if it has them.
    fn read_router(&mut self, root: &Path, router_dir: &Path) -> Result<()> {
        let cfg: Option<RouterConfig> = match read_json_opt(&router_dir.join("router_config.json"))?
        {
            Some(c) => Some(c),
            None => read_json_opt(&router_dir.join("config.json"))?,
        };
        let Some(cfg) = cfg else { return Ok(()) };
        let folder = |id: &str| router_dir.join(id);
        for (id, ty) in &cfg.types {
            let in_query = cfg.structure.get("query").is_some_and(|r| r.contains(id));
            if ty.ends_with("SpladePooling") {
                self.kind = ModelKind::Sparse;
                self.splade_dir = Some(folder(id));
            } else if ty.ends_with("SparseStaticEmbedding") && in_query {
                self.static_query_dir = Some(folder(id));
            } else if ty.ends_with("Transformer") {
                // Published checkpoints keep the transformer's files at the top of the repository.
                let dir = folder(id);
                self.transformer_dir = if dir.join("config.json").is_file() {
                    dir
                } else {
                    root.to_path_buf()
                };
            }
        }
        Ok(())
    }
}

/// The kind of the model in `dir` (an embedder when its files say nothing else or cannot be
/// read: loading reports those errors).
pub fn detect_kind(dir: &Path) -> ModelKind {
    Layout::read(dir, ModelKind::Embedder).map_or(ModelKind::Embedder, |l| l.kind)
}

/// The `model_max_length` of `tokenizer_config.json`, when it is a real limit.
pub(crate) fn tokenizer_max_length(dir: &Path) -> Option<usize> {
    read_json_opt::<crate::config::TokenizerConfigFile>(&dir.join("tokenizer_config.json"))
        .ok()
        .flatten()?
        .limit()
}

/// What turns a loaded model's last hidden state into its output.
#[derive(Debug)]
pub enum Head {
    /// Sentence pooling (embedders; done by `crate::pooling`).
    Pooling,
    /// A sequence-classification head (rerankers).
    Classifier(classifier::Classifier),
    /// A masked-LM head with SPLADE pooling (sparse encoders).
    Sparse(Box<sparse::SparseHead>),
}

impl Head {
    /// Loads the head `layout.kind` needs from `w`; `raw` is `config.json` as written and
    /// `family` its `model_type`.
    pub(crate) fn load(
        layout: &Layout,
        w: &mut crate::weights::Weights,
        cfg: &crate::config::TransformerConfig,
        raw: &Value,
        family: &str,
        tokenizer: &crate::tokenize::TextTokenizer,
    ) -> Result<Self> {
        Ok(match layout.kind {
            ModelKind::Embedder => Head::Pooling,
            ModelKind::Reranker => {
                let arch = cfg.architectures.first().map_or("", String::as_str);
                Head::Classifier(classifier::Classifier::load(w, raw, arch, cfg.hidden_size)?)
            }
            ModelKind::Sparse => {
                let root = layout
                    .splade_dir
                    .as_deref()
                    .and_then(Path::parent)
                    .unwrap_or(&layout.transformer_dir)
                    .to_path_buf();
                Head::Sparse(Box::new(sparse::SparseHead::load(
                    w,
                    cfg,
                    family,
                    layout.splade_dir.as_deref(),
                    layout
                        .static_query_dir
                        .as_deref()
                        .map(|d| (d, root.as_path())),
                    tokenizer,
                )?))
            }
        })
    }

    /// Bytes held by the head's weights.
    pub fn bytes(&self) -> usize {
        match self {
            Head::Pooling => 0,
            Head::Classifier(c) => c.bytes(),
            Head::Sparse(s) => s.bytes(),
        }
    }

    /// The output width when the head sets it: labels, or the vocabulary.
    pub fn output_dim(&self) -> Option<usize> {
        match self {
            Head::Pooling => None,
            Head::Classifier(c) => Some(c.num_labels()),
            Head::Sparse(s) => Some(s.vocab()),
        }
    }

    /// A classifier's label names.
    pub fn labels(&self) -> Vec<String> {
        match self {
            Head::Classifier(c) => c.labels().to_vec(),
            _ => Vec::new(),
        }
    }
}
