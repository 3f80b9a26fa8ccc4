//! Multi-head attention straight from the fused `[tokens, 3h]` QKV projection into the
//! `[tokens, h]` context: no split, transpose or contiguous copies, keys past a row's last real
//! token are never touched, and each (sequence, head) pair is one task on the thread pool.

use rayon::prelude::*;

use super::elementwise::softmax;
use super::has_avx2;

/// Shape of one attention call.
#[derive(Debug, Clone, Copy)]
pub struct AttnShape {
    /// Sequences.
    pub batch: usize,
    /// Padded length.
    pub seq: usize,
    /// Heads.
    pub heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

/// `ctx = softmax(q k^T / sqrt(d) + bias + mask) v` per sequence and head.
///
/// `qkv` is `[batch * seq, 3 * heads * head_dim]` (Q, K, V side by side); `mask` is `[batch, seq]`
/// (0 = padding); `bias` is empty or `[heads, seq, seq]`, shared by every sequence (MPNet's
/// relative positions). `ctx` is `[batch * seq, heads * head_dim]`.
pub fn attention(qkv: &[f32], mask: &[u32], bias: &[f32], s: AttnShape, ctx: &mut [f32]) {
    let AttnShape {
        batch,
        seq,
        heads,
        head_dim: d,
    } = s;
    let h = heads * d;
    assert_eq!(qkv.len(), batch * seq * 3 * h, "qkv is not [tokens, 3h]");
    assert_eq!(ctx.len(), batch * seq * h, "ctx is not [tokens, h]");
    assert_eq!(mask.len(), batch * seq, "mask is not [batch, seq]");
    assert!(bias.is_empty() || bias.len() == heads * seq * seq);
    let scale = 1.0 / (d as f32).sqrt();
    let out = SyncPtr(ctx.as_mut_ptr());
    // One task per (sequence, head), so a single query still uses every thread.
    (0..batch * heads).into_par_iter().for_each(|task| {
        let (b, head) = (task / heads, task % heads);
        let m = &mask[b * seq..(b + 1) * seq];
        // Keys after the last real token are padding; earlier zeros (unusual) get -inf below.
        let len = m.iter().rposition(|&v| v != 0).map_or(0, |p| p + 1);
        let mut kt = vec![0f32; d * len];
        let mut scores = vec![0f32; len];
        let mut acc = vec![0f32; d];
        let base = b * seq * 3 * h;
        // K^T for this head, [d, len], so each score row is a run of contiguous axpys.
        for j in 0..len {
            let k = &qkv[base + j * 3 * h + h + head * d..][..d];
            for (c, &kv) in k.iter().enumerate() {
                kt[c * len + j] = kv;
            }
        }
        for i in 0..seq {
            acc.fill(0.0);
            if len > 0 {
                let q = &qkv[base + i * 3 * h + head * d..][..d];
                match bias.is_empty() {
                    true => scores.fill(0.0),
                    false => scores.copy_from_slice(&bias[(head * seq + i) * seq..][..len]),
                }
                for (c, &qv) in q.iter().enumerate() {
                    axpy(qv * scale, &kt[c * len..(c + 1) * len], &mut scores);
                }
                for (sc, &mv) in scores.iter_mut().zip(m) {
                    if mv == 0 {
                        *sc = f32::NEG_INFINITY;
                    }
                }
                softmax(&mut scores);
                for (j, &p) in scores.iter().enumerate() {
                    axpy(
                        p,
                        &qkv[base + j * 3 * h + 2 * h + head * d..][..d],
                        &mut acc,
                    );
                }
            }
            // SAFETY: row `b * seq + i`, columns `head * d .. head * d + d` lie inside `ctx`
            // (asserted `[batch * seq, h]` above) and belong to this task alone: tasks differ in
            // `b` (rows) or `head` (columns). `ctx` outlives the parallel loop.
            unsafe {
                let dst = out.get().add((b * seq + i) * h + head * d);
                std::ptr::copy_nonoverlapping(acc.as_ptr(), dst, d);
            }
        }
    });
}

/// A pointer shared by tasks that write disjoint parts of one buffer.
#[derive(Clone, Copy)]
pub(crate) struct SyncPtr(pub(crate) *mut f32);

impl SyncPtr {
    /// The pointer (a method, so closures capture the `Sync` wrapper, not the raw field).
    #[inline]
    pub(crate) fn get(self) -> *mut f32 {
        self.0
    }
}
// SAFETY: used only where each task writes a region no other task touches (see call sites).
unsafe impl Send for SyncPtr {}
// SAFETY: as above.
unsafe impl Sync for SyncPtr {}

/// `y += a * x`.
#[inline]
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: AVX2 and FMA were detected on this CPU.
        unsafe { axpy_avx2(a, x, y) };
        return;
    }
    axpy_portable(a, x, y);
}

/// Portable `y += a * x`.
#[inline]
pub fn axpy_portable(a: f32, x: &[f32], y: &mut [f32]) {
    for (yv, &xv) in y.iter_mut().zip(x) {
        *yv += a * xv;
    }
}

/// The portable loop compiled with AVX2 + FMA enabled: LLVM vectorizes it with `vfmadd`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn axpy_avx2(a: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &mut y[..n]);
    for i in 0..n {
        y[i] = a.mul_add(x[i], y[i]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference: the textbook formula with a full mask bias, one (sequence, head) at a time.
    fn naive(qkv: &[f32], mask: &[u32], bias: &[f32], s: AttnShape) -> Vec<f32> {
        let (h, d, seq) = (s.heads * s.head_dim, s.head_dim, s.seq);
        let mut out = vec![0f32; s.batch * seq * h];
        for b in 0..s.batch {
            for hd in 0..s.heads {
                for i in 0..seq {
                    let q = |c: usize| qkv[(b * seq + i) * 3 * h + hd * d + c];
                    let mut sc: Vec<f32> = (0..seq)
                        .map(|j| {
                            let k = |c: usize| qkv[(b * seq + j) * 3 * h + h + hd * d + c];
                            let mut v: f32 =
                                (0..d).map(|c| q(c) * k(c)).sum::<f32>() / (d as f32).sqrt();
                            if !bias.is_empty() {
                                v += bias[(hd * seq + i) * seq + j];
                            }
                            if mask[b * seq + j] == 0 {
                                v = -1e30;
                            }
                            v
                        })
                        .collect();
                    let mx = sc.iter().fold(f32::MIN, |m, &v| m.max(v));
                    sc.iter_mut().for_each(|v| *v = (*v - mx).exp());
                    let sum: f32 = sc.iter().sum();
                    for c in 0..d {
                        out[(b * seq + i) * h + hd * d + c] = (0..seq)
                            .map(|j| sc[j] / sum * qkv[(b * seq + j) * 3 * h + 2 * h + hd * d + c])
                            .sum();
                    }
                }
            }
        }
        out
    }

    #[test]
    fn matches_naive_attention_with_padding_and_bias() {
        let s = AttnShape {
            batch: 3,
            seq: 9,
            heads: 2,
            head_dim: 12,
        };
        let h = s.heads * s.head_dim;
        let qkv: Vec<f32> = (0..s.batch * s.seq * 3 * h)
            .map(|i| ((i * 7919) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let mut mask = vec![1u32; s.batch * s.seq];
        mask[s.seq + 5..2 * s.seq].fill(0); // row 1: 5 tokens
        mask[2 * s.seq + 2] = 0; // row 2: a hole
        let bias: Vec<f32> = (0..s.heads * s.seq * s.seq)
            .map(|i| (i % 5) as f32 * 0.1)
            .collect();
        for bias in [&[][..], &bias[..]] {
            let want = naive(&qkv, &mask, bias, s);
            let mut got = vec![0f32; want.len()];
            attention(&qkv, &mask, bias, s, &mut got);
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!((a - b).abs() < 1e-5, "{i}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn axpy_simd_matches_portable() {
        let x: Vec<f32> = (0..37).map(|i| i as f32 * 0.3).collect();
        let mut a = vec![1.0; 37];
        let mut b = a.clone();
        axpy_portable(0.7, &x, &mut a);
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: AVX2 and FMA detected above.
            unsafe { axpy_avx2(0.7, &x, &mut b) };
            for (p, q) in a.iter().zip(&b) {
                assert!((p - q).abs() < 1e-5);
            }
        }
    }
}
