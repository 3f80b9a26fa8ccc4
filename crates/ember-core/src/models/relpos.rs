//! Bucketed relative-position attention bias, shared by MPNet and T5 (and any later model with
//! T5-style buckets): relative offsets fall into `num_buckets` buckets (exact for small offsets,
//! logarithmic up to `max_distance`), and each head adds a learned scalar per bucket to its
//! attention scores.

use super::host;

/// T5's bidirectional bucket of `relative_position = key - query`
/// (`T5Attention._relative_position_bucket`, `MPNetEncoder.relative_position_bucket`), computed
/// in f32 as PyTorch does so the bucket edges match.
pub fn relative_position_bucket(
    relative_position: i64,
    num_buckets: usize,
    max_distance: usize,
) -> usize {
    let half = (num_buckets / 2) as i64;
    let n = -relative_position;
    let mut ret = if n < 0 { half } else { 0 };
    let n = n.abs();
    let max_exact = half / 2;
    if n < max_exact {
        ret += n;
    } else {
        let ratio = (n as f32 / max_exact as f32).ln()
            / ((max_distance as f64 / max_exact as f64).ln() as f32);
        let large = max_exact + (ratio * (half - max_exact) as f32) as i64;
        ret += large.min(half - 1);
    }
    ret as usize
}

/// A learned bias per (bucket, head).
#[derive(Debug, Clone)]
pub struct RelativeBias {
    /// `[num_buckets, heads]` as in the checkpoints (`relative_attention_bias.weight`).
    table: candle_core::Tensor,
    heads: usize,
    num_buckets: usize,
    max_distance: usize,
}

impl RelativeBias {
    /// Wraps a `[num_buckets, heads]` table.
    pub fn new(table: candle_core::Tensor, max_distance: usize) -> candle_core::Result<Self> {
        let (num_buckets, heads) = table.dims2()?;
        Ok(Self {
            table,
            heads,
            num_buckets,
            max_distance,
        })
    }

    /// The bias of every head for every (query, key) of a sequence of `seq` positions,
    /// `[heads, seq, seq]` on the host (what `kernels::attention` takes).
    pub fn for_length(&self, seq: usize) -> candle_core::Result<Vec<f32>> {
        let heads = self.heads;
        let mut out = vec![0f32; heads * seq * seq];
        // One bucket per offset: a row of the bias is a window into this line.
        let offsets: Vec<usize> = (0..2 * seq.max(1) - 1)
            .map(|i| {
                let rel = i as i64 - (seq as i64 - 1);
                relative_position_bucket(rel, self.num_buckets, self.max_distance)
            })
            .collect();
        // A cheap clone on the CPU; one small copy from other devices.
        let table = self.table.to_device(&candle_core::Device::Cpu)?;
        host::with_host(&table, |table| {
            for (h, plane) in out.chunks_exact_mut(seq * seq).enumerate() {
                let line: Vec<f32> = offsets.iter().map(|&b| table[b * heads + h]).collect();
                for (q, row) in plane.chunks_exact_mut(seq).enumerate() {
                    // key k sits at offset k - q, index k - q + seq - 1 of the line.
                    row.copy_from_slice(&line[seq - 1 - q..2 * seq - 1 - q]);
                }
            }
        })?;
        Ok(out)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.table.elem_count() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bias_rows_follow_the_buckets() {
        let (buckets, heads, seq) = (8, 3, 11);
        let vals: Vec<f32> = (0..buckets * heads).map(|i| i as f32).collect();
        let t = candle_core::Tensor::from_vec(vals, (buckets, heads), &candle_core::Device::Cpu)
            .unwrap();
        let rb = RelativeBias::new(t, 20).unwrap();
        let bias = rb.for_length(seq).unwrap();
        for h in 0..heads {
            for q in 0..seq {
                for k in 0..seq {
                    let b = relative_position_bucket(k as i64 - q as i64, buckets, 20);
                    assert_eq!(bias[(h * seq + q) * seq + k], (b * heads + h) as f32);
                }
            }
        }
    }
}
