//! Row-wise kernels: residual add + layer norm, exact-erf GELU, masked softmax, and the
//! vectorized `exp`/`erf` they rest on.
//!
//! The AVX-512, AVX2 and portable paths evaluate the same polynomials (Cephes `expf`, Eigen's rational
//! `erf`), so they agree to rounding.

use rayon::prelude::*;

use super::Simd;

// Built only where `build.rs` found Rust 1.89+ (the AVX-512 intrinsics' release), so the lint's
// MSRV warning does not apply.
#[cfg(all(target_arch = "x86_64", ember_avx512))]
#[allow(clippy::incompatible_msrv)]
pub(crate) mod avx512;

/// Rows below this many floats in total run on the calling thread (waking the pool costs more).
const PAR_MIN: usize = 1 << 15;

/// `x[r] = LN(x[r] + residual[r]) * gamma + beta` for each row of width `gamma.len()`
/// (`residual` may be empty: plain layer norm).
pub fn add_layer_norm(x: &mut [f32], residual: &[f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let w = gamma.len();
    assert!(w > 0 && x.len() % w == 0 && beta.len() == w);
    assert!(residual.is_empty() || residual.len() == x.len());
    let simd = Simd::detect();
    let row = |(r, xr): (usize, &mut [f32])| {
        let res = if residual.is_empty() {
            &[][..]
        } else {
            &residual[r * w..(r + 1) * w]
        };
        layer_norm_row_on(simd, xr, res, gamma, beta, eps);
    };
    if x.len() >= PAR_MIN {
        x.par_chunks_mut(w).enumerate().for_each(row);
    } else {
        x.chunks_mut(w).enumerate().for_each(row);
    }
}

/// One row of `add_layer_norm` on the kernels of `simd` (which this CPU must run).
fn layer_norm_row_on(
    simd: Simd,
    x: &mut [f32],
    res: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    match simd {
        // SAFETY: AVX2 and FMA were detected on this CPU.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { avx2::add_layer_norm_row(x, res, gamma, beta, eps) },
        // SAFETY: AVX-512 F was detected on this CPU.
        #[cfg(all(target_arch = "x86_64", ember_avx512))]
        Simd::Avx512 => unsafe { avx512::add_layer_norm_row(x, res, gamma, beta, eps) },
        _ => add_layer_norm_row(x, res, gamma, beta, eps),
    }
}

/// Portable residual add + layer norm of one row.
pub fn add_layer_norm_row(x: &mut [f32], res: &[f32], gamma: &[f32], beta: &[f32], eps: f32) {
    if !res.is_empty() {
        x.iter_mut().zip(res).for_each(|(a, b)| *a += b);
    }
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, g), b) in x.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * inv * g + b;
    }
}

/// Exact GELU, `x * (1 + erf(x / sqrt 2)) / 2`, in place.
pub fn gelu_erf(x: &mut [f32]) {
    let simd = Simd::detect();
    let run = |c: &mut [f32]| gelu_on(simd, c);
    if x.len() >= PAR_MIN {
        x.par_chunks_mut(PAR_MIN / 4).for_each(run);
    } else {
        run(x);
    }
}

/// Exact GELU on the kernels of `simd` (which this CPU must run).
fn gelu_on(simd: Simd, x: &mut [f32]) {
    match simd {
        // SAFETY: AVX2 and FMA were detected on this CPU.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { avx2::gelu_erf(x) },
        // SAFETY: AVX-512 F was detected on this CPU.
        #[cfg(all(target_arch = "x86_64", ember_avx512))]
        Simd::Avx512 => unsafe { avx512::gelu_erf(x) },
        _ => gelu_erf_portable(x),
    }
}

/// Portable exact GELU.
pub fn gelu_erf_portable(x: &mut [f32]) {
    for v in x {
        *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// Softmax of `x` in place (the caller leaves masked entries out of the slice).
pub fn softmax(x: &mut [f32]) {
    let inv = 1.0 / softmax_unnormalized(x, 1.0);
    x.iter_mut().for_each(|v| *v *= inv);
}

/// `x_i = e^(scale (x_i - max x))` in place, for `scale > 0` (the caller leaves masked entries
/// out of the slice, or sets them to -inf); returns the sum. Attention divides its context rows
/// (`head_dim` values) by the sum instead of the probabilities (a row of keys).
pub fn softmax_unnormalized(x: &mut [f32], scale: f32) -> f32 {
    softmax_on(Simd::detect(), x, scale, f32::NEG_INFINITY).1
}

/// One step of an online softmax: `x_i = e^(scale (x_i - m))` in place with
/// `m = max(floor, max x)` (`floor` is the running maximum of the row's earlier blocks, or -inf);
/// returns `(m, sum)`. `x` must hold at least one finite value or `floor` must be finite.
pub fn softmax_from(x: &mut [f32], scale: f32, floor: f32) -> (f32, f32) {
    softmax_on(Simd::detect(), x, scale, floor)
}

/// `softmax_from` on the kernels of `simd` (which this CPU must run).
pub(crate) fn softmax_on(simd: Simd, x: &mut [f32], scale: f32, floor: f32) -> (f32, f32) {
    debug_assert!(scale > 0.0, "softmax scale {scale}");
    match simd {
        // SAFETY: AVX2 and FMA were detected on this CPU.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { avx2::softmax_from(x, scale, floor) },
        // SAFETY: AVX-512 F was detected on this CPU.
        #[cfg(all(target_arch = "x86_64", ember_avx512))]
        Simd::Avx512 => unsafe { avx512::softmax_from(x, scale, floor) },
        _ => softmax_portable(x, scale, floor),
    }
}

/// Portable `softmax_from`.
pub fn softmax_portable(x: &mut [f32], scale: f32, floor: f32) -> (f32, f32) {
    let max = x.iter().fold(floor, |m, &v| m.max(v));
    let mut sum = 0.0;
    for v in x.iter_mut() {
        *v = exp((*v - max) * scale);
        sum += *v;
    }
    (max, sum)
}

// Cephes expf.
const EXP_HI: f32 = 88.376_26;
const EXP_LO: f32 = -88.376_26;
const LOG2E: f32 = std::f32::consts::LOG2_E;
const EXP_C1: f32 = 0.693_359_4;
const EXP_C2: f32 = -2.121_944_4e-4;
const EXP_P: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    0.166_666_65,
    0.5,
];

/// `e^x` by the polynomial the AVX2 path uses (relative error about 2e-7).
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(EXP_LO, EXP_HI);
    let fx = (x * LOG2E).round();
    let r = x - fx * EXP_C1 - fx * EXP_C2;
    let mut y = EXP_P[0];
    for p in &EXP_P[1..] {
        y = y * r + p;
    }
    let y = y * r * r + r + 1.0;
    y * f32::from_bits(((fx as i32 + 127) as u32) << 23)
}

// Eigen's `generic_fast_erf_float`: erf(x) = x P(x^2) / Q(x^2) on [-4, 4], +-1 outside.
const ERF_A: [f32; 7] = [
    -2.726_142_3e-10,
    2.770_681_4e-8,
    -2.101_024e-6,
    -5.692_506_4e-5,
    -7.349_906e-4,
    -2.954_600_5e-3,
    -1.609_603_3e-2,
];
const ERF_B: [f32; 5] = [
    -1.456_607_2e-5,
    -2.133_740_6e-4,
    -1.682_827e-3,
    -7.373_329e-3,
    -1.426_474e-2,
];

/// `erf(x)` by the rational approximation the AVX2 path uses (absolute error below 1e-6).
pub fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = ERF_A[0];
    for a in &ERF_A[1..] {
        p = p * x2 + a;
    }
    let mut q = ERF_B[0];
    for b in &ERF_B[1..] {
        q = q * x2 + b;
    }
    x * p / q
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    //! AVX2 + FMA versions; callers check `has_avx2()` first.
    use std::arch::x86_64::*;

    use super::{ERF_A, ERF_B, EXP_C1, EXP_C2, EXP_HI, EXP_LO, EXP_P, LOG2E};

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps::<1>(v);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn hmax(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps::<1>(v);
        let s = _mm_max_ps(lo, hi);
        let s = _mm_max_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_max_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn exp8(x: __m256) -> __m256 {
        let x = _mm256_min_ps(
            _mm256_max_ps(x, _mm256_set1_ps(EXP_LO)),
            _mm256_set1_ps(EXP_HI),
        );
        let fx = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm256_mul_ps(x, _mm256_set1_ps(LOG2E)),
        );
        let r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(EXP_C1), x);
        let r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(EXP_C2), r);
        let mut y = _mm256_set1_ps(EXP_P[0]);
        for p in &EXP_P[1..] {
            y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(*p));
        }
        let y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), r);
        let y = _mm256_add_ps(y, _mm256_set1_ps(1.0));
        let e = _mm256_slli_epi32::<23>(_mm256_add_epi32(
            _mm256_cvtps_epi32(fx),
            _mm256_set1_epi32(127),
        ));
        _mm256_mul_ps(y, _mm256_castsi256_ps(e))
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn erf8(x: __m256) -> __m256 {
        let x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-4.0)), _mm256_set1_ps(4.0));
        let x2 = _mm256_mul_ps(x, x);
        let mut p = _mm256_set1_ps(ERF_A[0]);
        for a in &ERF_A[1..] {
            p = _mm256_fmadd_ps(p, x2, _mm256_set1_ps(*a));
        }
        let mut q = _mm256_set1_ps(ERF_B[0]);
        for b in &ERF_B[1..] {
            q = _mm256_fmadd_ps(q, x2, _mm256_set1_ps(*b));
        }
        _mm256_div_ps(_mm256_mul_ps(x, p), q)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn gelu_erf(x: &mut [f32]) {
        let n8 = x.len() / 8 * 8;
        let half = _mm256_set1_ps(0.5);
        let one = _mm256_set1_ps(1.0);
        let rs2 = _mm256_set1_ps(std::f32::consts::FRAC_1_SQRT_2);
        for c in x[..n8].chunks_exact_mut(8) {
            // SAFETY: `c` holds exactly 8 f32, so the unaligned load and store stay inside it.
            unsafe {
                let v = _mm256_loadu_ps(c.as_ptr());
                let e = erf8(_mm256_mul_ps(v, rs2));
                let y = _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(one, e));
                _mm256_storeu_ps(c.as_mut_ptr(), y);
            }
        }
        super::gelu_erf_portable(&mut x[n8..]);
    }

    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn softmax_from(x: &mut [f32], scale: f32, floor: f32) -> (f32, f32) {
        let n8 = x.len() / 8 * 8;
        let mut vmax = _mm256_set1_ps(floor);
        for c in x[..n8].chunks_exact(8) {
            // SAFETY: `c` holds exactly 8 f32.
            vmax = _mm256_max_ps(vmax, unsafe { _mm256_loadu_ps(c.as_ptr()) });
        }
        let max = x[n8..].iter().fold(hmax(vmax), |m, &v| m.max(v));
        // scale (x - max) as one fused multiply-subtract.
        let (vs, vm) = (_mm256_set1_ps(scale), _mm256_set1_ps(max * scale));
        let mut vsum = _mm256_setzero_ps();
        for c in x[..n8].chunks_exact_mut(8) {
            // SAFETY: `c` holds exactly 8 f32.
            unsafe {
                let e = exp8(_mm256_fmsub_ps(_mm256_loadu_ps(c.as_ptr()), vs, vm));
                vsum = _mm256_add_ps(vsum, e);
                _mm256_storeu_ps(c.as_mut_ptr(), e);
            }
        }
        let mut sum = hsum(vsum);
        for v in &mut x[n8..] {
            *v = super::exp((*v - max) * scale);
            sum += *v;
        }
        (max, sum)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn add_layer_norm_row(
        x: &mut [f32],
        res: &[f32],
        gamma: &[f32],
        beta: &[f32],
        eps: f32,
    ) {
        let n = x.len();
        let n8 = n / 8 * 8;
        let mut vs = _mm256_setzero_ps();
        // SAFETY (all blocks below): every pointer offset `i` satisfies `i + 8 <= n8 <= n`, and
        // `res` (when not empty), `gamma` and `beta` have length `n` like `x`.
        if !res.is_empty() {
            for i in (0..n8).step_by(8) {
                unsafe {
                    let v = _mm256_add_ps(
                        _mm256_loadu_ps(x.as_ptr().add(i)),
                        _mm256_loadu_ps(res.as_ptr().add(i)),
                    );
                    _mm256_storeu_ps(x.as_mut_ptr().add(i), v);
                }
            }
            for i in n8..n {
                x[i] += res[i];
            }
        }
        for i in (0..n8).step_by(8) {
            vs = _mm256_add_ps(vs, unsafe { _mm256_loadu_ps(x.as_ptr().add(i)) });
        }
        let mean = (hsum(vs) + x[n8..].iter().sum::<f32>()) / n as f32;
        let vm = _mm256_set1_ps(mean);
        let mut vv = _mm256_setzero_ps();
        for i in (0..n8).step_by(8) {
            let d = _mm256_sub_ps(unsafe { _mm256_loadu_ps(x.as_ptr().add(i)) }, vm);
            vv = _mm256_fmadd_ps(d, d, vv);
        }
        let var =
            (hsum(vv) + x[n8..].iter().map(|v| (v - mean) * (v - mean)).sum::<f32>()) / n as f32;
        let inv = 1.0 / (var + eps).sqrt();
        let vi = _mm256_set1_ps(inv);
        for i in (0..n8).step_by(8) {
            unsafe {
                let d = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x.as_ptr().add(i)), vm), vi);
                let y = _mm256_fmadd_ps(
                    d,
                    _mm256_loadu_ps(gamma.as_ptr().add(i)),
                    _mm256_loadu_ps(beta.as_ptr().add(i)),
                );
                _mm256_storeu_ps(x.as_mut_ptr().add(i), y);
            }
        }
        for i in n8..n {
            x[i] = (x[i] - mean) * inv * gamma[i] + beta[i];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        crate::kernels::test_data(n, seed, 5.0)
    }

    fn close(a: &[f32], b: &[f32], tol: f32) {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "{i}: {x} vs {y}");
        }
    }

    #[test]
    fn exp_and_erf_match_std_and_known_values() {
        for x in [-20.0f32, -3.3, -0.5, 0.0, 0.1, 1.0, 7.5, 30.0] {
            let want = x.exp();
            assert!((exp(x) - want).abs() <= 1e-6 * want, "exp({x})");
        }
        // erf values from a table (Abramowitz & Stegun 7.1).
        for (x, want) in [
            (0.0f32, 0.0f32),
            (0.1, 0.112_462_9),
            (0.5, 0.520_499_9),
            (1.0, 0.842_700_8),
            (2.0, 0.995_322_3),
            (3.5, 0.999_999_3),
            (-1.5, -0.966_105_1),
        ] {
            assert!((erf(x) - want).abs() < 1e-6, "erf({x}) = {}", erf(x));
        }
    }

    /// Every SIMD path this CPU runs against the portable one, at widths with and without a
    /// partial vector, with and without a residual.
    #[test]
    fn simd_paths_match_portable() {
        for simd in Simd::available() {
            for n in [1usize, 7, 8, 15, 16, 17, 33, 384, 1000] {
                let x = data(n, n as u32);
                let (mut a, mut b) = (x.clone(), x.clone());
                gelu_erf_portable(&mut a);
                gelu_on(simd, &mut b);
                close(&b, &a, 1e-6);

                for scale in [1.0, 0.125] {
                    let (mut a, mut b) = (x.clone(), x.clone());
                    let (_, sa) = softmax_portable(&mut a, scale, f32::NEG_INFINITY);
                    let (_, sb) = softmax_on(simd, &mut b, scale, f32::NEG_INFINITY);
                    close(&b, &a, 1e-5);
                    assert!((sa - sb).abs() <= 1e-5 * sa, "{simd:?} {n}: {sa} {sb}");
                    // The largest entry maps to e^0 and the sum is the row's.
                    let top = b.iter().fold(0f32, |m, &v| m.max(v));
                    assert!((top - 1.0).abs() < 1e-6, "{simd:?} {n}: max {top}");
                    assert!(
                        (b.iter().sum::<f32>() - sb).abs() <= 1e-5 * sb,
                        "{simd:?} {n}"
                    );
                    // A floor above every value shifts the exponent by it: the same row times
                    // e^(scale (max - floor)).
                    let (mx, _) = softmax_portable(&mut x.clone(), 1.0, f32::NEG_INFINITY);
                    let floor = mx + 2.0;
                    let (mut a, mut b) = (x.clone(), x.clone());
                    let (fa, sa) = softmax_portable(&mut a, scale, floor);
                    let (fb, sb) = softmax_on(simd, &mut b, scale, floor);
                    assert_eq!((fa, fb), (floor, floor));
                    close(&b, &a, 1e-5);
                    let want = exp(-2.0 * scale);
                    assert!(
                        (sb / top_sum(&x, scale) - want).abs() <= 1e-5 * want,
                        "{simd:?}"
                    );
                    assert!((sa - sb).abs() <= 1e-5 * sa);
                }

                let res = data(n, 7 + n as u32);
                let g = data(n, 11);
                let be = data(n, 13);
                for res in [&res[..], &[]] {
                    let (mut a, mut b) = (x.clone(), x.clone());
                    add_layer_norm_row(&mut a, res, &g, &be, 1e-12);
                    layer_norm_row_on(simd, &mut b, res, &g, &be, 1e-12);
                    if n > 1 {
                        close(&b, &a, 1e-4);
                    }
                }
            }
        }
    }

    /// The plain softmax sum of `x` at `scale`.
    fn top_sum(x: &[f32], scale: f32) -> f32 {
        softmax_portable(&mut x.to_vec(), scale, f32::NEG_INFINITY).1
    }

    #[test]
    fn layer_norm_normalizes() {
        let mut x = data(4 * 384, 3);
        let g = vec![1.0; 384];
        let b = vec![0.0; 384];
        add_layer_norm(&mut x, &[], &g, &b, 1e-12);
        for row in x.chunks(384) {
            let mean = row.iter().sum::<f32>() / 384.0;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / 384.0;
            assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4);
        }
    }
}
