//! The AArch64 int8 microkernel: NEON with the dot-product extension (`sdot`, Armv8.2's
//! `dotprod`: Graviton 2 and later, Ampere Altra, Apple M1 and later), chosen at run time.
//!
//! The panel layout is the AVX2 kernel's (signed weights, no offset): per step of 4 input
//! channels, 64 bytes, column `c`'s four values at `4c..4c + 4`. One `sdot` multiplies a
//! 16-byte quarter of a step (4 columns × 4 channels) by a row's 4 activation bytes broadcast to
//! every lane, and adds each column's four products to its i32 lane: 4 `sdot` per row and step,
//! both operands signed with their full 8 bits, no saturation anywhere.
//!
//! `sdot` is written with `asm!` because its intrinsics (`vdotq_s32`) are still unstable in Rust
//! (`stdarch_neon_dotprod`); everything else uses the stable NEON intrinsics. `scripts/test.sh`
//! cross-builds the kernel tests for `aarch64-unknown-linux-gnu` and runs them under qemu-user,
//! where this kernel meets the portable one.

use std::arch::aarch64::*;
use std::arch::asm;

use super::{Dst, Tile, NR};

/// Most rows per call: 3 rows × 4 i32 sums, 3 × 4 f32 sums, 4 weight registers and a broadcast
/// use 29 of the 32 vector registers.
pub const ROWS: usize = 3;

/// Whether this CPU runs the kernel (NEON with `dotprod`).
pub fn detected() -> bool {
    std::arch::is_aarch64_feature_detected!("dotprod")
}

/// NEON `dotprod` tile (up to 3 rows, one panel, signed weights).
///
/// # Safety
/// The CPU must have `dotprod` (`detected()`); `dst` must be valid for `t.rows` rows of 16
/// values.
#[target_feature(enable = "neon,dotprod")]
pub unsafe fn tile(t: Tile<'_>, dst: Dst) {
    // The kernel's raw reads rely on it: a cheap check per tile.
    assert!(
        t.is_valid() && t.rows <= ROWS && t.panels == 1 && !t.offset,
        "malformed int8 tile"
    );
    // SAFETY: `t` is valid (checked above); the caller guarantees `dotprod` and `dst`.
    unsafe {
        match t.rows {
            3 => kernel::<3>(t, dst),
            2 => kernel::<2>(t, dst),
            _ => kernel::<1>(t, dst),
        }
    }
}

/// `acc + (4-byte groups of w) · (x's 4-byte groups)`, lane by lane.
#[inline(always)]
fn sdot(acc: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: `sdot` reads and writes only these registers; its callers run with `dotprod`
    // enabled (`kernel`'s target features).
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {w:v}.16b, {x:v}.16b",
            acc = inout(vreg) acc,
            w = in(vreg) w,
            x = in(vreg) x,
            options(pure, nomem, nostack, preserves_flags),
        )
    };
    acc
}

/// `R` rows × 16 columns; each group's i32 sums are scaled into the f32 sums at its end.
///
/// # Safety
/// As `tile`; `t` valid with `t.rows >= R`; `dst` valid for `R` rows of 16 values.
#[target_feature(enable = "neon,dotprod")]
unsafe fn kernel<const R: usize>(t: Tile<'_>, dst: Dst) {
    let row = t.groups * t.gp;
    // SAFETY: `t.bias` holds 16 values (`t.is_valid()`).
    let bias: [float32x4_t; 4] =
        std::array::from_fn(|q| unsafe { vld1q_f32(t.bias.as_ptr().add(4 * q)) });
    let mut f = [bias; R];
    for g in 0..t.groups {
        let mut c = [[vdupq_n_s32(0); 4]; R];
        // SAFETY (whole block): `g < groups`, so the group's `gp * NR` panel bytes, its 16
        // scales at `g * NR`, and each row's `gp` bytes at `r * row + g * gp` and scale at
        // `r * groups + g` lie inside the slices (`t.is_valid()`, `r < R <= rows`); steps
        // `s < gp / 4` stay within the group.
        unsafe {
            let wp = t.panel.as_ptr().add(g * t.gp * NR);
            let xp = t.xq.as_ptr().add(g * t.gp);
            for s in 0..t.gp / 4 {
                let w: [int8x16_t; 4] =
                    std::array::from_fn(|q| vld1q_s8(wp.add(s * 4 * NR + 16 * q)));
                for (r, cr) in c.iter_mut().enumerate() {
                    let x4 = xp.add(r * row + 4 * s).cast::<i32>().read_unaligned();
                    let xb = vreinterpretq_s8_s32(vdupq_n_s32(x4));
                    for (cv, &wv) in cr.iter_mut().zip(&w) {
                        *cv = sdot(*cv, wv, xb);
                    }
                }
            }
            let sw: [float32x4_t; 4] =
                std::array::from_fn(|q| vld1q_f32(t.ps.as_ptr().add(g * NR + 4 * q)));
            for (r, (fr, cr)) in f.iter_mut().zip(&c).enumerate() {
                let sx = vdupq_n_f32(*t.xs.get_unchecked(r * t.groups + g));
                for q in 0..4 {
                    fr[q] = vfmaq_f32(fr[q], vcvtq_f32_s32(cr[q]), vmulq_f32(sx, sw[q]));
                }
            }
        }
    }
    for (r, fr) in f.iter().enumerate() {
        for (q, v) in fr.iter().enumerate() {
            // SAFETY: `dst` holds `R` rows of 16 values (the caller).
            unsafe { vst1q_f32(dst.row(r).add(4 * q), *v) };
        }
    }
}
