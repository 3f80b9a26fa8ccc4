//! AVX-512 versions of the row kernels (built by Rust 1.89 or newer, see `build.rs`); callers
//! check `has_avx512()` first. Sixteen lanes per step, and row tails by masked loads and stores
//! instead of a scalar loop. Same polynomials as the AVX2 and portable paths.

use std::arch::x86_64::*;

use super::{ERF_A, ERF_B, EXP_C1, EXP_C2, EXP_HI, EXP_LO, EXP_P, LOG2E};

/// Lanes `i..min(i + 16, n)` as a mask. Only row tails use masked loads and stores: whole
/// vectors go unmasked, which AMD's cores run faster.
#[inline]
fn lanes(n: usize, i: usize) -> __mmask16 {
    let left = n - i;
    if left >= 16 {
        0xffff
    } else {
        ((1u32 << left) - 1) as __mmask16
    }
}

/// `e^x`, lane by lane (Cephes `expf`, as `super::exp`).
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn exp16(x: __m512) -> __m512 {
    let x = _mm512_min_ps(
        _mm512_max_ps(x, _mm512_set1_ps(EXP_LO)),
        _mm512_set1_ps(EXP_HI),
    );
    let fx = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
        _mm512_mul_ps(x, _mm512_set1_ps(LOG2E)),
    );
    let r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(EXP_C1), x);
    let r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(EXP_C2), r);
    let mut y = _mm512_set1_ps(EXP_P[0]);
    for p in &EXP_P[1..] {
        y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(*p));
    }
    let y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), r);
    let y = _mm512_add_ps(y, _mm512_set1_ps(1.0));
    let e = _mm512_slli_epi32::<23>(_mm512_add_epi32(
        _mm512_cvtps_epi32(fx),
        _mm512_set1_epi32(127),
    ));
    _mm512_mul_ps(y, _mm512_castsi512_ps(e))
}

/// `erf(x)`, lane by lane (Eigen's rational form, as `super::erf`).
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn erf16(x: __m512) -> __m512 {
    let x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-4.0)), _mm512_set1_ps(4.0));
    let x2 = _mm512_mul_ps(x, x);
    let mut p = _mm512_set1_ps(ERF_A[0]);
    for a in &ERF_A[1..] {
        p = _mm512_fmadd_ps(p, x2, _mm512_set1_ps(*a));
    }
    let mut q = _mm512_set1_ps(ERF_B[0]);
    for b in &ERF_B[1..] {
        q = _mm512_fmadd_ps(q, x2, _mm512_set1_ps(*b));
    }
    // x p / q with q's reciprocal from `vrcp14ps` and one Newton step (relative error near
    // 1e-7): a 512-bit division costs several times as much.
    let r = _mm512_rcp14_ps(q);
    let r = _mm512_mul_ps(r, _mm512_fnmadd_ps(q, r, _mm512_set1_ps(2.0)));
    _mm512_mul_ps(_mm512_mul_ps(x, p), r)
}

/// Sixteen values at `p + i`, or the `n - i < 16` left (the other lanes `fill`).
///
/// # Safety
/// `p .. p + n` must be readable and `i < n`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn load(p: *const f32, i: usize, n: usize, fill: __m512) -> __m512 {
    // SAFETY: the caller's promise; the mask keeps a tail's read inside `p .. p + n`.
    unsafe {
        if i + 16 <= n {
            _mm512_loadu_ps(p.add(i))
        } else {
            _mm512_mask_loadu_ps(fill, lanes(n, i), p.add(i))
        }
    }
}

/// Stores `v` at `p + i`, only its first `n - i` lanes when fewer than 16 are left.
///
/// # Safety
/// `p .. p + n` must be writable and `i < n`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn store(p: *mut f32, i: usize, n: usize, v: __m512) {
    // SAFETY: the caller's promise; the mask keeps a tail's write inside `p .. p + n`.
    unsafe {
        if i + 16 <= n {
            _mm512_storeu_ps(p.add(i), v)
        } else {
            _mm512_mask_storeu_ps(p.add(i), lanes(n, i), v)
        }
    }
}

/// Exact GELU in place.
#[target_feature(enable = "avx512f")]
pub(crate) fn gelu_erf(x: &mut [f32]) {
    let n = x.len();
    let (half, one) = (_mm512_set1_ps(0.5), _mm512_set1_ps(1.0));
    let rs2 = _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2);
    let zero = _mm512_setzero_ps();
    for i in (0..n).step_by(16) {
        // SAFETY: `i < n`, and `x` holds `n` values.
        unsafe {
            let v = load(x.as_ptr(), i, n, zero);
            let e = erf16(_mm512_mul_ps(v, rs2));
            let y = _mm512_mul_ps(_mm512_mul_ps(half, v), _mm512_add_ps(one, e));
            store(x.as_mut_ptr(), i, n, y);
        }
    }
}

/// `x_i = e^(scale (x_i - m))` in place (`scale > 0`) with `m = max(floor, max x)`; returns
/// `(m, sum)`, so the caller can normalize whatever the row is multiplied into instead of the
/// row (and an online softmax can carry the running maximum in `floor`).
#[target_feature(enable = "avx512f")]
pub(crate) fn softmax_from(x: &mut [f32], scale: f32, floor: f32) -> (f32, f32) {
    let n = x.len();
    let ninf = _mm512_set1_ps(f32::NEG_INFINITY);
    let mut vmax = _mm512_set1_ps(floor);
    for i in (0..n).step_by(16) {
        // SAFETY: `i < n`, and `x` holds `n` values; a tail's other lanes read as -inf.
        vmax = _mm512_max_ps(vmax, unsafe { load(x.as_ptr(), i, n, ninf) });
    }
    let vs = _mm512_set1_ps(scale);
    let max = _mm512_reduce_max_ps(vmax);
    // scale (x - max) as one fused multiply-subtract.
    let vm = _mm512_set1_ps(max * scale);
    let mut vsum = _mm512_setzero_ps();
    for i in (0..n).step_by(16) {
        // SAFETY: as above; a tail's other lanes read as -inf, whose exp is 0 (the clamp makes
        // it e^-88, below f32's normal range once scaled: it is never stored).
        unsafe {
            let e = exp16(_mm512_fmsub_ps(load(x.as_ptr(), i, n, ninf), vs, vm));
            let e = if i + 16 <= n {
                e
            } else {
                _mm512_maskz_mov_ps(lanes(n, i), e)
            };
            vsum = _mm512_add_ps(vsum, e);
            store(x.as_mut_ptr(), i, n, e);
        }
    }
    (max, _mm512_reduce_add_ps(vsum))
}

/// Residual add (when `res` is not empty) and layer norm of one row.
#[target_feature(enable = "avx512f")]
pub(crate) fn add_layer_norm_row(
    x: &mut [f32],
    res: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    let n = x.len();
    assert!(gamma.len() == n && beta.len() == n && (res.is_empty() || res.len() == n));
    let zero = _mm512_setzero_ps();
    // SAFETY (every block below): `i < n`, and `x`, `gamma`, `beta` and a non-empty `res` all
    // hold `n` values (asserted above); a tail's other lanes read as 0.
    let mut vs = zero;
    for i in (0..n).step_by(16) {
        unsafe {
            let mut v = load(x.as_ptr(), i, n, zero);
            if !res.is_empty() {
                v = _mm512_add_ps(v, load(res.as_ptr(), i, n, zero));
                store(x.as_mut_ptr(), i, n, v);
            }
            vs = _mm512_add_ps(vs, v);
        }
    }
    let mean = _mm512_reduce_add_ps(vs) / n as f32;
    let vm = _mm512_set1_ps(mean);
    let mut vv = zero;
    for i in (0..n).step_by(16) {
        let v = unsafe { load(x.as_ptr(), i, n, vm) };
        let d = _mm512_sub_ps(v, vm);
        vv = _mm512_fmadd_ps(d, d, vv);
    }
    let inv = 1.0 / (_mm512_reduce_add_ps(vv) / n as f32 + eps).sqrt();
    let vi = _mm512_set1_ps(inv);
    for i in (0..n).step_by(16) {
        unsafe {
            let d = _mm512_mul_ps(_mm512_sub_ps(load(x.as_ptr(), i, n, zero), vm), vi);
            let y = _mm512_fmadd_ps(
                d,
                load(gamma.as_ptr(), i, n, zero),
                load(beta.as_ptr(), i, n, zero),
            );
            store(x.as_mut_ptr(), i, n, y);
        }
    }
}
