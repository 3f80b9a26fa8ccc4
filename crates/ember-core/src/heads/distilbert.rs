//! DistilBERT read as BERT: the same post-norm layers without token types or a pooler, under
//! other names (transformers' `modeling_distilbert.py`). Its `config.json` keys and weight names
//! are translated to BERT's, so the BERT encoder and its kernels run it unchanged. OpenSearch's
//! inference-free sparse encoders (`opensearch-neural-sparse-encoding-doc-v3-distill`) are
//! DistilBERT masked-LM models.

use std::path::Path;

use serde_json::{json, Value};

use crate::config::TransformerConfig;
use crate::error::{Error, Result};

/// DistilBERT's `config.json` (`raw`, read from `path`) as a BERT [`TransformerConfig`]:
/// `dim`, `n_layers`, `n_heads`, `hidden_dim` and `activation` become BERT's keys and
/// `model_type` becomes `bert`. The family stays readable in the raw JSON for the heads.
pub(crate) fn to_bert(raw: &Value, path: &Path) -> Result<TransformerConfig> {
    let json_err = |source| Error::Json {
        path: path.to_path_buf(),
        source,
    };
    let get = |k: &str| raw.get(k).cloned().unwrap_or(Value::Null);
    if raw.get("sinusoidal_pos_embds").and_then(Value::as_bool) == Some(true) {
        return Err(Error::Config {
            path: path.to_path_buf(),
            message:
                "DistilBERT with sinusoidal_pos_embds is not supported (learned positions only)"
                    .into(),
        });
    }
    // `bert`: the encoder then counts positions from 0, as DistilBERT does.
    let bert = json!({
        "model_type": "bert",
        "architectures": get("architectures"),
        "vocab_size": get("vocab_size"),
        "hidden_size": get("dim"),
        "num_hidden_layers": get("n_layers"),
        "num_attention_heads": get("n_heads"),
        "intermediate_size": get("hidden_dim"),
        "hidden_act": raw.get("activation").cloned().unwrap_or(json!("gelu")),
        "max_position_embeddings": get("max_position_embeddings"),
        "type_vocab_size": 0,
        "layer_norm_eps": 1e-12,
        "pad_token_id": raw.get("pad_token_id").cloned().unwrap_or(json!(0)),
    });
    serde_json::from_value(bert).map_err(json_err)
}

/// BERT's name for a DistilBERT weight (`distilbert.` prefix included), or the name unchanged.
pub(crate) fn bert_name(name: &str) -> String {
    let Some(rest) = name
        .strip_prefix("distilbert.transformer.layer.")
        .or_else(|| name.strip_prefix("transformer.layer."))
    else {
        return name.to_string();
    };
    let prefix = if name.starts_with("distilbert.") {
        "distilbert."
    } else {
        ""
    };
    let Some((layer, tail)) = rest.split_once('.') else {
        return name.to_string();
    };
    let table = [
        ("attention.q_lin.", "attention.self.query."),
        ("attention.k_lin.", "attention.self.key."),
        ("attention.v_lin.", "attention.self.value."),
        ("attention.out_lin.", "attention.output.dense."),
        ("sa_layer_norm.", "attention.output.LayerNorm."),
        ("ffn.lin1.", "intermediate.dense."),
        ("ffn.lin2.", "output.dense."),
        ("output_layer_norm.", "output.LayerNorm."),
    ];
    for (from, to) in table {
        if let Some(param) = tail.strip_prefix(from) {
            return format!("{prefix}encoder.layer.{layer}.{to}{param}");
        }
    }
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_names_map_to_bert() {
        assert_eq!(
            bert_name("distilbert.transformer.layer.3.attention.q_lin.weight"),
            "distilbert.encoder.layer.3.attention.self.query.weight"
        );
        assert_eq!(
            bert_name("distilbert.transformer.layer.0.output_layer_norm.bias"),
            "distilbert.encoder.layer.0.output.LayerNorm.bias"
        );
        assert_eq!(
            bert_name("distilbert.embeddings.word_embeddings.weight"),
            "distilbert.embeddings.word_embeddings.weight"
        );
        assert_eq!(
            bert_name("vocab_transform.weight"),
            "vocab_transform.weight"
        );
    }
}
