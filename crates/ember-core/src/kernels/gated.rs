//! Row kernels of the newer architectures: gated feed-forward activations (SwiGLU, as NomicBERT
//! and Qwen3 use; GeGLU with the tanh GELU, as T5 v1.1 and Gemma use; GeGLU with the exact GELU,
//! as ModernBERT and Alibaba's GTE use), the tanh GELU alone, RMS norm (T5, Qwen3, Gemma; in place
//! for Q/K heads) and the residual add that pre-norm layers need.
//!
//! A gated feed-forward's two input projections run as one GEMM whose output rows hold the "up"
//! half then the "gate" half (`[rows, 2 * inner]`); the gate kernels read both halves and write
//! `[rows, inner]`, so the activation and the product are one pass over memory. The AVX-512, AVX2
//! and portable paths use the same `exp` polynomial as `elementwise`, so they agree to rounding.

use rayon::prelude::*;

use super::elementwise::{erf, exp};
use super::Simd;

/// Rows below this many floats in total run on the calling thread (waking the pool costs more).
const PAR_MIN: usize = 1 << 15;

/// Which gated activation a feed-forward applies to its gate half.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// `up * silu(gate)` (SwiGLU).
    Silu,
    /// `up * gelu_tanh(gate)` (GeGLU with the tanh approximation, transformers' `gelu_new`).
    GeluTanh,
    /// `up * gelu(gate)` with the exact (erf) GELU, transformers' `gelu`.
    Gelu,
}

/// `out[r] = up[r] * act(gate[r])` for rows `ug[r] = [up | gate]` of width `2 * inner`.
pub fn gated(ug: &[f32], inner: usize, gate: Gate, out: &mut [f32]) {
    assert!(
        inner > 0 && ug.len() % (2 * inner) == 0,
        "ug is not [rows, 2 * inner]"
    );
    assert_eq!(out.len() * 2, ug.len(), "out is not [rows, inner]");
    let simd = Simd::detect();
    let row = |(o, ug): (&mut [f32], &[f32])| {
        let (up, g) = ug.split_at(inner);
        gated_row_on(simd, gate, up, g, o);
    };
    if ug.len() >= PAR_MIN {
        out.par_chunks_mut(inner)
            .zip(ug.par_chunks(2 * inner))
            .for_each(row);
    } else {
        out.chunks_mut(inner)
            .zip(ug.chunks(2 * inner))
            .for_each(row);
    }
}

/// One row of `gated` on the kernels of `simd` (which this CPU must run).
fn gated_row_on(simd: Simd, gate: Gate, up: &[f32], g: &[f32], out: &mut [f32]) {
    match simd {
        // SAFETY: AVX2 and FMA were detected on this CPU.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { avx2::gated_row(gate, up, g, out) },
        // SAFETY: AVX-512 F was detected on this CPU.
        #[cfg(all(target_arch = "x86_64", ember_avx512))]
        Simd::Avx512 => unsafe { avx512::gated_row(gate, up, g, out) },
        _ => gated_row_portable(gate, up, g, out),
    }
}

/// Portable `gated` of one row.
pub fn gated_row_portable(gate: Gate, up: &[f32], g: &[f32], out: &mut [f32]) {
    for ((o, &u), &g) in out.iter_mut().zip(up).zip(g) {
        *o = u * match gate {
            Gate::Silu => silu(g),
            Gate::GeluTanh => gelu_tanh(g),
            Gate::Gelu => 0.5 * g * (1.0 + erf(g * std::f32::consts::FRAC_1_SQRT_2)),
        };
    }
}

/// `x * sigmoid(x)`.
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + exp(-x))
}

/// `sqrt(2 / pi)`.
const GELU_C: f32 = 0.797_884_6;

/// The tanh GELU, `x (1 + tanh(y)) / 2` with `y = sqrt(2/pi) (x + 0.044715 x^3)`, computed as
/// the equal `x / (1 + e^(-2y))`: no cancellation in `1 + tanh(y)` for negative `x`, and
/// saturating correctly at both ends through `exp`'s clamp.
#[inline]
pub fn gelu_tanh(x: f32) -> f32 {
    let y = GELU_C * (x + 0.044_715 * x * x * x);
    x / (1.0 + exp(-2.0 * y))
}

/// The tanh GELU in place.
pub fn gelu_tanh_in_place(x: &mut [f32]) {
    let simd = Simd::detect();
    let run = |c: &mut [f32]| gelu_tanh_on(simd, c);
    if x.len() >= PAR_MIN {
        x.par_chunks_mut(PAR_MIN / 4).for_each(run);
    } else {
        run(x);
    }
}

fn gelu_tanh_on(simd: Simd, x: &mut [f32]) {
    match simd {
        // SAFETY: AVX2 and FMA were detected on this CPU.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { avx2::gelu_tanh(x) },
        // SAFETY: AVX-512 F was detected on this CPU.
        #[cfg(all(target_arch = "x86_64", ember_avx512))]
        Simd::Avx512 => unsafe { avx512::gelu_tanh(x) },
        _ => x.iter_mut().for_each(|v| *v = gelu_tanh(*v)),
    }
}

/// `out[r] = x[r] / sqrt(mean(x[r]^2) + eps) * gamma` for each row of width `gamma.len()`
/// (T5's `T5LayerNorm`: no mean subtracted, no bias).
pub fn rms_norm(x: &[f32], gamma: &[f32], eps: f32, out: &mut [f32]) {
    let w = gamma.len();
    assert!(w > 0 && x.len() % w == 0, "x is not [rows, gamma.len()]");
    assert_eq!(out.len(), x.len(), "out is not x's shape");
    let simd = Simd::detect();
    let row = |(o, x): (&mut [f32], &[f32])| rms_row_on(simd, x, gamma, eps, o);
    if x.len() >= PAR_MIN {
        out.par_chunks_mut(w).zip(x.par_chunks(w)).for_each(row);
    } else {
        out.chunks_mut(w).zip(x.chunks(w)).for_each(row);
    }
}

fn rms_row_on(simd: Simd, x: &[f32], gamma: &[f32], eps: f32, out: &mut [f32]) {
    match simd {
        // SAFETY: AVX2 and FMA were detected on this CPU.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { avx2::rms_row(x, gamma, eps, out) },
        // SAFETY: AVX-512 F was detected on this CPU.
        #[cfg(all(target_arch = "x86_64", ember_avx512))]
        Simd::Avx512 => unsafe { avx512::rms_row(x, gamma, eps, out) },
        _ => rms_row_portable(x, gamma, eps, out),
    }
}

/// Portable RMS norm of one row.
pub fn rms_row_portable(x: &[f32], gamma: &[f32], eps: f32, out: &mut [f32]) {
    let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let inv = 1.0 / (ms + eps).sqrt();
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(gamma) {
        *o = v * inv * g;
    }
}

/// `x[r] = x[r] / sqrt(mean(x[r]^2) + eps) * gamma` in place, for each row of width
/// `gamma.len()` (the per-head Q/K norms of Qwen3 and Gemma, a final norm).
pub fn rms_norm_in_place(x: &mut [f32], gamma: &[f32], eps: f32) {
    let w = gamma.len();
    assert!(w > 0 && x.len() % w == 0, "x is not [rows, gamma.len()]");
    let simd = Simd::detect();
    let rows = |c: &mut [f32]| {
        // The row kernels read one slice and write another: each row goes through a copy.
        let mut row = vec![0f32; w];
        for r in c.chunks_exact_mut(w) {
            row.copy_from_slice(r);
            rms_row_on(simd, &row, gamma, eps, r);
        }
    };
    if x.len() >= PAR_MIN {
        x.par_chunks_mut(w * (PAR_MIN / 4).div_ceil(w))
            .for_each(rows);
    } else {
        rows(x);
    }
}

/// `x += y` (a pre-norm layer's residual add).
pub fn add_in_place(x: &mut [f32], y: &[f32]) {
    assert_eq!(x.len(), y.len(), "residual add of different lengths");
    let simd = Simd::detect();
    let run = |(x, y): (&mut [f32], &[f32])| add_on(simd, x, y);
    if x.len() >= PAR_MIN {
        x.par_chunks_mut(PAR_MIN / 4)
            .zip(y.par_chunks(PAR_MIN / 4))
            .for_each(run);
    } else {
        run((x, y));
    }
}

fn add_on(simd: Simd, x: &mut [f32], y: &[f32]) {
    match simd {
        // SAFETY: AVX2 was detected on this CPU.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { avx2::add(x, y) },
        // The AVX-512 build of the same loop: the compiler widens it to 16 lanes.
        // SAFETY: AVX-512 F was detected on this CPU.
        #[cfg(all(target_arch = "x86_64", ember_avx512))]
        Simd::Avx512 => unsafe { avx512::add(x, y) },
        _ => x.iter_mut().zip(y).for_each(|(a, b)| *a += b),
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! AVX2 + FMA versions; callers check `has_avx2()` first.
    use std::arch::x86_64::*;

    use super::super::elementwise::avx2::{erf8, exp8, hsum};
    use super::{Gate, GELU_C};

    /// `up * act(gate)` on 8 lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn act8(gate: Gate, g: __m256) -> __m256 {
        let one = _mm256_set1_ps(1.0);
        match gate {
            Gate::Silu => {
                let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
                _mm256_div_ps(g, _mm256_add_ps(one, e))
            }
            Gate::GeluTanh => {
                let g3 = _mm256_mul_ps(_mm256_mul_ps(g, g), g);
                let y = _mm256_mul_ps(
                    _mm256_set1_ps(GELU_C),
                    _mm256_fmadd_ps(_mm256_set1_ps(0.044_715), g3, g),
                );
                let e = exp8(_mm256_mul_ps(_mm256_set1_ps(-2.0), y));
                _mm256_div_ps(g, _mm256_add_ps(one, e))
            }
            Gate::Gelu => {
                let e = erf8(_mm256_mul_ps(
                    g,
                    _mm256_set1_ps(std::f32::consts::FRAC_1_SQRT_2),
                ));
                _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5), g), _mm256_add_ps(one, e))
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn gated_row(gate: Gate, up: &[f32], g: &[f32], out: &mut [f32]) {
        let n = out.len().min(up.len()).min(g.len());
        let n8 = n / 8 * 8;
        for i in (0..n8).step_by(8) {
            // SAFETY: `i + 8 <= n8 <= n`, and `up`, `g`, `out` each hold at least `n` values.
            unsafe {
                let a = act8(gate, _mm256_loadu_ps(g.as_ptr().add(i)));
                let y = _mm256_mul_ps(_mm256_loadu_ps(up.as_ptr().add(i)), a);
                _mm256_storeu_ps(out.as_mut_ptr().add(i), y);
            }
        }
        super::gated_row_portable(gate, &up[n8..n], &g[n8..n], &mut out[n8..n]);
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn gelu_tanh(x: &mut [f32]) {
        let n8 = x.len() / 8 * 8;
        for c in x[..n8].chunks_exact_mut(8) {
            // SAFETY: `c` holds exactly 8 f32.
            unsafe {
                let y = act8(Gate::GeluTanh, _mm256_loadu_ps(c.as_ptr()));
                _mm256_storeu_ps(c.as_mut_ptr(), y);
            }
        }
        x[n8..].iter_mut().for_each(|v| *v = super::gelu_tanh(*v));
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn rms_row(x: &[f32], gamma: &[f32], eps: f32, out: &mut [f32]) {
        let n = x.len();
        let n8 = n / 8 * 8;
        let mut acc = _mm256_setzero_ps();
        for i in (0..n8).step_by(8) {
            // SAFETY: `i + 8 <= n8 <= n = x.len()`.
            let v = unsafe { _mm256_loadu_ps(x.as_ptr().add(i)) };
            acc = _mm256_fmadd_ps(v, v, acc);
        }
        let ms = (hsum(acc) + x[n8..].iter().map(|v| v * v).sum::<f32>()) / n as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        let vi = _mm256_set1_ps(inv);
        for i in (0..n8).step_by(8) {
            // SAFETY: `i + 8 <= n8`; `gamma` and `out` have `x`'s length `n`.
            unsafe {
                let v = _mm256_mul_ps(_mm256_loadu_ps(x.as_ptr().add(i)), vi);
                let y = _mm256_mul_ps(v, _mm256_loadu_ps(gamma.as_ptr().add(i)));
                _mm256_storeu_ps(out.as_mut_ptr().add(i), y);
            }
        }
        for i in n8..n {
            out[i] = x[i] * inv * gamma[i];
        }
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn add(x: &mut [f32], y: &[f32]) {
        // Written as the plain loop: built with AVX2 enabled, the compiler keeps it in 8 lanes.
        x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
    }
}

#[cfg(all(target_arch = "x86_64", ember_avx512))]
#[allow(clippy::incompatible_msrv)]
mod avx512 {
    //! AVX-512 versions (built by Rust 1.89 or newer); callers check `has_avx512()` first.
    //! Sixteen lanes per step; row tails go through the portable code.
    use std::arch::x86_64::*;

    use super::super::elementwise::avx512::{erf16, exp16};
    use super::{Gate, GELU_C};

    #[inline]
    #[target_feature(enable = "avx512f")]
    fn act16(gate: Gate, g: __m512) -> __m512 {
        let one = _mm512_set1_ps(1.0);
        match gate {
            Gate::Silu => {
                let e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), g));
                _mm512_div_ps(g, _mm512_add_ps(one, e))
            }
            Gate::GeluTanh => {
                let g3 = _mm512_mul_ps(_mm512_mul_ps(g, g), g);
                let y = _mm512_mul_ps(
                    _mm512_set1_ps(GELU_C),
                    _mm512_fmadd_ps(_mm512_set1_ps(0.044_715), g3, g),
                );
                let e = exp16(_mm512_mul_ps(_mm512_set1_ps(-2.0), y));
                _mm512_div_ps(g, _mm512_add_ps(one, e))
            }
            Gate::Gelu => {
                let e = erf16(_mm512_mul_ps(
                    g,
                    _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2),
                ));
                _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5), g), _mm512_add_ps(one, e))
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn gated_row(gate: Gate, up: &[f32], g: &[f32], out: &mut [f32]) {
        let n = out.len().min(up.len()).min(g.len());
        let n16 = n / 16 * 16;
        for i in (0..n16).step_by(16) {
            // SAFETY: `i + 16 <= n16 <= n`, and `up`, `g`, `out` each hold at least `n` values.
            unsafe {
                let a = act16(gate, _mm512_loadu_ps(g.as_ptr().add(i)));
                let y = _mm512_mul_ps(_mm512_loadu_ps(up.as_ptr().add(i)), a);
                _mm512_storeu_ps(out.as_mut_ptr().add(i), y);
            }
        }
        super::gated_row_portable(gate, &up[n16..n], &g[n16..n], &mut out[n16..n]);
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn gelu_tanh(x: &mut [f32]) {
        let n16 = x.len() / 16 * 16;
        for c in x[..n16].chunks_exact_mut(16) {
            // SAFETY: `c` holds exactly 16 f32.
            unsafe {
                let y = act16(Gate::GeluTanh, _mm512_loadu_ps(c.as_ptr()));
                _mm512_storeu_ps(c.as_mut_ptr(), y);
            }
        }
        x[n16..].iter_mut().for_each(|v| *v = super::gelu_tanh(*v));
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn rms_row(x: &[f32], gamma: &[f32], eps: f32, out: &mut [f32]) {
        let n = x.len();
        let n16 = n / 16 * 16;
        let mut acc = _mm512_setzero_ps();
        for i in (0..n16).step_by(16) {
            // SAFETY: `i + 16 <= n16 <= n = x.len()`.
            let v = unsafe { _mm512_loadu_ps(x.as_ptr().add(i)) };
            acc = _mm512_fmadd_ps(v, v, acc);
        }
        let ms =
            (_mm512_reduce_add_ps(acc) + x[n16..].iter().map(|v| v * v).sum::<f32>()) / n as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        let vi = _mm512_set1_ps(inv);
        for i in (0..n16).step_by(16) {
            // SAFETY: `i + 16 <= n16`; `gamma` and `out` have `x`'s length `n`.
            unsafe {
                let v = _mm512_mul_ps(_mm512_loadu_ps(x.as_ptr().add(i)), vi);
                let y = _mm512_mul_ps(v, _mm512_loadu_ps(gamma.as_ptr().add(i)));
                _mm512_storeu_ps(out.as_mut_ptr().add(i), y);
            }
        }
        for i in n16..n {
            out[i] = x[i] * inv * gamma[i];
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn add(x: &mut [f32], y: &[f32]) {
        x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        crate::kernels::test_data(n, seed, 6.0)
    }

    fn close(a: &[f32], b: &[f32], tol: f32, what: &str) {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= tol * (1.0 + y.abs()),
                "{what} {i}: {x} vs {y}"
            );
        }
    }

    /// The portable formulas against f64 references.
    #[test]
    fn portable_activations_match_f64_formulas() {
        for x in [-30.0f32, -6.0, -1.3, -0.01, 0.0, 0.02, 0.7, 3.0, 12.0, 40.0] {
            let xd = x as f64;
            let silu_want = xd / (1.0 + (-xd).exp());
            assert!((silu(x) as f64 - silu_want).abs() < 1e-6 * (1.0 + silu_want.abs()));
            let c = (2.0 / std::f64::consts::PI).sqrt();
            let gelu_want = 0.5 * xd * (1.0 + (c * (xd + 0.044715 * xd.powi(3))).tanh());
            assert!(
                (gelu_tanh(x) as f64 - gelu_want).abs() < 1e-6 * (1.0 + gelu_want.abs()),
                "gelu_tanh({x}) = {} vs {gelu_want}",
                gelu_tanh(x)
            );
        }
        let x = [3.0f32, 4.0];
        let mut out = [0.0; 2];
        rms_row_portable(&x, &[1.0, 2.0], 0.0, &mut out);
        // rms = sqrt((9 + 16) / 2)
        let r = (12.5f32).sqrt();
        close(&out, &[3.0 / r, 8.0 / r], 1e-6, "rms");
    }

    /// Every SIMD path this CPU runs against the portable one, at widths with and without a
    /// partial vector.
    #[test]
    fn simd_paths_match_portable() {
        for simd in Simd::available() {
            for n in [1usize, 7, 8, 15, 16, 17, 33, 384, 1000] {
                let up = data(n, n as u32);
                let g = data(n, 3 + n as u32);
                for gate in [Gate::Silu, Gate::GeluTanh, Gate::Gelu] {
                    let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
                    gated_row_portable(gate, &up, &g, &mut a);
                    gated_row_on(simd, gate, &up, &g, &mut b);
                    // The exact GELU's `1 + erf(g / sqrt 2)` cancels for negative gates: the
                    // FMA and the portable rounding of the same polynomial differ by ~1e-7 there,
                    // times `0.5 * g * up` (up to 18 on this data), a few 1e-6 absolute.
                    let tol = if gate == Gate::Gelu { 1e-5 } else { 1e-6 };
                    close(&b, &a, tol, &format!("{simd:?} {gate:?} {n}"));
                }
                let (mut a, mut b) = (g.clone(), g.clone());
                a.iter_mut().for_each(|v| *v = gelu_tanh(*v));
                gelu_tanh_on(simd, &mut b);
                close(&b, &a, 1e-6, &format!("{simd:?} gelu_tanh {n}"));

                let gamma = data(n, 11);
                let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
                rms_row_portable(&up, &gamma, 1e-6, &mut a);
                rms_row_on(simd, &up, &gamma, 1e-6, &mut b);
                close(&b, &a, 1e-5, &format!("{simd:?} rms {n}"));

                let (mut a, mut b) = (up.clone(), up.clone());
                a.iter_mut().zip(&g).for_each(|(x, y)| *x += y);
                add_on(simd, &mut b, &g);
                close(&b, &a, 0.0, &format!("{simd:?} add {n}"));
            }
        }
    }

    /// The row-parallel entry points split `[rows, 2 inner]` as the rows say, on one thread and
    /// on the pool.
    #[test]
    fn gated_reads_up_then_gate() {
        for rows in [3usize, 200] {
            let inner = 96;
            let ug = data(rows * 2 * inner, 5);
            let mut out = vec![0f32; rows * inner];
            gated(&ug, inner, Gate::Silu, &mut out);
            for r in 0..rows {
                for c in 0..inner {
                    let (u, g) = (ug[r * 2 * inner + c], ug[r * 2 * inner + inner + c]);
                    let want = u * silu(g);
                    assert!((out[r * inner + c] - want).abs() <= 1e-5 * (1.0 + want.abs()));
                }
            }
            let gamma = data(inner, 9);
            let x = data(rows * inner, 2);
            let mut y = vec![0f32; rows * inner];
            rms_norm(&x, &gamma, 1e-6, &mut y);
            let mut want = vec![0f32; inner];
            rms_row_portable(&x[inner..2 * inner], &gamma, 1e-6, &mut want);
            close(&y[inner..2 * inner], &want, 1e-5, "rms row 1");
            // The exact-GELU gate is `up * gelu_erf(gate)`.
            let mut exact = vec![0f32; rows * inner];
            gated(&ug, inner, Gate::Gelu, &mut exact);
            let mut want_g: Vec<f32> = (0..rows * inner)
                .map(|i| ug[(i / inner) * 2 * inner + inner + i % inner])
                .collect();
            super::super::elementwise::gelu_erf_portable(&mut want_g);
            for (i, (o, g)) in exact.iter().zip(&want_g).enumerate() {
                let want = ug[(i / inner) * 2 * inner + i % inner] * g;
                assert!(
                    (o - want).abs() <= 1e-5 * (1.0 + want.abs()),
                    "gelu gate {i}"
                );
            }
            // In place: the same rows.
            let mut z = x.clone();
            rms_norm_in_place(&mut z, &gamma, 1e-6);
            close(&z, &y, 1e-6, "rms in place");
        }
    }
}
