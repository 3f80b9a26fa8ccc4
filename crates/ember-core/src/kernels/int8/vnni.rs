//! The AVX-512 BW + VNNI int8 microkernel (built by Rust 1.89 or newer, see `build.rs`).

use std::arch::x86_64::*;

use super::{Tile, MR, NR};

/// AVX-512 VNNI tile (up to 8 rows, weights offset by 128); dispatches to a kernel unrolled for
/// the row count.
///
/// # Safety
/// AVX-512 F + BW + VNNI, AVX2 and FMA must be available.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
pub unsafe fn tile(t: Tile<'_>, acc: &mut [[f32; NR]; MR]) {
    // The kernel's raw reads rely on it: a cheap check per tile.
    assert!(t.is_valid() && t.offset, "malformed int8 tile");
    // SAFETY: `t` is valid (checked above) and the caller guarantees the instruction sets.
    unsafe {
        match t.rows {
            8 => vnni_kernel::<8>(t, acc),
            7 => vnni_kernel::<7>(t, acc),
            6 => vnni_kernel::<6>(t, acc),
            5 => vnni_kernel::<5>(t, acc),
            4 => vnni_kernel::<4>(t, acc),
            3 => vnni_kernel::<3>(t, acc),
            2 => vnni_kernel::<2>(t, acc),
            _ => vnni_kernel::<1>(t, acc),
        }
    }
}

/// `R` rows × 16 columns. Per step of 4 input channels: one 64-byte panel load, and per row one
/// 4-byte broadcast and one `vpdpbusd` (16 columns × 4 products into i32 lanes). Each group's
/// accumulators start at `-128 · (row's sum of codes)`, cancelling the weights' +128 offset;
/// the i32 sums are scaled into f32 at the end of each group.
///
/// # Safety
/// As `tile_vnni`; `t` valid with `t.rows >= R`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
unsafe fn vnni_kernel<const R: usize>(t: Tile<'_>, acc: &mut [[f32; NR]; MR]) {
    let row = t.groups * t.gp;
    // SAFETY: `t.bias` holds NR = 16 values (`t.is_valid()`).
    let mut f = [unsafe { _mm512_loadu_ps(t.bias.as_ptr()) }; R];
    for g in 0..t.groups {
        let mut c = [_mm512_setzero_si512(); R];
        // SAFETY (whole block): `g < groups`, so the group's `gp * NR` panel bytes, its 16
        // scales and each row's `gp` bytes at `r * row + g * gp` and sum at `r * groups + g` lie
        // inside the slices (`t.is_valid()`, `r < R <= rows`); steps `s < gp / 4` stay within
        // the group.
        unsafe {
            for (r, cr) in c.iter_mut().enumerate() {
                *cr = _mm512_set1_epi32(-128 * *t.xsum.get_unchecked(r * t.groups + g));
            }
            let wp = t.panel.as_ptr().add(g * t.gp * NR);
            let xp = t.xq.as_ptr().add(g * t.gp);
            for s in 0..t.gp / 4 {
                let w = _mm512_loadu_si512(wp.add(s * 4 * NR) as *const __m512i);
                for (r, cr) in c.iter_mut().enumerate() {
                    let xv = (xp.add(r * row + 4 * s) as *const i32).read_unaligned();
                    *cr = _mm512_dpbusd_epi32(*cr, w, _mm512_set1_epi32(xv));
                }
            }
            let sw = _mm512_loadu_ps(t.ps.as_ptr().add(g * NR));
            for (r, (fr, cr)) in f.iter_mut().zip(&c).enumerate() {
                let sx = _mm512_set1_ps(*t.xs.get_unchecked(r * t.groups + g));
                *fr = _mm512_fmadd_ps(_mm512_cvtepi32_ps(*cr), _mm512_mul_ps(sx, sw), *fr);
            }
        }
    }
    for (fr, out) in f.iter().zip(acc.iter_mut()) {
        // SAFETY: each `out` row is 16 f32 wide.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), *fr) };
    }
}
