//! Unpadded execution: a padded batch's real tokens back to back, so the linear layers, norms
//! and activations never compute a padding row, and the tiled attention kernel reads each
//! sequence as a row range (`kernels::flash::Rows`). Padding on either side, or none, gives the
//! same rows; every sequence's positions count from its first real token.

use super::Batch;
use crate::kernels::flash::Rows;

/// The real tokens of a [`Batch`], sequence after sequence.
#[derive(Debug, Clone)]
pub(crate) struct Unpadded {
    /// Token ids, `[tokens]`.
    pub ids: Vec<u32>,
    /// Token type ids, `[tokens]`.
    pub type_ids: Vec<u32>,
    /// Each sequence's rows in the unpadded buffers, in batch order.
    pub seqs: Vec<Rows>,
    /// Each sequence's first row in the padded batch (`b * seq + first real position`).
    padded_start: Vec<usize>,
    /// The batch's padded shape.
    batch: usize,
    seq: usize,
}

impl Unpadded {
    /// The tokens of `batch` whose mask is set (padding on the left or the right; a zero inside
    /// a sequence drops that token too).
    pub fn new(batch: &Batch) -> Self {
        let n: usize = batch.mask.iter().filter(|&&m| m != 0).count();
        let mut ids = Vec::with_capacity(n);
        let mut type_ids = Vec::with_capacity(n);
        let mut seqs = Vec::with_capacity(batch.batch);
        let mut padded_start = Vec::with_capacity(batch.batch);
        for b in 0..batch.batch {
            let row = b * batch.seq..(b + 1) * batch.seq;
            let mask = &batch.mask[row.clone()];
            let first = mask.iter().position(|&m| m != 0).unwrap_or(0);
            let start = ids.len();
            for i in row.filter(|&i| batch.mask[i] != 0) {
                ids.push(batch.ids[i]);
                type_ids.push(batch.type_ids[i]);
            }
            seqs.push(Rows {
                start,
                len: ids.len() - start,
            });
            padded_start.push(b * batch.seq + first);
        }
        Self {
            ids,
            type_ids,
            seqs,
            padded_start,
            batch: batch.batch,
            seq: batch.seq,
        }
    }

    /// Real tokens in the batch.
    pub fn tokens(&self) -> usize {
        self.ids.len()
    }

    /// The longest sequence.
    pub fn max_len(&self) -> usize {
        self.seqs.iter().map(|s| s.len).max().unwrap_or(0)
    }

    /// `x` (`[tokens, dim]`) back in the padded layout, `[batch * seq, dim]`, zero at padding.
    /// A sequence with a zero inside its mask keeps its tokens in order from its first one.
    pub fn scatter(&self, x: &[f32], dim: usize) -> Vec<f32> {
        let mut out = vec![0f32; self.batch * self.seq * dim];
        for (s, &at) in self.seqs.iter().zip(&self.padded_start) {
            out[at * dim..(at + s.len) * dim]
                .copy_from_slice(&x[s.start * dim..(s.start + s.len) * dim]);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_on_either_side_gives_the_same_rows() {
        // Two sequences of 3 and 1 tokens, padded to 4 on the right, then on the left.
        let right = Batch {
            ids: vec![5, 6, 7, 0, 9, 0, 0, 0],
            type_ids: vec![0; 8],
            mask: vec![1, 1, 1, 0, 1, 0, 0, 0],
            batch: 2,
            seq: 4,
        };
        let left = Batch {
            ids: vec![0, 5, 6, 7, 0, 0, 0, 9],
            type_ids: vec![0; 8],
            mask: vec![0, 1, 1, 1, 0, 0, 0, 1],
            batch: 2,
            seq: 4,
        };
        let (r, l) = (Unpadded::new(&right), Unpadded::new(&left));
        assert_eq!(r.ids, vec![5, 6, 7, 9]);
        assert_eq!(l.ids, r.ids);
        assert_eq!(r.seqs, l.seqs);
        assert_eq!(r.seqs[1], Rows { start: 3, len: 1 });
        assert_eq!(r.max_len(), 3);
        // Back to each padded layout: rows land where the tokens were, padding is zero.
        let x: Vec<f32> = (1..=8).map(|v| v as f32).collect(); // 4 tokens x 2
        let back = r.scatter(&x, 2);
        assert_eq!(back[..8], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0, 0.0]);
        assert_eq!(back[8..10], [7.0, 8.0]);
        let back = l.scatter(&x, 2);
        assert_eq!(back[..2], [0.0, 0.0]);
        assert_eq!(back[2..8], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(back[14..16], [7.0, 8.0]);
    }
}
