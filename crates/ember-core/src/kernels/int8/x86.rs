//! The x86-64 AVX2 int8 microkernel and activation quantizer.

use std::arch::x86_64::*;

use super::{Dst, Tile, NR};
use crate::kernels::elementwise::avx2::hmax;

/// AVX2 tile (up to 4 rows, one panel, signed weights); dispatches to a kernel unrolled for the
/// row count.
///
/// # Safety
/// AVX2 and FMA must be available; `dst` must be valid for `t.rows` rows of 16 values.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn tile_avx2(t: Tile<'_>, dst: Dst) {
    // The kernel's raw reads rely on it: a cheap check per tile.
    assert!(
        t.is_valid() && t.rows <= 4 && t.panels == 1 && !t.offset,
        "malformed int8 tile"
    );
    // SAFETY: `t` is valid (checked above) and the caller guarantees AVX2 + FMA and `dst`.
    unsafe {
        match t.rows {
            4 => avx2_kernel::<4>(t, dst),
            3 => avx2_kernel::<3>(t, dst),
            2 => avx2_kernel::<2>(t, dst),
            _ => avx2_kernel::<1>(t, dst),
        }
    }
}

/// `R` rows × 16 columns. Per step of 4 input channels: two panel loads, and per row one
/// broadcast, one `vpabsb`, and per half-panel `vpsignb` + `vpmaddubsw` + `vpmaddwd` +
/// `vpaddd`. The i32 sums are scaled into f32 at the end of each group.
///
/// # Safety
/// AVX2 and FMA must be available; `t` valid with `t.rows >= R`; `dst` valid for `R` rows of 16.
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_kernel<const R: usize>(t: Tile<'_>, dst: Dst) {
    let row = t.groups * t.gp;
    let ones = _mm256_set1_epi16(1);
    // SAFETY: `t.bias` holds NR = 16 values (`t.is_valid()`).
    let b = unsafe {
        [
            _mm256_loadu_ps(t.bias.as_ptr()),
            _mm256_loadu_ps(t.bias.as_ptr().add(8)),
        ]
    };
    let mut f = [b; R];
    let steps = t.gp / 4;
    let pf_step = t.pf.step(t.groups * steps);
    for g in 0..t.groups {
        let mut c = [[_mm256_setzero_si256(); 2]; R];
        // SAFETY (whole block): `g < groups`, so the group's `gp * NR` panel bytes and each
        // row's `gp` bytes at `r * row + g * gp` lie inside the slices (`t.is_valid()`,
        // `r < R <= rows`); steps `s < gp / 4` stay within the group.
        unsafe {
            let wp = t.panel.as_ptr().add(g * t.gp * NR);
            let xp = t.xq.as_ptr().add(g * t.gp);
            for s in 0..steps {
                if t.pf.len != 0 {
                    t.pf.at(g * steps + s, pf_step);
                }
                let w0 = _mm256_loadu_si256(wp.add(s * 4 * NR) as *const __m256i);
                let w1 = _mm256_loadu_si256(wp.add(s * 4 * NR + 32) as *const __m256i);
                for (r, cr) in c.iter_mut().enumerate() {
                    let xv = (xp.add(r * row + 4 * s) as *const i32).read_unaligned();
                    let xb = _mm256_set1_epi32(xv);
                    let ax = _mm256_abs_epi8(xb);
                    let p0 = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(w0, xb));
                    let p1 = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(w1, xb));
                    cr[0] = _mm256_add_epi32(cr[0], _mm256_madd_epi16(p0, ones));
                    cr[1] = _mm256_add_epi32(cr[1], _mm256_madd_epi16(p1, ones));
                }
            }
            let s0 = _mm256_loadu_ps(t.ps.as_ptr().add(g * NR));
            let s1 = _mm256_loadu_ps(t.ps.as_ptr().add(g * NR + 8));
            for (r, (fr, cr)) in f.iter_mut().zip(&c).enumerate() {
                let sx = _mm256_set1_ps(*t.xs.get_unchecked(r * t.groups + g));
                let (a, b) = (_mm256_cvtepi32_ps(cr[0]), _mm256_cvtepi32_ps(cr[1]));
                fr[0] = _mm256_fmadd_ps(a, _mm256_mul_ps(sx, s0), fr[0]);
                fr[1] = _mm256_fmadd_ps(b, _mm256_mul_ps(sx, s1), fr[1]);
            }
        }
    }
    for (r, fr) in f.iter().enumerate() {
        // SAFETY: `dst` holds `R` rows of 16 values (the caller).
        unsafe {
            let out = dst.row(r);
            _mm256_storeu_ps(out, fr[0]);
            _mm256_storeu_ps(out.add(8), fr[1]);
        }
    }
}

/// Quantizes one group of a multiple of 32 values; returns its scale and the codes' sum.
#[target_feature(enable = "avx2,fma")]
pub(super) fn quantize_group(x: &[f32], q: &mut [i8]) -> (f32, i32) {
    let n = x.len();
    assert!(n % 32 == 0 && q.len() >= n);
    let sign = _mm256_set1_ps(-0.0);
    let mut vmax = _mm256_setzero_ps();
    for i in (0..n).step_by(8) {
        // SAFETY: `n` is a multiple of 32, so `i + 8 <= n`.
        let v = unsafe { _mm256_loadu_ps(x.as_ptr().add(i)) };
        vmax = _mm256_max_ps(vmax, _mm256_andnot_ps(sign, v));
    }
    let max = hmax(vmax);
    if max == 0.0 {
        q[..n].fill(0);
        return (1.0, 0);
    }
    let inv = _mm256_set1_ps(127.0 / max);
    let perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    let (ones8, ones16) = (_mm256_set1_epi8(1), _mm256_set1_epi16(1));
    let mut sum = _mm256_setzero_si256();
    for i in (0..n).step_by(32) {
        // SAFETY: `i + 32 <= n` and `q` has at least `n` values (asserted).
        unsafe {
            let cv = |o: usize| {
                _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x.as_ptr().add(i + o)), inv))
            };
            let ab = _mm256_packs_epi32(cv(0), cv(8));
            let cd = _mm256_packs_epi32(cv(16), cv(24));
            let bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(ab, cd), perm);
            // |x| * 127 / max <= 127 up to rounding; clamp the -128 rounding could make
            // (the kernel's sign trick needs |q| <= 127).
            let bytes = _mm256_max_epi8(bytes, _mm256_set1_epi8(-127));
            _mm256_storeu_si256(q.as_mut_ptr().add(i) as *mut __m256i, bytes);
            // The codes' sum (for offset weights): byte pairs to i16, then to i32 lanes.
            let pairs = _mm256_maddubs_epi16(ones8, bytes);
            sum = _mm256_add_epi32(sum, _mm256_madd_epi16(pairs, ones16));
        }
    }
    let mut lanes = [0i32; 8];
    // SAFETY: `lanes` is 32 bytes.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr() as *mut __m256i, sum) };
    (max / 127.0, lanes.iter().sum())
}
