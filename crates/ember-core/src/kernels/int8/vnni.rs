//! The AVX-512 BW + VNNI int8 microkernel (built by Rust 1.89 or newer, see `build.rs`).
//!
//! A call takes up to `MR` = 6 rows and one or two neighbouring panels (up to 32 columns), as the
//! f32 AVX-512 kernel takes two: per step of 4 input channels, one 64-byte load per panel, one
//! 4-byte broadcast per row, and one `vpdpbusd` per row and panel, so every broadcast feeds two
//! `vpdpbusd`. 12 i32 group accumulators, 12 f32 sums, two weight registers and a broadcast fit
//! the 32 zmm registers.
//!
//! Six rows is a measurement (AMD EPYC, 2 vCPUs, 48 KiB L1d; `linear 384x1536`, 3584 rows):
//! 6 × 32 ran about 1.25x faster than the 8 × 16 kernel this one replaced; 4, 5, 7 and 8 rows
//! × 32 in between; 10 and 12 rows × 32 (their f32 sums kept in memory and updated once per
//! group, so the 24 i32 accumulators fit) about 1.25x *slower* than the old kernel, although
//! their inner loop had no spills; the VM exposes no performance counters to say why.

use std::arch::x86_64::*;

use super::{Dst, Tile, NR};

/// AVX-512 VNNI tile (up to 6 rows, one or two panels, weights offset by 128); dispatches to a
/// kernel unrolled for the row and panel counts.
///
/// # Safety
/// AVX-512 F + BW + VNNI, AVX2 and FMA must be available; `dst` must be valid for `t.rows` rows
/// of `16 * t.panels` values.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
pub unsafe fn tile(t: Tile<'_>, dst: Dst) {
    // The kernel's raw reads rely on it: a cheap check per tile.
    assert!(t.is_valid() && t.offset, "malformed int8 tile");
    macro_rules! by_rows {
        ($w:literal) => {
            match t.rows {
                6 => kernel::<6, $w>(t, dst),
                5 => kernel::<5, $w>(t, dst),
                4 => kernel::<4, $w>(t, dst),
                3 => kernel::<3, $w>(t, dst),
                2 => kernel::<2, $w>(t, dst),
                _ => kernel::<1, $w>(t, dst),
            }
        };
    }
    // SAFETY: `t` is valid (checked above: `rows <= MR`, `panels <= 2`, the slices long enough)
    // and the caller guarantees the instruction sets and `dst`.
    unsafe {
        if t.panels == 2 {
            by_rows!(2)
        } else {
            by_rows!(1)
        }
    }
}

/// `R` rows × `W` panels (16 columns each). Each group's i32 accumulators start at
/// `-128 · (row's sum of codes)`, cancelling the weights' +128 offset (the same seed for every
/// panel); at the group's end they are scaled into the f32 sums, which go to `dst` at the end.
///
/// # Safety
/// As `tile`; `t` valid with `t.rows >= R` and `t.panels >= W`; `dst` valid for `R` rows of
/// `16 * W` values.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
unsafe fn kernel<const R: usize, const W: usize>(t: Tile<'_>, dst: Dst) {
    let row = t.groups * t.gp;
    // Distances between neighbouring panels' values and scales.
    let (next, next_s) = (row * NR, t.groups * NR);
    let mut f = [[_mm512_setzero_ps(); W]; R];
    for fr in f.iter_mut() {
        for (w, v) in fr.iter_mut().enumerate() {
            // SAFETY: `t.bias` holds `W * NR` values (`t.is_valid()`).
            *v = unsafe { _mm512_loadu_ps(t.bias.as_ptr().add(w * NR)) };
        }
    }
    let steps = t.gp / 4;
    let pf_step = t.pf.step(t.groups * steps);
    for g in 0..t.groups {
        let mut c = [[_mm512_setzero_si512(); W]; R];
        // SAFETY (whole block): `g < groups`, so each panel `w < W`'s group bytes at
        // `w * next + g * gp * NR` (`gp * NR` of them) and its 16 scales at
        // `w * next_s + g * NR`, and each row's `gp` bytes at `r * row + g * gp` and its sum and
        // scale at `r * groups + g`, lie inside the slices (`t.is_valid()`, `r < R <= rows`,
        // `w < W <= panels`); steps `s < gp / 4` stay within the group.
        unsafe {
            for (r, cr) in c.iter_mut().enumerate() {
                *cr = [_mm512_set1_epi32(-128 * *t.xsum.get_unchecked(r * t.groups + g)); W];
            }
            let wp = t.panel.as_ptr().add(g * t.gp * NR);
            let xp = t.xq.as_ptr().add(g * t.gp);
            for s in 0..steps {
                if t.pf.len != 0 {
                    t.pf.at(g * steps + s, pf_step);
                }
                let mut wv = [_mm512_setzero_si512(); W];
                for (w, v) in wv.iter_mut().enumerate() {
                    *v = _mm512_loadu_si512(wp.add(w * next + s * 4 * NR) as *const __m512i);
                }
                for (r, cr) in c.iter_mut().enumerate() {
                    let xv = (xp.add(r * row + 4 * s) as *const i32).read_unaligned();
                    let xb = _mm512_set1_epi32(xv);
                    for (cv, &v) in cr.iter_mut().zip(&wv) {
                        *cv = _mm512_dpbusd_epi32(*cv, v, xb);
                    }
                }
            }
            let mut sw = [_mm512_setzero_ps(); W];
            for (w, v) in sw.iter_mut().enumerate() {
                *v = _mm512_loadu_ps(t.ps.as_ptr().add(w * next_s + g * NR));
            }
            for (r, (cr, fr)) in c.iter().zip(f.iter_mut()).enumerate() {
                let sx = _mm512_set1_ps(*t.xs.get_unchecked(r * t.groups + g));
                for ((cv, &s), fv) in cr.iter().zip(&sw).zip(fr.iter_mut()) {
                    *fv = _mm512_fmadd_ps(_mm512_cvtepi32_ps(*cv), _mm512_mul_ps(sx, s), *fv);
                }
            }
        }
    }
    for (r, fr) in f.iter().enumerate() {
        for (w, fv) in fr.iter().enumerate() {
            // SAFETY: `dst` holds `R` rows of `16 * W` values (the caller).
            unsafe { _mm512_storeu_ps(dst.row(r).add(w * NR), *fv) };
        }
    }
}
