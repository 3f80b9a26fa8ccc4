//! Reads a model directory (Hugging Face / sentence-transformers layout, or model2vec's) into the
//! parts of an [`Embedder`](crate::Embedder): the config by its `model_type`, the encoder or the
//! static table, the tokenizer, pooling, the Dense chain, prompts and the input limit, and the
//! head a reranker or sparse encoder adds (`crate::heads`).

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::Device;

use crate::config::{
    read_json, read_json_opt, ModelConfig, ModuleEntry, PoolingConfigFile, SentenceBertConfig,
    SentenceTransformersConfig, TokenizerConfigFile,
};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::heads::{Head, Layout, ModelKind};
use crate::models::dense::{self, Dense};
use crate::models::static_embed::{StaticModel, UNLIMITED};
use crate::models::Encoder;
use crate::pooling::{Matryoshka, Pooling};
use crate::tokenize::TextTokenizer;
use crate::weights::{weight_files, Weights};

/// What turns token ids into vectors.
#[derive(Debug)]
pub(crate) enum Backbone {
    /// A transformer: last hidden state, then pooling.
    Encoder(Encoder),
    /// A model2vec table: a mean of rows, no pooling machinery.
    Static(StaticModel),
}

impl Backbone {
    pub(crate) fn bytes(&self) -> usize {
        match self {
            Backbone::Encoder(e) => e.bytes(),
            Backbone::Static(s) => s.bytes(),
        }
    }
}

/// Everything `Embedder::load_on` reads from a directory.
#[derive(Debug)]
pub(crate) struct Parts {
    pub architecture: String,
    pub backbone: Backbone,
    pub dense: Vec<Dense>,
    pub tokenizer: TextTokenizer,
    pub pooling: Pooling,
    pub normalize: bool,
    pub include_prompt: bool,
    pub hidden: usize,
    pub dimension: usize,
    pub max_seq_length: usize,
    pub prompts: BTreeMap<String, String>,
    pub default_prompt_name: Option<String>,
    pub matryoshka: Matryoshka,
    /// What the model computes, read from its files (`crate::heads::Layout`).
    pub kind: ModelKind,
    /// Pooling for embedders, else a classifier or a masked-LM head.
    pub head: Head,
}

/// The default of [`LoadOptions::max_input_tokens`]: 8,192 tokens.
pub const DEFAULT_MAX_INPUT_TOKENS: usize = 8192;

/// How a model directory is loaded. The edges set `max_input_tokens` from their settings (the
/// server's `--max-input-tokens` / `EMBER_MAX_INPUT_TOKENS`, Python's `ModelManager` argument);
/// the core reads no environment for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// How the weights are stored.
    pub dtype: DType,
    /// The catalog's kind, for checkpoints whose files do not say (see `crate::heads`).
    pub kind: ModelKind,
    /// The longest input accepted, whatever the model's own maximum: models trained on longer
    /// inputs (Qwen3: 32,768) are cut to it, or refused with truncation off. Attention's memory
    /// grows linearly with the length (`kernels::flash`) but its time quadratically, so one
    /// input of 32k tokens would hold a worker for minutes; raise it to serve them. Static
    /// (model2vec) models, which have no attention, keep their own limit.
    pub max_input_tokens: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            dtype: DType::Fp32,
            kind: ModelKind::Embedder,
            max_input_tokens: DEFAULT_MAX_INPUT_TOKENS,
        }
    }
}

/// Reads `dir` for model `id` on `device` as `opts` say.
pub(crate) fn load_parts(
    id: &str,
    dir: &Path,
    device: &Device,
    opts: &LoadOptions,
) -> Result<Parts> {
    let (dtype, hint) = (opts.dtype, opts.kind);
    if opts.max_input_tokens == 0 {
        return Err(Error::invalid(
            "max_input_tokens",
            "`max_input_tokens` must be at least 1",
        ));
    }
    if !dir.is_dir() {
        return Err(Error::FilesNotFound {
            id: id.to_string(),
            tried: vec![format!("{} (not a directory)", dir.display())],
        });
    }
    let layout = Layout::read(dir, hint)?;
    // A router's transformer may live in its own folder.
    let dir = layout.transformer_dir.as_path();
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        return Err(Error::MissingFile {
            dir: dir.to_path_buf(),
            file: "config.json",
        });
    }
    let tokenizer_path = dir.join("tokenizer.json");
    if !tokenizer_path.is_file() {
        return Err(Error::MissingFile {
            dir: dir.to_path_buf(),
            file: "tokenizer.json",
        });
    }
    let cfg = ModelConfig::read(&config_path)?;
    if let ModelConfig::Static(sc) = &cfg {
        let tokenizer = TextTokenizer::load(&tokenizer_path, id, 0, false)?;
        let model = StaticModel::load(id, dir, sc, &tokenizer, dtype)?;
        let st: SentenceTransformersConfig =
            read_json_opt(&dir.join("config_sentence_transformers.json"))?.unwrap_or_default();
        return Ok(Parts {
            architecture: cfg.model_type().to_string(),
            hidden: model.dim(),
            dimension: model.dim(),
            normalize: model.normalize(),
            max_seq_length: sc.max_length.unwrap_or(UNLIMITED).max(1),
            backbone: Backbone::Static(model),
            dense: Vec::new(),
            tokenizer,
            pooling: Pooling::Mean,
            include_prompt: true,
            prompts: st.prompts,
            default_prompt_name: st.default_prompt_name,
            matryoshka: Matryoshka::Slice,
            kind: ModelKind::Embedder,
            head: Head::Pooling,
        });
    }

    let files = weight_files(dir)?;
    let modules: Vec<ModuleEntry> = read_json_opt(&dir.join("modules.json"))?.unwrap_or_default();
    let pooling_dir = modules
        .iter()
        .find(|m| m.kind.ends_with("Pooling"))
        .map(|m| m.path.clone())
        .unwrap_or_else(|| "1_Pooling".into());
    let pooling_cfg: PoolingConfigFile =
        read_json_opt(&dir.join(&pooling_dir).join("config.json"))?.unwrap_or_default();
    let pooling = Pooling::from_config(&pooling_cfg).unwrap_or(Pooling::Mean);
    let normalize = modules.iter().any(|m| m.kind.ends_with("Normalize"));
    let sbert: SentenceBertConfig =
        read_json_opt(&dir.join("sentence_bert_config.json"))?.unwrap_or_default();
    let st: SentenceTransformersConfig =
        read_json_opt(&dir.join("config_sentence_transformers.json"))?.unwrap_or_default();

    // Size rayon's pool (GEMMs, attention, tokenizer batches) to EMBER_NUM_THREADS once.
    crate::kernels::threads::num_threads();
    let raw: serde_json::Value = read_json(&config_path)?;
    let family = raw["model_type"].as_str().unwrap_or_default().to_string();
    let mut weights = Weights::load(id, &files, device)?
        .with_prefixes(&[
            "bert.",
            "roberta.",
            "mpnet.",
            "model.",
            "nomic_bert.",
            "new.",
            "gte.",
            "distilbert.",
        ])
        .with_dtype(dtype);
    if family == "distilbert" {
        weights = weights.with_renames(crate::heads::distilbert::bert_name);
    }
    let encoder = Encoder::load(&weights, &cfg, &config_path)?;
    let (vocab, pad_id, position_limit) = match &cfg {
        // Position tables bound the length; RoBERTa-style models lose `pad + 1` slots to the
        // offset.
        ModelConfig::Transformer(c) => (
            c.vocab_size,
            c.pad_token_id.unwrap_or(0),
            match c.model_type.as_str() {
                "bert" => c.max_position_embeddings,
                _ => c
                    .max_position_embeddings
                    .saturating_sub(c.pad_token_id.unwrap_or(1) as usize + 1),
            },
        ),
        ModelConfig::Nomic(c) => (
            c.vocab_size,
            c.pad_token_id.unwrap_or(0),
            match &encoder {
                Encoder::Nomic(m) => m.max_positions(),
                _ => 2048,
            },
        ),
        // Relative positions set no hard limit; T5 was trained on 512.
        ModelConfig::T5(c) => (
            c.vocab_size,
            c.pad_token_id.unwrap_or(0),
            c.n_positions.unwrap_or(512),
        ),
        // Rotary positions: the length the model was trained to.
        ModelConfig::Rotary(c) => {
            let (vocab, pad, positions) = c.sizes();
            (vocab, pad.unwrap_or(0), positions)
        }
        ModelConfig::Static(_) => unreachable!("static models returned above"),
    };
    // sentence-transformers: `max_seq_length`, else the tokenizer's `model_max_length`, bounded
    // by the position table (models with relative or rotary positions have none to bound them).
    let tok_cfg: TokenizerConfigFile =
        read_json_opt(&dir.join("tokenizer_config.json"))?.unwrap_or_default();
    let wanted = sbert.max_seq_length.or_else(|| tok_cfg.limit());
    let max_seq_length = match &cfg {
        ModelConfig::T5(_) | ModelConfig::Nomic(_) => wanted.unwrap_or(position_limit),
        _ => wanted.unwrap_or(position_limit).min(position_limit),
    }
    .min(opts.max_input_tokens);
    let tokenizer = TextTokenizer::load(&tokenizer_path, id, pad_id, sbert.do_lower_case)?;
    let head = match (&cfg, layout.kind) {
        (_, ModelKind::Embedder) => Head::Pooling,
        (ModelConfig::Transformer(c), _) => {
            Head::load(&layout, &mut weights, c, &raw, &family, &tokenizer)?
        }
        // The rotary families' classifiers (ModernBERT, GTE) read only the raw config.
        (_, ModelKind::Reranker) => {
            let arch = raw["architectures"][0].as_str().unwrap_or_default();
            Head::Classifier(crate::heads::classifier::Classifier::load(
                &weights,
                &raw,
                arch,
                encoder.hidden_size(),
            )?)
        }
        (other, kind) => {
            return Err(Error::UnsupportedFeature {
                path: config_path.clone(),
                feature: format!("a {kind} head on a `{}` encoder", other.model_type()),
            })
        }
    };
    drop(weights);
    let vocab_size = tokenizer.vocab_size();
    if vocab_size > vocab {
        return Err(Error::Config {
            path: config_path,
            message: format!("the tokenizer has {vocab_size} tokens but vocab_size is {vocab}"),
        });
    }
    let hidden = encoder.hidden_size();
    let pooled = pooling_cfg.word_embedding_dimension.unwrap_or(hidden);
    if pooled != hidden {
        return Err(Error::ModuleShape {
            path: dir.join(&pooling_dir).join("config.json"),
            message: format!(
                "word_embedding_dimension {pooled} disagrees with the encoder's hidden size \
                 {hidden}"
            ),
        });
    }
    let dense = dense::load_chain(id, dir, &modules, hidden, dtype, device)?;
    let dimension = dense.last().map_or(hidden, Dense::out_features);
    Ok(Parts {
        architecture: family,
        kind: layout.kind,
        head,
        matryoshka: match &cfg {
            ModelConfig::Nomic(_) => Matryoshka::LayerNormThenSlice,
            _ => Matryoshka::Slice,
        },
        backbone: Backbone::Encoder(encoder),
        dense,
        tokenizer,
        pooling,
        normalize,
        include_prompt: pooling_cfg.include_prompt,
        hidden,
        dimension,
        max_seq_length,
        prompts: st.prompts,
        default_prompt_name: st.default_prompt_name,
    })
}
