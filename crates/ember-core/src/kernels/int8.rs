//! Integer GEMM for int8 linear layers: `y = x W^T + b` with `W` stored as symmetric int8 and one
//! f32 scale per group of `group` input channels per output row (`models::quant::Int8Matrix`).
//!
//! Activations are quantized on the fly to symmetric int8 with one scale per row and group (the
//! same groups as the weights, so both scales multiply the group's i32 sum and per-group
//! activation scales cost nothing over per-row ones while keeping outlier channels from costing
//! the whole row its precision). Products accumulate in i32 within a group and in f32 across
//! groups. The AVX2 kernel uses `vpsignb` + `vpmaddubsw` + `vpmaddwd`: `|x| * sign(w, x)` keeps
//! both operands within 127, so the pairwise i16 sums (at most 2 * 127 * 127) never saturate.

use rayon::prelude::*;

use super::attention::SyncPtr;
use super::has_avx2;

/// Output rows per task: small enough to split a single query's layer across threads.
const COL_BLOCK: usize = 64;
/// Input rows per task.
const ROW_BLOCK: usize = 32;

/// Row-wise int8 activations with one scale per `group` values.
#[derive(Debug, Default)]
pub struct QuantizedRows {
    /// `[rows, cols]`.
    pub q: Vec<i8>,
    /// `[rows, cols / group]`.
    pub scales: Vec<f32>,
}

/// Whether the integer kernel handles a matrix with `cols` columns in groups of `group`.
pub fn supports(cols: usize, group: usize) -> bool {
    group > 0 && group % 32 == 0 && cols % group == 0
}

/// Quantizes `x` (`[rows, cols]`) per row and group to [-127, 127], `scale = max|group| / 127`.
pub fn quantize_rows(x: &[f32], cols: usize, group: usize, out: &mut QuantizedRows) {
    assert!(supports(cols, group) && x.len() % cols == 0);
    out.q.resize(x.len(), 0);
    out.scales.resize(x.len() / group, 0.0);
    let avx = has_avx2();
    let work = |((xg, qg), s): ((&[f32], &mut [i8]), &mut f32)| {
        #[cfg(target_arch = "x86_64")]
        if avx {
            // SAFETY: AVX2 and FMA were detected on this CPU; `xg` and `qg` have `group` values.
            *s = unsafe { avx2::quantize_group(xg, qg) };
            return;
        }
        let _ = avx;
        *s = quantize_group(xg, qg);
    };
    let it = x
        .par_chunks(group)
        .zip(out.q.par_chunks_mut(group))
        .zip(out.scales.par_iter_mut());
    if x.len() >= 1 << 15 {
        it.for_each(work);
    } else {
        x.chunks(group)
            .zip(out.q.chunks_mut(group))
            .zip(out.scales.iter_mut())
            .for_each(work);
    }
}

/// Portable quantization of one group; returns its scale.
pub fn quantize_group(x: &[f32], q: &mut [i8]) -> f32 {
    let max = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    if max == 0.0 {
        q.fill(0);
        return 1.0;
    }
    let inv = 127.0 / max;
    for (qv, &v) in q.iter_mut().zip(x) {
        *qv = (v * inv).round_ties_even().clamp(-127.0, 127.0) as i8;
    }
    max / 127.0
}

/// Int8 weights as the kernel reads them.
#[derive(Debug, Clone, Copy)]
pub struct Int8Weights<'a> {
    /// `[n, k]`.
    pub q: &'a [i8],
    /// `[n, k / group]`.
    pub scales: &'a [f32],
    /// Output features.
    pub n: usize,
    /// Input features.
    pub k: usize,
    /// Values per scale.
    pub group: usize,
}

/// `out[m, n] = dequant(x) · dequant(w)^T + bias` for activations quantized by `quantize_rows`.
pub fn gemm(x: &QuantizedRows, w: Int8Weights<'_>, bias: &[f32], out: &mut [f32]) {
    let Int8Weights { n, k, group, .. } = w;
    assert!(supports(k, group));
    assert_eq!(w.q.len(), n * k);
    assert_eq!(w.scales.len(), n * k / group);
    let m = x.q.len() / k;
    assert_eq!(x.q.len(), m * k);
    assert_eq!(out.len(), m * n);
    assert!(bias.is_empty() || bias.len() == n);
    let avx = has_avx2();
    let (rb, cb) = (m.div_ceil(ROW_BLOCK), n.div_ceil(COL_BLOCK));
    let ptr = SyncPtr(out.as_mut_ptr());
    let task = |t: usize| {
        let (r0, c0) = ((t / cb) * ROW_BLOCK, (t % cb) * COL_BLOCK);
        let (r1, c1) = ((r0 + ROW_BLOCK).min(m), (c0 + COL_BLOCK).min(n));
        let mut rows = [[0f32; COL_BLOCK]; 2];
        let mut i = r0;
        while i < r1 {
            // Two activation rows share every weight load on AVX2.
            let two = avx && i + 1 < r1;
            let [d0, d1] = &mut rows;
            let (d0, d1) = (&mut d0[..c1 - c0], &mut d1[..c1 - c0]);
            let xq = |r: usize| &x.q[r * k..(r + 1) * k];
            let xs = |r: usize| &x.scales[r * k / group..(r + 1) * k / group];
            #[cfg(target_arch = "x86_64")]
            if two {
                // SAFETY: AVX2 and FMA were detected; slice lengths were asserted above.
                unsafe {
                    avx2::rows2_block([xq(i), xq(i + 1)], [xs(i), xs(i + 1)], w, c0, [d0, d1])
                };
            } else if avx {
                // SAFETY: as above.
                unsafe { avx2::row_block(xq(i), xs(i), w, c0, d0) };
            } else {
                row_block(xq(i), xs(i), w, c0, d0);
            }
            #[cfg(not(target_arch = "x86_64"))]
            row_block(xq(i), xs(i), w, c0, d0);
            let done = if two { 2 } else { 1 };
            for (r, dst) in rows.iter_mut().take(done).enumerate() {
                let dst = &mut dst[..c1 - c0];
                if !bias.is_empty() {
                    dst.iter_mut().zip(&bias[c0..c1]).for_each(|(d, b)| *d += b);
                }
                // SAFETY: row `i + r`, columns `c0..c1` of `out` (asserted `[m, n]`) belong to
                // this task alone: tasks partition rows by ROW_BLOCK and columns by COL_BLOCK.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        dst.as_ptr(),
                        ptr.get().add((i + r) * n + c0),
                        c1 - c0,
                    );
                }
            }
            i += done;
        }
    };
    if m * n * k >= 1 << 18 {
        (0..rb * cb).into_par_iter().for_each(task);
    } else {
        (0..rb * cb).for_each(task);
    }
}

/// Portable kernel: `out[j - c0] = sum_g xs[g] ws[j, g] sum_{p in g} xq[p] wq[j, p]`.
pub fn row_block(xq: &[i8], xs: &[f32], w: Int8Weights<'_>, c0: usize, out: &mut [f32]) {
    let (k, g) = (w.k, w.group);
    for (jj, o) in out.iter_mut().enumerate() {
        let j = c0 + jj;
        let wq = &w.q[j * k..(j + 1) * k];
        let ws = &w.scales[j * k / g..(j + 1) * k / g];
        let mut acc = 0f32;
        for ((xc, wc), (sx, sw)) in xq.chunks(g).zip(wq.chunks(g)).zip(xs.iter().zip(ws)) {
            let dot: i32 = xc.iter().zip(wc).map(|(&a, &b)| a as i32 * b as i32).sum();
            acc += dot as f32 * sx * sw;
        }
        *o = acc;
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::Int8Weights;
    use crate::kernels::elementwise::avx2::{hmax, hsum};

    /// `sum(|x| * sign(w, x))` over 32 lanes, as 8 i32 partial sums added to `acc`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn dot32(ax: __m256i, xv: __m256i, wv: __m256i, acc: __m256i) -> __m256i {
        let p16 = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(wv, xv));
        _mm256_add_epi32(acc, _mm256_madd_epi16(p16, _mm256_set1_epi16(1)))
    }

    /// Four output columns at a time; the activation row is loaded once for all four.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn row_block(xq: &[i8], xs: &[f32], w: Int8Weights<'_>, c0: usize, out: &mut [f32]) {
        let (k, g) = (w.k, w.group);
        let groups = k / g;
        // The loads below rely on these; `gemm` guarantees them, the check keeps it honest.
        assert!(g % 32 == 0 && k % g == 0 && xq.len() >= k && xs.len() >= groups);
        assert!(w.q.len() >= (c0 + out.len()) * k && w.scales.len() >= (c0 + out.len()) * groups);
        let n4 = out.len() / 4 * 4;
        for jj in (0..n4).step_by(4) {
            let j = c0 + jj;
            let mut accf = [_mm256_setzero_ps(); 4];
            for (gi, &sx) in xs.iter().enumerate().take(groups) {
                let mut acc = [_mm256_setzero_si256(); 4];
                for c in (gi * g..(gi + 1) * g).step_by(32) {
                    // SAFETY: `c + 32 <= k` (g is a multiple of 32 and divides k); `xq` has at
                    // least k values and rows j..j+4 of `w.q` exist (asserted above).
                    unsafe {
                        let xv = _mm256_loadu_si256(xq.as_ptr().add(c) as *const __m256i);
                        let ax = _mm256_sign_epi8(xv, xv);
                        for (t, a) in acc.iter_mut().enumerate() {
                            let wp = w.q.as_ptr().add((j + t) * k + c) as *const __m256i;
                            *a = dot32(ax, xv, _mm256_loadu_si256(wp), *a);
                        }
                    }
                }
                for t in 0..4 {
                    let s = sx * w.scales[(j + t) * groups + gi];
                    accf[t] =
                        _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[t]), _mm256_set1_ps(s), accf[t]);
                }
            }
            for t in 0..4 {
                out[jj + t] = hsum(accf[t]);
            }
        }
        if n4 < out.len() {
            super::row_block(xq, xs, w, c0 + n4, &mut out[n4..]);
        }
    }

    /// Two activation rows by four output columns at a time: each weight load feeds both rows.
    // Indexing the 2 x 4 accumulator grid reads more plainly than zipped iterators.
    #[allow(clippy::needless_range_loop)]
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn rows2_block(
        xq: [&[i8]; 2],
        xs: [&[f32]; 2],
        w: Int8Weights<'_>,
        c0: usize,
        out: [&mut [f32]; 2],
    ) {
        let (k, g) = (w.k, w.group);
        let groups = k / g;
        let cols = out[0].len();
        // The loads below rely on these; `gemm` guarantees them, the check keeps it honest.
        assert!(g % 32 == 0 && k % g == 0 && out[1].len() == cols);
        assert!(xq.iter().all(|x| x.len() >= k) && xs.iter().all(|s| s.len() >= groups));
        assert!(w.q.len() >= (c0 + cols) * k && w.scales.len() >= (c0 + cols) * groups);
        let n4 = cols / 4 * 4;
        let [o0, o1] = out;
        for jj in (0..n4).step_by(4) {
            let j = c0 + jj;
            let mut accf = [[_mm256_setzero_ps(); 4]; 2];
            for gi in 0..groups {
                let mut acc = [[_mm256_setzero_si256(); 4]; 2];
                for c in (gi * g..(gi + 1) * g).step_by(32) {
                    // SAFETY: `c + 32 <= k`, both activation rows have at least k values and
                    // weight rows j..j+4 exist (asserted above).
                    unsafe {
                        let x0 = _mm256_loadu_si256(xq[0].as_ptr().add(c) as *const __m256i);
                        let x1 = _mm256_loadu_si256(xq[1].as_ptr().add(c) as *const __m256i);
                        let (a0, a1) = (_mm256_sign_epi8(x0, x0), _mm256_sign_epi8(x1, x1));
                        for t in 0..4 {
                            let wp = w.q.as_ptr().add((j + t) * k + c) as *const __m256i;
                            let wv = _mm256_loadu_si256(wp);
                            acc[0][t] = dot32(a0, x0, wv, acc[0][t]);
                            acc[1][t] = dot32(a1, x1, wv, acc[1][t]);
                        }
                    }
                }
                for r in 0..2 {
                    for t in 0..4 {
                        let s = xs[r][gi] * w.scales[(j + t) * groups + gi];
                        accf[r][t] = _mm256_fmadd_ps(
                            _mm256_cvtepi32_ps(acc[r][t]),
                            _mm256_set1_ps(s),
                            accf[r][t],
                        );
                    }
                }
            }
            for t in 0..4 {
                o0[jj + t] = hsum(accf[0][t]);
                o1[jj + t] = hsum(accf[1][t]);
            }
        }
        if n4 < cols {
            super::row_block(xq[0], xs[0], w, c0 + n4, &mut o0[n4..]);
            super::row_block(xq[1], xs[1], w, c0 + n4, &mut o1[n4..]);
        }
    }

    /// Quantizes one group of a multiple of 32 values; returns its scale.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn quantize_group(x: &[f32], q: &mut [i8]) -> f32 {
        let n = x.len();
        let sign = _mm256_set1_ps(-0.0);
        let mut vmax = _mm256_setzero_ps();
        for i in (0..n).step_by(8) {
            // SAFETY: `n` is a multiple of 32, so `i + 8 <= n`.
            let v = unsafe { _mm256_loadu_ps(x.as_ptr().add(i)) };
            vmax = _mm256_max_ps(vmax, _mm256_andnot_ps(sign, v));
        }
        let max = hmax(vmax);
        if max == 0.0 {
            q.fill(0);
            return 1.0;
        }
        let inv = _mm256_set1_ps(127.0 / max);
        let perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for i in (0..n).step_by(32) {
            // SAFETY: `i + 32 <= n` and `q` has `n` values.
            unsafe {
                let cv = |o: usize| {
                    _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x.as_ptr().add(i + o)), inv))
                };
                let ab = _mm256_packs_epi32(cv(0), cv(8));
                let cd = _mm256_packs_epi32(cv(16), cv(24));
                let bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), perm);
                // |x| * 127 / max <= 127 up to rounding; clamp the -128 rounding could make.
                let bytes = _mm256_max_epi8(bytes, _mm256_set1_epi8(-127));
                _mm256_storeu_si256(q.as_mut_ptr().add(i) as *mut __m256i, bytes);
            }
        }
        max / 127.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        crate::kernels::test_data(n, seed, 1.0)
    }

    fn quant_w(w: &[f32], k: usize, g: usize) -> (Vec<i8>, Vec<f32>) {
        let mut q = vec![0i8; w.len()];
        let s = w
            .chunks(g)
            .zip(q.chunks_mut(g))
            .map(|(c, qc)| quantize_group(c, qc))
            .collect();
        let _ = k;
        (q, s)
    }

    #[test]
    fn gemm_is_close_to_f32_product() {
        let (m, k, n, g) = (37, 256, 70, 128);
        let x = data(m * k, 1);
        let w = data(n * k, 2);
        let b = data(n, 3);
        let (wq, ws) = quant_w(&w, k, g);
        let mut xq = QuantizedRows::default();
        quantize_rows(&x, k, g, &mut xq);
        let mut out = vec![0f32; m * n];
        let wts = Int8Weights {
            q: &wq,
            scales: &ws,
            n,
            k,
            group: g,
        };
        gemm(&xq, wts, &b, &mut out);
        // Against the exact product of the dequantized operands: only f32 rounding differs.
        let deq = |q: &[i8], s: &[f32], p: usize| q[p] as f32 * s[p / g];
        let (mut worst, mut scale) = (0f32, 0f32);
        for i in 0..m {
            for j in 0..n {
                let exact: f32 = b[j]
                    + (0..k)
                        .map(|p| {
                            deq(&xq.q[i * k..], &xq.scales[i * k / g..], p)
                                * deq(&wq[j * k..], &ws[j * k / g..], p)
                        })
                        .sum::<f32>();
                assert!(
                    (out[i * n + j] - exact).abs() < 1e-4,
                    "{i},{j}: {} vs {exact}",
                    out[i * n + j]
                );
                let f32_product: f32 =
                    b[j] + (0..k).map(|p| x[i * k + p] * w[j * k + p]).sum::<f32>();
                worst = worst.max((out[i * n + j] - f32_product).abs());
                scale = scale.max(f32_product.abs());
            }
        }
        // Two 8-bit roundings over 256 products of values in [-1, 1]: under 1 % of the range.
        assert!(worst < 0.01 * scale, "worst {worst} of {scale}");
    }

    #[test]
    fn simd_paths_match_portable() {
        if !has_avx2() {
            return;
        }
        let (k, n, g) = (384, 11, 128);
        let mut x = data(k, 5);
        x[3] = 9.0; // an outlier channel
        let w = data(n * k, 6);
        let (wq, ws) = quant_w(&w, k, g);
        let wts = Int8Weights {
            q: &wq,
            scales: &ws,
            n,
            k,
            group: g,
        };
        // Quantization: identical codes except where a product sits on a rounding tie.
        let mut qa = vec![0i8; k];
        let mut qb = vec![0i8; k];
        let mut sa = Vec::new();
        let mut sb = Vec::new();
        for (i, c) in x.chunks(g).enumerate() {
            sa.push(quantize_group(c, &mut qa[i * g..(i + 1) * g]));
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX2 and FMA detected above.
            sb.push(unsafe { avx2::quantize_group(c, &mut qb[i * g..(i + 1) * g]) });
        }
        assert_eq!(sa, sb);
        assert!(qa
            .iter()
            .zip(&qb)
            .all(|(a, b)| (*a as i32 - *b as i32).abs() <= 1));
        // Also check a weight row whose product with x hits +-127 * 127 in every pair.
        let mut wq2 = wq.clone();
        wq2[..k].fill(-127);
        let mut xa = qa.clone();
        xa.iter_mut().for_each(|v| *v = 127);
        for (xq, wq) in [(&qa, &wq), (&xa, &wq2)] {
            let wts = Int8Weights { q: wq, ..wts };
            let mut a = vec![0f32; n];
            let mut b = vec![0f32; n];
            row_block(xq, &sa, wts, 0, &mut a);
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX2 and FMA detected above.
            unsafe {
                avx2::row_block(xq, &sa, wts, 0, &mut b)
            };
            for (p, q) in a.iter().zip(&b) {
                assert!((p - q).abs() <= 1e-4 * (1.0 + p.abs()), "{p} vs {q}");
            }
            let (mut c, mut d) = (vec![0f32; n], vec![0f32; n]);
            #[cfg(target_arch = "x86_64")]
            // SAFETY: AVX2 and FMA detected above.
            unsafe {
                avx2::rows2_block([xq, &qa], [&sa, &sa], wts, 0, [&mut c, &mut d])
            };
            let mut e = vec![0f32; n];
            row_block(&qa, &sa, wts, 0, &mut e);
            for ((p, q), (r, t)) in a.iter().zip(&c).zip(e.iter().zip(&d)) {
                assert!((p - q).abs() <= 1e-4 * (1.0 + p.abs()), "{p} vs {q}");
                assert!((r - t).abs() <= 1e-4 * (1.0 + r.abs()), "{r} vs {t}");
            }
        }
    }
}
