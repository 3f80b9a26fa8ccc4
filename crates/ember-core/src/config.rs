//! Serde mirrors of the JSON files in a Hugging Face / sentence-transformers model directory.

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::error::{Error, Result};

/// Reads and parses a JSON file, naming the file in any error.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads an optional JSON file: `Ok(None)` when it does not exist.
pub(crate) fn read_json_opt<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    if path.is_file() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

/// The fields of `config.json` the encoders use (BERT, XLM-RoBERTa, MPNet).
///
/// Mirrors `transformers`' `BertConfig` / `XLMRobertaConfig` / `MPNetConfig`.
#[derive(Debug, Clone, Deserialize)]
pub struct TransformerConfig {
    pub model_type: String,
    #[serde(default)]
    pub architectures: Vec<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    #[serde(default = "default_position_embedding_type")]
    pub position_embedding_type: String,
    /// MPNet only.
    #[serde(default = "default_buckets")]
    pub relative_attention_num_buckets: usize,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_eps() -> f64 {
    1e-12
}
fn default_position_embedding_type() -> String {
    "absolute".into()
}
fn default_buckets() -> usize {
    32
}

impl TransformerConfig {
    /// Checks that the sizes are consistent before any weight is read.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |message: String| Error::Config {
            path: path.to_path_buf(),
            message,
        };
        if self.hidden_size == 0 || self.num_attention_heads == 0 || self.num_hidden_layers == 0 {
            return Err(bad(
                "hidden_size, num_attention_heads and num_hidden_layers must be positive".into(),
            ));
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return Err(bad(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        if self.position_embedding_type != "absolute" {
            return Err(bad(format!(
                "position_embedding_type `{}` is not supported (only `absolute`)",
                self.position_embedding_type
            )));
        }
        match self.hidden_act.as_str() {
            "gelu" | "gelu_new" | "gelu_pytorch_tanh" | "relu" => Ok(()),
            other => Err(bad(format!("hidden_act `{other}` is not supported"))),
        }
    }
}

/// Every `model_type` Ember runs, as named in `config.json`.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &[
    "bert",
    "roberta",
    "xlm-roberta",
    "camembert",
    "mpnet",
    "distilbert",
    "nomic_bert",
    "t5",
    "model2vec",
    "qwen3",
    "gemma3_text",
    "modernbert",
    "new",
    "gte",
];

/// A model's `config.json`, parsed by its `model_type` into the mirror of that architecture.
#[derive(Debug, Clone)]
pub enum ModelConfig {
    /// BERT, the RoBERTa family and MPNet.
    Transformer(TransformerConfig),
    /// NomicBERT (nomic-embed-text), either config layout (boxed: the largest mirror).
    Nomic(Box<crate::models::nomic::NomicConfig>),
    /// T5 encoders (INSTRUCTOR, sentence-t5).
    T5(crate::models::t5::T5Config),
    /// A static model2vec model.
    Static(crate::models::static_embed::StaticConfig),
    /// Qwen3, Gemma3, ModernBERT or Alibaba GTE.
    Rotary(crate::models::rotary::RotaryConfig),
}

impl ModelConfig {
    /// Reads `config.json`: its `model_type` picks the mirror; an unknown one is an error that
    /// lists the architectures Ember runs.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&bytes, path)
    }

    /// Parses `config.json` bytes (`path` names the file in errors) and checks the sizes.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self> {
        #[derive(Deserialize)]
        struct Kind {
            #[serde(default)]
            model_type: Option<String>,
        }
        let json = |source| Error::Json {
            path: path.to_path_buf(),
            source,
        };
        let kind: Kind = serde_json::from_slice(bytes).map_err(json)?;
        let model_type = kind.model_type.unwrap_or_default();
        let cfg = match model_type.as_str() {
            "bert" | "roberta" | "xlm-roberta" | "camembert" | "mpnet" => {
                ModelConfig::Transformer(serde_json::from_slice(bytes).map_err(json)?)
            }
            // Read as BERT (`crate::heads::distilbert`); weight names are translated at load.
            "distilbert" => ModelConfig::Transformer(crate::heads::distilbert::to_bert(
                &serde_json::from_slice(bytes).map_err(json)?,
                path,
            )?),
            "nomic_bert" => ModelConfig::Nomic(serde_json::from_slice(bytes).map_err(json)?),
            "t5" => ModelConfig::T5(serde_json::from_slice(bytes).map_err(json)?),
            "model2vec" => ModelConfig::Static(serde_json::from_slice(bytes).map_err(json)?),
            t @ ("qwen3" | "qwen3_moe" | "gemma3_text" | "modernbert" | "new" | "gte") => {
                ModelConfig::Rotary(
                    crate::models::rotary::RotaryConfig::parse(t, bytes).map_err(json)?,
                )
            }
            other => {
                return Err(Error::UnknownArchitecture {
                    path: path.to_path_buf(),
                    model_type: if other.is_empty() {
                        "(none)".into()
                    } else {
                        other.to_string()
                    },
                    supported: SUPPORTED_ARCHITECTURES.join(", "),
                })
            }
        };
        cfg.validate(path)?;
        Ok(cfg)
    }

    /// Checks that the sizes are consistent before any weight is read.
    pub fn validate(&self, path: &Path) -> Result<()> {
        match self {
            ModelConfig::Transformer(c) => c.validate(path),
            ModelConfig::Nomic(c) => c.validate(path),
            ModelConfig::T5(c) => c.validate(path),
            ModelConfig::Static(_) => Ok(()),
            ModelConfig::Rotary(c) => c.validate(path),
        }
    }

    /// `model_type`.
    pub fn model_type(&self) -> &str {
        match self {
            ModelConfig::Transformer(c) => &c.model_type,
            ModelConfig::Nomic(_) => "nomic_bert",
            ModelConfig::T5(_) => "t5",
            ModelConfig::Static(_) => "model2vec",
            ModelConfig::Rotary(c) => c.model_type(),
        }
    }
}

/// `1_Pooling/config.json` of sentence-transformers.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PoolingConfigFile {
    #[serde(default)]
    pub word_embedding_dimension: Option<usize>,
    #[serde(default)]
    pub pooling_mode_cls_token: bool,
    #[serde(default)]
    pub pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pub pooling_mode_max_tokens: bool,
    #[serde(default)]
    pub pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pub pooling_mode_lasttoken: bool,
    #[serde(default)]
    pub pooling_mode_weightedmean_tokens: bool,
    #[serde(default = "default_true")]
    pub include_prompt: bool,
}

fn default_true() -> bool {
    true
}

/// `sentence_bert_config.json`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SentenceBertConfig {
    #[serde(default)]
    pub max_seq_length: Option<usize>,
    #[serde(default)]
    pub do_lower_case: bool,
}

/// `tokenizer_config.json`: the limit sentence-transformers falls back to when
/// `sentence_bert_config.json` names none.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TokenizerConfigFile {
    /// transformers writes `1e30` for "no limit"; read as a float so that parses.
    #[serde(default)]
    pub model_max_length: Option<f64>,
}

impl TokenizerConfigFile {
    /// The limit, when it is a real one.
    pub fn limit(&self) -> Option<usize> {
        self.model_max_length
            .filter(|v| (1.0..1e9).contains(v))
            .map(|v| v as usize)
    }
}

/// `config_sentence_transformers.json`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SentenceTransformersConfig {
    #[serde(default)]
    pub prompts: BTreeMap<String, String>,
    #[serde(default)]
    pub default_prompt_name: Option<String>,
}

/// `N_Dense/config.json` of sentence-transformers (a `Dense` module).
#[derive(Debug, Clone, Deserialize)]
pub struct DenseConfigFile {
    pub in_features: usize,
    pub out_features: usize,
    #[serde(default = "default_true")]
    pub bias: bool,
    /// A torch class path (`torch.nn.modules.activation.Tanh`); Identity when absent.
    #[serde(default = "default_identity")]
    pub activation_function: String,
}

fn default_identity() -> String {
    "torch.nn.modules.linear.Identity".into()
}

/// One entry of `modules.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct ModuleEntry {
    #[serde(default)]
    pub path: String,
    #[serde(rename = "type")]
    pub kind: String,
}
