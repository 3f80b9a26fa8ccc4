//! Multi-head attention straight from the fused `[tokens, 3h]` QKV projection into the
//! `[tokens, h]` context: no split, transpose or contiguous copies, keys past a row's last real
//! token are never touched, and each (sequence, head) pair is one task on the thread pool.

use std::cell::RefCell;

use rayon::prelude::*;

use super::elementwise::{softmax, softmax_unnormalized};
use super::Simd;

/// Multiply-adds (`batch · heads · seq² · head_dim`) below which attention stays on one thread.
const SERIAL_WORK: usize = 1 << 19;

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
    /// What the scores `q k^T` are multiplied by before the bias is added: `1 / sqrt(head_dim)`
    /// for most models ([`AttnShape::scale_for`]), 1 for T5.
    pub scale: f32,
}

impl AttnShape {
    /// The usual score scale, `1 / sqrt(head_dim)`.
    pub fn scale_for(head_dim: usize) -> f32 {
        1.0 / (head_dim as f32).sqrt()
    }
}

/// `ctx = softmax(scale q k^T + bias + mask) v` per sequence and head.
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
        scale,
    } = s;
    let h = heads * d;
    assert_eq!(qkv.len(), batch * seq * 3 * h, "qkv is not [tokens, 3h]");
    assert_eq!(ctx.len(), batch * seq * h, "ctx is not [tokens, h]");
    assert_eq!(mask.len(), batch * seq, "mask is not [batch, seq]");
    assert!(bias.is_empty() || bias.len() == heads * seq * seq);
    let out = SyncPtr(ctx.as_mut_ptr());
    let path = Simd::detect();
    // One task per (sequence, head), so a single query still uses every thread.
    let task = |task: usize| {
        with_buffers(|bufs| {
            let (b, head) = (task / heads, task % heads);
            bufs.rows.resize(seq * d, 0.0);
            let rows = &mut bufs.rows[..seq * d];
            let job = Head {
                qkv: &qkv[b * seq * 3 * h..(b + 1) * seq * 3 * h],
                mask: &mask[b * seq..(b + 1) * seq],
                bias: if bias.is_empty() {
                    &[]
                } else {
                    &bias[head * seq * seq..(head + 1) * seq * seq]
                },
                head,
                h,
                d,
                scale,
            };
            run_head(path, &job, rows, (&mut bufs.kt, &mut bufs.probs));
            for (i, r) in rows.chunks_exact(d).enumerate() {
                // SAFETY: row `b * seq + i`, columns `head * d .. head * d + d` lie inside `ctx`
                // (asserted `[batch * seq, h]` above) and belong to this task alone: tasks differ in
                // `b` (rows) or `head` (columns). `ctx` outlives the parallel loop.
                unsafe {
                    let dst = out.get().add((b * seq + i) * h + head * d);
                    std::ptr::copy_nonoverlapping(r.as_ptr(), dst, d);
                }
            }
        })
    };
    // A short query's attention (15 tokens: ~0.1 M multiply-adds) is done before a woken worker
    // would start: below this much work it runs on the calling thread.
    if batch * heads * seq * seq * d < SERIAL_WORK {
        (0..batch * heads).for_each(task);
    } else {
        (0..batch * heads).into_par_iter().for_each(task);
    }
}

/// Buffers of one thread's attention tasks, reused across heads, layers and calls.
#[derive(Default)]
struct Buffers {
    /// One head's context rows, `[seq, d]`.
    rows: Vec<f32>,
    /// K^T (`Keys::kt`).
    kt: Vec<f32>,
    /// Scores and probabilities (`Keys::probs`).
    probs: Vec<f32>,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::new(Buffers::default());
}

/// Runs `f` with this thread's buffers (`threads::with_local`).
fn with_buffers<R>(f: impl FnOnce(&mut Buffers) -> R) -> R {
    super::threads::with_local(&BUFFERS, f)
}

/// One head on the kernels of `path` (which this CPU must run), with the SIMD heads' K^T and
/// score buffers.
fn run_head(path: Simd, job: &Head<'_>, out: &mut [f32], bufs: (&mut Vec<f32>, &mut Vec<f32>)) {
    // The SIMD heads work on whole 16-column panels of the head width.
    if path == Simd::Portable || job.d % 16 != 0 {
        return head_attention(job, out);
    }
    let Some(keys) = job.keys(out, bufs) else {
        return;
    };
    match path {
        // SAFETY: AVX2, FMA and F16C were detected on this CPU.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { head_avx2(job, keys, out) },
        // SAFETY: AVX-512 F (with AVX2, FMA, F16C) was detected on this CPU.
        #[cfg(all(target_arch = "x86_64", ember_avx512))]
        Simd::Avx512 => unsafe { head_avx512(job, keys, out) },
        _ => head_attention(job, out),
    }
}

/// One (sequence, head) of attention.
struct Head<'a> {
    /// `[seq, 3h]` of this sequence.
    qkv: &'a [f32],
    /// `[seq]`.
    mask: &'a [u32],
    /// Empty or `[seq, seq]` for this head.
    bias: &'a [f32],
    head: usize,
    h: usize,
    d: usize,
    /// Score scale (`AttnShape::scale`).
    scale: f32,
}

/// Context rows `[seq, d]` for one head on AVX2: both products (`Q K^T` and `P V`) run on the
/// GEMM's register-blocked microkernel (4 rows × 16 columns at a time), reading Q and V in place
/// from the QKV rows and K from a transposed copy padded to 16 columns (`keys`, from
/// `Head::keys`). The head width must be a multiple of 16 (asserted).
///
/// # Safety
/// AVX2 and FMA must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn head_avx2(job: &Head<'_>, keys: Keys<'_>, out: &mut [f32]) {
    use super::sgemm::{avx2::block, MR, NR};
    let Head {
        qkv,
        bias,
        head,
        h,
        d,
        ..
    } = *job;
    // The products read whole 16-column panels of Q, K^T and V.
    assert_eq!(d % 16, 0, "head width {d} is not whole panels");
    let Keys {
        seq,
        len,
        lenp,
        scale,
        kt,
        holes,
        probs,
    } = keys;
    let mut acc = [[0f32; NR]; MR];
    const R: usize = 4;
    let mut i = 0;
    while i < len {
        let rows = R.min(len - i);
        for j0 in (0..lenp).step_by(NR) {
            // SAFETY: rows `i..i + rows` of Q (row stride 3h, `d` values from `head * d`) lie
            // in `qkv` ([seq, 3h]); `kt` is [d, lenp] and `j0 + 16 <= lenp`.
            unsafe {
                block(
                    qkv.as_ptr().add(i * 3 * h + head * d),
                    3 * h,
                    kt.as_ptr().add(j0),
                    lenp,
                    d,
                    rows,
                    &mut acc,
                )
            };
            for (r, a) in acc.iter().take(rows).enumerate() {
                let dst = &mut probs[(i + r) * lenp + j0..][..NR];
                dst.copy_from_slice(a);
            }
        }
        let rows_probs = &mut probs[i * lenp..(i + rows) * lenp];
        let b = bias_rows(bias, seq, i);
        let mut inv = [0f32; R];
        scores_to_probs(rows_probs, (lenp, len, seq), b, scale, &holes, &mut inv);
        // The context product reads `len` columns of each probability row (V has `len` rows).
        for c0 in (0..d).step_by(NR) {
            // SAFETY: rows `i..i + rows` of `probs` ([len, lenp]) and V rows `0..len` (row
            // stride 3h, columns `2h + head * d + c0 .. + 16`, inside the row as c0 + 16 <= d).
            unsafe {
                block(
                    probs.as_ptr().add(i * lenp),
                    lenp,
                    qkv.as_ptr().add(2 * h + head * d + c0),
                    3 * h,
                    len,
                    rows,
                    &mut acc,
                )
            };
            for (r, a) in acc.iter().take(rows).enumerate() {
                out[(i + r) * d + c0..][..NR].copy_from_slice(a);
            }
        }
        normalize_rows(&mut out[i * d..(i + rows) * d], d, &inv);
        i += rows;
    }
}

/// Context rows `[seq, d]` for one head on AVX-512: as `head_avx2`, on the 12-row × 32-column
/// kernel (two 16-column panels per call). The head width must be a multiple of 16 (asserted).
///
/// # Safety
/// `has_avx512()` must hold.
#[cfg(all(target_arch = "x86_64", ember_avx512))]
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn head_avx512(job: &Head<'_>, keys: Keys<'_>, out: &mut [f32]) {
    use super::sgemm::avx512::{block, Operands, Out, MR, NR};
    const PANEL: usize = NR / 2;
    let Head {
        qkv,
        bias,
        head,
        h,
        d,
        ..
    } = *job;
    // The products read whole 16-column panels of Q, K^T and V.
    assert_eq!(d % 16, 0, "head width {d} is not whole panels");
    let Keys {
        seq,
        len,
        lenp,
        scale,
        kt,
        holes,
        probs,
    } = keys;
    let mut i = 0;
    while i < len {
        let left = len - i;
        let rows = left.div_ceil(left.div_ceil(MR));
        let mut j0 = 0;
        while j0 < lenp {
            let panels = ((lenp - j0) / PANEL).min(2);
            let at = Operands {
                lda: 3 * h,
                ldb: lenp,
                next: PANEL,
                k: d,
            };
            let scores = Out {
                ptr: probs[i * lenp + j0..].as_mut_ptr(),
                ld: lenp,
                bias: std::ptr::null(),
            };
            // SAFETY: rows `i..i + rows` of Q (row stride 3h, `d` values from `head * d`) lie
            // in `qkv` ([seq, 3h]); `kt` is [d, lenp] and `j0 + 16 * panels <= lenp`; score
            // rows `i..i + rows < len` of `probs` ([len, lenp]), columns `j0..` as `kt`'s.
            unsafe {
                block(
                    qkv.as_ptr().add(i * 3 * h + head * d),
                    kt.as_ptr().add(j0),
                    at,
                    rows,
                    panels,
                    scores,
                )
            };
            j0 += panels * PANEL;
        }
        let rows_probs = &mut probs[i * lenp..(i + rows) * lenp];
        let b = bias_rows(bias, seq, i);
        let mut inv = [0f32; MR];
        scores_to_probs(rows_probs, (lenp, len, seq), b, scale, &holes, &mut inv);
        let mut c0 = 0;
        while c0 < d {
            let panels = ((d - c0) / PANEL).min(2);
            let at = Operands {
                lda: lenp,
                ldb: 3 * h,
                next: PANEL,
                k: len,
            };
            let context = Out {
                ptr: out[i * d + c0..].as_mut_ptr(),
                ld: d,
                bias: std::ptr::null(),
            };
            // SAFETY: rows `i..i + rows` of `probs` ([len, lenp], `len` columns read) and V
            // rows `0..len` (row stride 3h, columns `2h + head * d + c0 .. + 16 * panels`,
            // inside the row as `c0 + 16 * panels <= d`); context rows `i..i + rows < len` of
            // `out` ([seq, d]), columns `c0..c0 + 16 * panels <= d`.
            unsafe {
                block(
                    probs.as_ptr().add(i * lenp),
                    qkv.as_ptr().add(2 * h + head * d + c0),
                    at,
                    rows,
                    panels,
                    context,
                )
            };
            c0 += panels * PANEL;
        }
        normalize_rows(&mut out[i * d..(i + rows) * d], d, &inv);
        i += rows;
    }
}

/// What both SIMD heads set up before their products.
struct Keys<'a> {
    /// Padded length (the bias rows' stride).
    seq: usize,
    /// Keys up to the last real token.
    len: usize,
    /// `len` rounded up to whole 16-column panels.
    lenp: usize,
    /// The score scale (`AttnShape::scale`).
    scale: f32,
    /// K^T for this head, `[d, lenp]`, zero past `len`.
    kt: &'a [f32],
    /// Padding before the last real token (unusual): masked key by key.
    holes: Vec<usize>,
    /// Score / probability rows, `[len, lenp]` (every column written before it is read).
    probs: &'a mut [f32],
}

impl Head<'_> {
    /// Zeroes `out`'s rows past the last real token (the heads write the others) and sets up
    /// the keys in `bufs` (K^T, scores); `None` when the sequence has no real token.
    fn keys<'b>(
        &self,
        out: &mut [f32],
        (kt, probs): (&'b mut Vec<f32>, &'b mut Vec<f32>),
    ) -> Option<Keys<'b>> {
        let Head {
            qkv,
            mask,
            head,
            h,
            d,
            scale,
            ..
        } = *self;
        let len = mask.iter().rposition(|&v| v != 0).map_or(0, |p| p + 1);
        out[len * d..].fill(0.0);
        if len == 0 {
            return None;
        }
        let lenp = len.next_multiple_of(16);
        kt.resize(d * lenp, 0.0);
        let kt = &mut kt[..d * lenp];
        for j in 0..len {
            let k = &qkv[j * 3 * h + h + head * d..][..d];
            for (c, &kv) in k.iter().enumerate() {
                kt[c * lenp + j] = kv;
            }
        }
        // Columns past `len` only make score columns nothing reads; zero them anyway, so stale
        // values (or NaN, or slow subnormals) never enter the products.
        for row in kt.chunks_exact_mut(lenp) {
            row[len..].fill(0.0);
        }
        probs.resize(len * lenp, 0.0);
        Some(Keys {
            seq: mask.len(),
            len,
            lenp,
            scale,
            kt,
            holes: (0..len).filter(|&j| mask[j] == 0).collect(),
            probs: &mut probs[..len * lenp],
        })
    }
}

/// Bias rows `i..` of one head (`[seq, seq]`), or empty.
fn bias_rows(bias: &[f32], seq: usize, i: usize) -> &[f32] {
    if bias.is_empty() {
        bias
    } else {
        &bias[i * seq..]
    }
}

/// Turns raw score rows (`probs`, rows of `lenp`, the first `len` of each used) into
/// unnormalized probabilities: scale, add the bias row (`bias`, rows of `seq`, if any), mask the
/// holes, exponentiate; `inv[r]` gets one over row `r`'s sum, for the context row.
fn scores_to_probs(
    probs: &mut [f32],
    (lenp, len, seq): (usize, usize, usize),
    bias: &[f32],
    scale: f32,
    holes: &[usize],
    inv: &mut [f32],
) {
    for ((r, row), inv) in probs.chunks_exact_mut(lenp).enumerate().zip(inv) {
        let row = &mut row[..len];
        let scale = if bias.is_empty() {
            scale
        } else {
            let b = &bias[r * seq..][..len];
            row.iter_mut()
                .zip(b)
                .for_each(|(v, &b)| *v = *v * scale + b);
            1.0
        };
        for &j in holes {
            row[j] = f32::NEG_INFINITY;
        }
        *inv = 1.0 / softmax_unnormalized(row, scale);
    }
}

/// Divides context rows (`rows` of `d`) by their probability sums (`inv`: one over each).
#[inline]
fn normalize_rows(rows: &mut [f32], d: usize, inv: &[f32]) {
    for (row, &inv) in rows.chunks_exact_mut(d).zip(inv) {
        row.iter_mut().for_each(|v| *v *= inv);
    }
}

/// Context rows `[seq, d]` for one head, portably; rows past the last real token (padding, never
/// pooled) are left at zero instead of computed.
fn head_attention(job: &Head<'_>, out: &mut [f32]) {
    let Head {
        qkv,
        mask,
        bias,
        head,
        h,
        d,
        scale,
    } = *job;
    let seq = mask.len();
    // Keys after the last real token are padding; earlier zeros (unusual) get -inf below.
    let len = mask.iter().rposition(|&v| v != 0).map_or(0, |p| p + 1);
    out.fill(0.0);
    if len == 0 {
        return;
    }
    // K^T for this head, [d, len], so each score row is a run of contiguous multiply-adds.
    let mut kt = vec![0f32; d * len];
    for j in 0..len {
        let k = &qkv[j * 3 * h + h + head * d..][..d];
        for (c, &kv) in k.iter().enumerate() {
            kt[c * len + j] = kv;
        }
    }
    let mut scores = vec![0f32; len];
    for i in 0..len {
        let q = &qkv[i * 3 * h + head * d..][..d];
        match bias.is_empty() {
            true => scores.fill(0.0),
            false => scores.copy_from_slice(&bias[i * seq..][..len]),
        }
        for (c, &qv) in q.iter().enumerate() {
            let a = qv * scale;
            for (sc, &k) in scores.iter_mut().zip(&kt[c * len..(c + 1) * len]) {
                *sc += a * k;
            }
        }
        for (sc, &mv) in scores.iter_mut().zip(mask) {
            if mv == 0 {
                *sc = f32::NEG_INFINITY;
            }
        }
        softmax(&mut scores);
        let acc = &mut out[i * d..(i + 1) * d];
        for (j, &p) in scores.iter().enumerate() {
            let v = &qkv[j * 3 * h + 2 * h + head * d..][..d];
            for (o, &vv) in acc.iter_mut().zip(v) {
                *o += p * vv;
            }
        }
    }
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
                            let mut v: f32 = (0..d).map(|c| q(c) * k(c)).sum::<f32>() * s.scale;
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

    /// Head widths that take the portable path (12) and the microkernel path (32), with rows
    /// shorter and longer than one 16-column tile, on one thread and on the pool.
    #[test]
    fn matches_naive_attention_with_padding_and_bias() {
        // (80, 32) is past `SERIAL_WORK`: the heads run on the pool.
        for (seq, head_dim) in [(9, 12), (9, 32), (37, 32), (80, 32)] {
            for scale in [AttnShape::scale_for(head_dim), 1.0] {
                check_against_naive(AttnShape {
                    batch: 3,
                    seq,
                    heads: 2,
                    head_dim,
                    scale,
                });
            }
        }
    }

    fn check_against_naive(s: AttnShape) {
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
                let (row, pos) = (i / h / s.seq, i / h % s.seq);
                if row == 1 && pos >= 5 {
                    // Padding queries are never pooled: left at zero.
                    assert_eq!(*a, 0.0);
                    continue;
                }
                assert!((a - b).abs() < 1e-5, "{i}: {a} vs {b}");
            }
        }
    }

    /// Every SIMD path against the portable one on the same heads: head widths of one, two,
    /// three and four 16-column panels, rows of one partial and several whole tiles, padding.
    #[test]
    fn simd_paths_match_portable() {
        for path in Simd::available() {
            for d in [16, 32, 48, 64] {
                for (seq, len) in [(13, 10), (40, 33), (40, 40)] {
                    simd_matches_portable(path, d, seq, len);
                }
            }
        }
    }

    fn simd_matches_portable(path: Simd, d: usize, seq: usize, len: usize) {
        let h = 2 * d;
        let qkv: Vec<f32> = (0..seq * 3 * h)
            .map(|i| ((i * 7919) % 97) as f32 / 40.0 - 1.2)
            .collect();
        let mut mask = vec![1u32; seq];
        mask[len..].fill(0);
        let bias: Vec<f32> = (0..seq * seq).map(|i| (i % 3) as f32 * 0.2).collect();
        for bias in [&[][..], &bias[..]] {
            let job = Head {
                qkv: &qkv,
                mask: &mask,
                bias,
                head: 1,
                h,
                d,
                scale: AttnShape::scale_for(d),
            };
            let mut a = vec![0f32; seq * d];
            let mut b = vec![f32::NAN; seq * d];
            head_attention(&job, &mut a);
            // Reused buffers hold stale values (NaN here, larger than needed): none may leak.
            let (mut kt, mut probs) = (vec![f32::NAN; 8192], vec![f32::NAN; 8192]);
            run_head(path, &job, &mut b, (&mut kt, &mut probs));
            for (p, q) in a.iter().zip(&b) {
                assert!((p - q).abs() < 1e-5, "{path:?} d {d} len {len}: {p} vs {q}");
            }
        }
    }
}
