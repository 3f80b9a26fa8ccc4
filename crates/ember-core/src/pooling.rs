//! Sentence pooling from the model's `1_Pooling/config.json`, L2 normalization and Matryoshka
//! truncation, done on the host over the last hidden state.

use serde::{Deserialize, Serialize};

use crate::config::PoolingConfigFile;

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// Mask-aware mean of token vectors.
    Mean,
    /// The first token (`[CLS]` / `<s>`).
    Cls,
    /// The last non-padding token.
    LastToken,
    /// Element-wise max over tokens.
    Max,
    /// Sum divided by the square root of the length.
    MeanSqrtLen,
}

impl Pooling {
    /// The mode named by a sentence-transformers pooling config (the first one set wins, in
    /// sentence-transformers' order of precedence for single-mode configs).
    pub fn from_config(cfg: &PoolingConfigFile) -> Option<Self> {
        if cfg.pooling_mode_cls_token {
            Some(Pooling::Cls)
        } else if cfg.pooling_mode_mean_tokens {
            Some(Pooling::Mean)
        } else if cfg.pooling_mode_lasttoken {
            Some(Pooling::LastToken)
        } else if cfg.pooling_mode_max_tokens {
            Some(Pooling::Max)
        } else if cfg.pooling_mode_mean_sqrt_len_tokens {
            Some(Pooling::MeanSqrtLen)
        } else {
            None
        }
    }

    /// Pools one sequence: `hidden` is `[seq, dim]` row-major, `mask` marks tokens to use.
    pub fn pool(self, hidden: &[f32], mask: &[u32], dim: usize, out: &mut [f32]) {
        out.fill(0.0);
        let rows = hidden.chunks_exact(dim).zip(mask.iter().copied());
        match self {
            Pooling::Cls => out.copy_from_slice(&hidden[..dim]),
            Pooling::LastToken => {
                let last = mask.iter().rposition(|&m| m != 0).unwrap_or(0);
                out.copy_from_slice(&hidden[last * dim..(last + 1) * dim]);
            }
            Pooling::Max => {
                out.fill(f32::NEG_INFINITY);
                for (row, m) in rows {
                    if m != 0 {
                        out.iter_mut().zip(row).for_each(|(o, &x)| *o = o.max(x));
                    }
                }
            }
            Pooling::Mean | Pooling::MeanSqrtLen => {
                let mut n = 0.0f32;
                for (row, m) in rows {
                    if m != 0 {
                        n += 1.0;
                        out.iter_mut().zip(row).for_each(|(o, &x)| *o += x);
                    }
                }
                // sentence-transformers clamps the token count at 1e-9.
                let div = if self == Pooling::Mean {
                    n.max(1e-9)
                } else {
                    n.max(1e-9).sqrt()
                };
                out.iter_mut().for_each(|o| *o /= div);
            }
        }
    }
}

/// How `dimensions` (Matryoshka) cuts a vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Matryoshka {
    /// Keep the first components (sentence-transformers' `truncate_dim`).
    Slice,
    /// Layer-normalize the whole pooled vector (no scale or shift, eps 1e-5), then keep the
    /// first components: the recipe of nomic-embed-text-v1.5's model card
    /// (`F.layer_norm(embeddings, (dim,))`, then `[:, :matryoshka_dim]`, then normalize).
    LayerNormThenSlice,
}

/// Cuts raw pooled vectors (`[rows × dim]`) to their first `dimensions` components
/// (Matryoshka, by `rule`) and L2-normalizes them when asked, as sentence-transformers does
/// (truncate, then normalize). Returns the output width and the vectors.
pub fn finish(
    raw: &[f32],
    dim: usize,
    dimensions: Option<usize>,
    normalize: bool,
    rule: Matryoshka,
) -> (usize, Vec<f32>) {
    let out_dim = dimensions.unwrap_or(dim).min(dim);
    let mut data = Vec::with_capacity(raw.len() / dim.max(1) * out_dim);
    let mut row_buf = Vec::new();
    for row in raw.chunks_exact(dim.max(1)) {
        let start = data.len();
        let row = match (dimensions, rule) {
            (Some(_), Matryoshka::LayerNormThenSlice) => {
                row_buf.clear();
                row_buf.extend_from_slice(row);
                let (ones, zeros) = (vec![1.0; dim], vec![0.0; dim]);
                crate::kernels::elementwise::add_layer_norm_row(
                    &mut row_buf,
                    &[],
                    &ones,
                    &zeros,
                    1e-5,
                );
                &row_buf[..]
            }
            _ => row,
        };
        data.extend_from_slice(&row[..out_dim]);
        if normalize {
            l2_normalize(&mut data[start..]);
        }
    }
    (out_dim, data)
}

/// Scales `v` to unit L2 norm (`torch.nn.functional.normalize`, eps 1e-12).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_ignores_padding() {
        let hidden = [1.0, 2.0, 3.0, 4.0, 100.0, 100.0];
        let mut out = [0.0; 2];
        Pooling::Mean.pool(&hidden, &[1, 1, 0], 2, &mut out);
        assert!((out[0] - 2.0).abs() < 1e-6 && (out[1] - 3.0).abs() < 1e-6);
    }

    #[test]
    fn last_token_skips_right_padding() {
        let hidden = [1.0, 2.0, 3.0, 4.0, 100.0, 100.0];
        let mut out = [0.0; 2];
        Pooling::LastToken.pool(&hidden, &[1, 1, 0], 2, &mut out);
        assert_eq!(out, [3.0, 4.0]);
    }

    #[test]
    fn layer_norm_rule_normalizes_before_the_cut() {
        let raw = [1.0f32, 2.0, 3.0, 10.0];
        let (d, sliced) = finish(&raw, 4, Some(2), false, Matryoshka::Slice);
        assert_eq!((d, sliced), (2, vec![1.0, 2.0]));
        let (_, ln) = finish(&raw, 4, Some(2), false, Matryoshka::LayerNormThenSlice);
        let mean = 4.0f32;
        let sd = ((9.0 + 4.0 + 1.0 + 36.0) / 4.0f32 + 1e-5).sqrt();
        assert!(
            (ln[0] - (1.0 - mean) / sd).abs() < 1e-5 && (ln[1] - (2.0 - mean) / sd).abs() < 1e-5
        );
        // No cut asked: the vector is left alone, whatever the rule.
        let (_, full) = finish(&raw, 4, None, false, Matryoshka::LayerNormThenSlice);
        assert_eq!(full, raw.to_vec());
    }

    #[test]
    fn normalize_gives_unit_norm() {
        let mut v = [3.0, 4.0];
        l2_normalize(&mut v);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
    }
}
