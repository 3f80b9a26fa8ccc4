//! Rotary position embeddings (RoPE), applied in place to the Q and K heads of fused QKV rows, with
//! dynamic NTK scaling for sequences past the trained length.
//!
//! Both rotation layouts are here: GPT-NeoX's halves (`rotate_half`, what NomicBERT, Qwen3, Gemma
//! and ModernBERT use) and GPT-J's interleaved pairs. Q and K heads may differ in number
//! (grouped-query attention) and the rotation may cover only the first `rotary_dim` values of a
//! head (partial rotary).
//!
//! The tables follow the reference implementations' float32 steps (`inv_freq = 1 / base^(2i/d)`,
//! the angle `t * inv_freq` in f32) so positions in the thousands rotate by the same angles;
//! only `cos`/`sin` themselves are evaluated in f64 and rounded.
//!
//! Dynamic NTK (`NomicBertDynamicNTKRotaryEmbedding`, transformers' `dynamic` rope type): a
//! sequence of `len > trained` tokens uses the base
//! `base * (factor * len / trained - (factor - 1))^(d / (d - 2))`. The references take `len` from
//! the padded batch, so a short text's vector would depend on its batch mates; here it is each
//! sequence's own length, which is what the references give for the text encoded alone.

/// Dynamic NTK scaling past the trained length.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NtkScaling {
    /// `rotary_scaling_factor` / `rope_parameters.factor`.
    pub factor: f64,
    /// Positions the model was trained on (`max_trained_positions`).
    pub trained: usize,
}

/// A model's rotary embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Rope {
    /// `rotary_emb_base` / `rope_theta`.
    pub base: f64,
    /// Values of each head that rotate (even, at most the head width).
    pub rotary_dim: usize,
    /// GPT-J pairs `(2i, 2i + 1)` instead of GPT-NeoX halves `(i, i + rotary_dim / 2)`.
    pub interleaved: bool,
    /// Dynamic NTK scaling, when the config sets a factor.
    pub scaling: Option<NtkScaling>,
}

impl Rope {
    /// The base a sequence of `len` tokens rotates with.
    pub fn base_for(&self, len: usize) -> f64 {
        match self.scaling {
            Some(s) if len > s.trained && self.rotary_dim > 2 => {
                let d = self.rotary_dim as f64;
                let stretch = s.factor * len as f64 / s.trained as f64 - (s.factor - 1.0);
                self.base * stretch.powf(d / (d - 2.0))
            }
            _ => self.base,
        }
    }

    /// `inv_freq[i] = 1 / base^(2i / rotary_dim)`, in f32 as the references compute it.
    pub fn inv_freq(&self, base: f64) -> Vec<f32> {
        let d = self.rotary_dim as f32;
        let b = base as f32;
        (0..self.rotary_dim / 2)
            .map(|i| 1.0 / b.powf((2 * i) as f32 / d))
            .collect()
    }

    /// The cos/sin table of positions `0..len` for `base`.
    pub fn table(&self, base: f64, len: usize) -> RopeTable {
        RopeTable::from_inv_freq(&self.inv_freq(base), len)
    }
}

impl RopeTable {
    /// The table of positions `0..len` for frequencies `inv` (one per rotated pair), the angle
    /// `t * f` in f32 as the references compute it.
    pub fn from_inv_freq(inv: &[f32], len: usize) -> RopeTable {
        let half = inv.len();
        let mut cos = Vec::with_capacity(len * half);
        let mut sin = Vec::with_capacity(len * half);
        for t in 0..len {
            for &f in inv {
                let angle = (t as f32 * f) as f64;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        RopeTable {
            half,
            len,
            cos,
            sin,
        }
    }
}

/// `cos` and `sin` of every (position, frequency), `[len, rotary_dim / 2]` each.
#[derive(Debug, Clone)]
pub struct RopeTable {
    half: usize,
    len: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl RopeTable {
    /// Positions covered.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the table covers no position.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `(cos, sin)` of position `t`, frequency `i`.
    pub fn at(&self, t: usize, i: usize) -> (f32, f32) {
        (self.cos[t * self.half + i], self.sin[t * self.half + i])
    }
}

/// Where the heads sit in one fused QKV row.
#[derive(Debug, Clone, Copy)]
pub struct QkLayout {
    /// Values per row (the row stride).
    pub width: usize,
    /// Query heads, from offset 0.
    pub q_heads: usize,
    /// Key heads, right after the queries.
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

/// Rotates the Q and K heads of rows `0..len` of one sequence (`rows` is `[seq, width]`), row `t`
/// by position `t`.
pub fn apply(rows: &mut [f32], layout: QkLayout, len: usize, table: &RopeTable, interleaved: bool) {
    let QkLayout {
        width,
        q_heads,
        kv_heads,
        head_dim,
    } = layout;
    assert!(table.half * 2 <= head_dim, "rotary width past the head");
    assert!(
        (q_heads + kv_heads) * head_dim <= width,
        "heads past the row"
    );
    assert!(
        len <= table.len && len * width <= rows.len(),
        "rows past the table"
    );
    let simd = super::Simd::detect();
    for (t, row) in rows.chunks_exact_mut(width).take(len).enumerate() {
        let cos = &table.cos[t * table.half..(t + 1) * table.half];
        let sin = &table.sin[t * table.half..(t + 1) * table.half];
        let heads = &mut row[..(q_heads + kv_heads) * head_dim];
        rotate_on(simd, heads, head_dim, cos, sin, interleaved);
    }
}

/// Rotates every head of `heads` (`[n, head_dim]`) on the kernels of `simd` (which this CPU
/// must run).
fn rotate_on(
    simd: super::Simd,
    heads: &mut [f32],
    head_dim: usize,
    cos: &[f32],
    sin: &[f32],
    interleaved: bool,
) {
    match simd {
        // SAFETY: AVX2 and FMA were detected on this CPU.
        #[cfg(target_arch = "x86_64")]
        super::Simd::Avx2 => unsafe { rotate_avx2(heads, head_dim, cos, sin, interleaved) },
        // SAFETY: AVX-512 F was detected on this CPU.
        #[cfg(all(target_arch = "x86_64", ember_avx512))]
        super::Simd::Avx512 => unsafe { rotate_avx512(heads, head_dim, cos, sin, interleaved) },
        _ => rotate(heads, head_dim, cos, sin, interleaved),
    }
}

/// The rotation itself, written as plain loops over the frequency index so that each instruction
/// set's build below vectorizes it at its own width (the halves layout: contiguous lanes; the
/// interleaved one: pairs). The element order of the arithmetic is the same in every build, so
/// they agree exactly.
#[inline(always)]
fn rotate(heads: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32], interleaved: bool) {
    let half = cos.len();
    for head in heads.chunks_exact_mut(head_dim) {
        if interleaved {
            for ((pair, &c), &s) in head[..2 * half].chunks_exact_mut(2).zip(cos).zip(sin) {
                let (a, b) = (pair[0], pair[1]);
                pair[0] = a * c - b * s;
                pair[1] = b * c + a * s;
            }
        } else {
            let (x1, rest) = head.split_at_mut(half);
            let x2 = &mut rest[..half];
            for (((a, b), &c), &s) in x1.iter_mut().zip(x2.iter_mut()).zip(cos).zip(sin) {
                let (p, q) = (*a, *b);
                *a = p * c - q * s;
                *b = q * c + p * s;
            }
        }
    }
}

/// `rotate` built for AVX2.
///
/// # Safety
/// AVX2 and FMA must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rotate_avx2(heads: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32], il: bool) {
    rotate(heads, head_dim, cos, sin, il)
}

/// `rotate` built for AVX-512.
///
/// # Safety
/// AVX-512 F must be available.
#[cfg(all(target_arch = "x86_64", ember_avx512))]
#[allow(clippy::incompatible_msrv)]
#[target_feature(enable = "avx512f")]
unsafe fn rotate_avx512(heads: &mut [f32], head_dim: usize, cos: &[f32], sin: &[f32], il: bool) {
    rotate(heads, head_dim, cos, sin, il)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::Simd;

    fn rope(interleaved: bool, rotary_dim: usize) -> Rope {
        Rope {
            base: 1000.0,
            rotary_dim,
            interleaved,
            scaling: Some(NtkScaling {
                factor: 2.0,
                trained: 16,
            }),
        }
    }

    /// The textbook rotation in f64: each pair `(x_i, x_j)` turns by `t / base^(2k/d)`.
    #[test]
    fn rotates_pairs_by_position_times_frequency() {
        for interleaved in [false, true] {
            let (heads, d, rot, len) = (3, 16, 8, 5);
            let r = rope(interleaved, rot);
            let width = 2 * heads * d + 7;
            let x = crate::kernels::test_data(len * width, 4, 1.0);
            let mut y = x.clone();
            let layout = QkLayout {
                width,
                q_heads: 2,
                kv_heads: 1,
                head_dim: d,
            };
            apply(&mut y, layout, len, &r.table(r.base, len), interleaved);
            for t in 0..len {
                for h in 0..heads {
                    let at = t * width + h * d;
                    for k in 0..rot / 2 {
                        let (i, j) = if interleaved {
                            (2 * k, 2 * k + 1)
                        } else {
                            (k, k + rot / 2)
                        };
                        let f = 1.0 / 1000f64.powf(2.0 * k as f64 / rot as f64);
                        let (c, s) = ((t as f64 * f).cos(), (t as f64 * f).sin());
                        let (a, b) = (x[at + i] as f64, x[at + j] as f64);
                        assert!((y[at + i] as f64 - (a * c - b * s)).abs() < 1e-5);
                        assert!((y[at + j] as f64 - (b * c + a * s)).abs() < 1e-5);
                    }
                    // Past the rotary width, and past the K heads: untouched.
                    assert_eq!(&y[at + rot..at + d], &x[at + rot..at + d]);
                }
                let tail = t * width + heads * d;
                assert_eq!(&y[tail..(t + 1) * width], &x[tail..(t + 1) * width]);
            }
        }
    }

    #[test]
    fn ntk_base_grows_only_past_the_trained_length() {
        let r = rope(false, 64);
        assert_eq!(r.base_for(16), 1000.0);
        // factor 2, len 32, trained 16: (2 * 2 - 1)^(64 / 62)
        let want = 1000.0 * 3f64.powf(64.0 / 62.0);
        assert!((r.base_for(32) - want).abs() < 1e-9 * want);
        let plain = Rope {
            scaling: None,
            ..r.clone()
        };
        assert_eq!(plain.base_for(10_000), 1000.0);
    }

    #[test]
    fn simd_paths_match_portable() {
        for simd in Simd::available() {
            for interleaved in [false, true] {
                for (d, rot) in [(16, 16), (64, 64), (64, 32), (24, 8)] {
                    let r = rope(interleaved, rot);
                    let t = r.table(r.base_for(40), 40);
                    let x = crate::kernels::test_data(4 * d, d as u32, 2.0);
                    let (mut a, mut b) = (x.clone(), x.clone());
                    rotate(&mut a, d, &t.cos[..rot / 2], &t.sin[..rot / 2], interleaved);
                    let at = 37 * (rot / 2);
                    rotate(
                        &mut a,
                        d,
                        &t.cos[at..at + rot / 2],
                        &t.sin[at..],
                        interleaved,
                    );
                    rotate_on(
                        simd,
                        &mut b,
                        d,
                        &t.cos[..rot / 2],
                        &t.sin[..rot / 2],
                        interleaved,
                    );
                    rotate_on(
                        simd,
                        &mut b,
                        d,
                        &t.cos[at..at + rot / 2],
                        &t.sin[at..],
                        interleaved,
                    );
                    assert_eq!(a, b, "{simd:?} d {d} rot {rot} interleaved {interleaved}");
                }
            }
        }
    }
}
