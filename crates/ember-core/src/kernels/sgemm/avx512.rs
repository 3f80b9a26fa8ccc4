//! The AVX-512 f32 microkernel (built by Rust 1.89 or newer, see `build.rs`).
//!
//! A panel is 16 columns, one zmm register wide. The kernel takes two neighbouring panels at once
//! (32 columns) and up to `MR` = 12 rows: 24 accumulators, and per step of `k` two panel loads,
//! `R` broadcasts and `2R` FMAs, so every broadcast feeds two FMAs and the loads stay well under
//! the FMA rate. The packed layout is the AVX2 kernel's: a model packed once runs on either.

use std::any::TypeId;
use std::arch::x86_64::*;

use half::{bf16, f16};

use super::{Elem, Prefetch};

/// Output columns per call (two panels).
pub const NR: usize = 32;
/// Most input rows per call.
pub const MR: usize = 12;

/// Sixteen panel values at `p`, widened to f32.
trait Load: Elem {
    /// # Safety
    /// AVX-512 F must be available; `p .. p + 16` must be readable.
    unsafe fn load16(p: *const Self) -> __m512;
}

impl Load for f32 {
    #[inline(always)]
    unsafe fn load16(p: *const Self) -> __m512 {
        // SAFETY: the caller's promise.
        unsafe { _mm512_loadu_ps(p) }
    }
}

impl Load for f16 {
    #[inline(always)]
    unsafe fn load16(p: *const Self) -> __m512 {
        // SAFETY: the caller's promise: 16 × 2 bytes readable.
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
    }
}

impl Load for bf16 {
    #[inline(always)]
    unsafe fn load16(p: *const Self) -> __m512 {
        // SAFETY: the caller's promise: 16 × 2 bytes readable. bf16 is the top half of an f32.
        unsafe {
            let h = _mm512_cvtepu16_epi32(_mm256_loadu_si256(p.cast()));
            _mm512_castsi512_ps(_mm512_slli_epi32::<16>(h))
        }
    }
}

/// `acc[r][0..16 * panels] = sum_p xs[r * k + p] * panel_j[p, 0..16]` for `r < rows`, over
/// `panels` (1 or 2) neighbouring `[k, 16]` panels starting at `panel`.
///
/// # Safety
/// `has_avx512()` must hold.
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
pub unsafe fn tile<T: Elem>(
    xs: &[f32],
    k: usize,
    rows: usize,
    panel: &[T],
    panels: usize,
    acc: &mut [[f32; NR]; MR],
) {
    // SAFETY: `tile_to` checks the sizes; `acc` holds `MR` rows of `NR`; the CPU features are
    // the caller's promise.
    unsafe { tile_to(xs, k, rows, panel, panels, Prefetch::NONE, Out::acc(acc)) }
}

/// As `tile`, written to `out` (`rows` rows of `16 * panels` values, starting from `out.bias`
/// when it is set) instead of a buffer, with hints for `pf` along the way.
///
/// # Safety
/// `has_avx512()` must hold; `out` must be valid for `rows` rows of `16 * panels` values (and
/// its bias, if set, for `16 * panels` values).
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
pub unsafe fn tile_to<T: Elem>(
    xs: &[f32],
    k: usize,
    rows: usize,
    panel: &[T],
    panels: usize,
    pf: Prefetch,
    out: Out,
) {
    // The kernel's raw reads rely on these: a cheap check per tile.
    assert!(
        (1..=MR).contains(&rows)
            && (1..=2).contains(&panels)
            && xs.len() >= rows * k
            && panel.len() >= panels * k * 16,
        "malformed f32 tile"
    );
    let (a, b) = (xs.as_ptr(), panel.as_ptr());
    let at = Operands {
        lda: k,
        ldb: 16,
        next: k * 16,
        k,
    };
    // SAFETY: sizes checked above; `out` and the CPU features are the caller's promise. The
    // TypeId tests pick the one `Load` impl that matches `T` (the casts are then identities).
    unsafe {
        if TypeId::of::<T>() == TypeId::of::<f16>() {
            dispatch::<f16>(a, b.cast(), at, rows, panels, pf, out)
        } else if TypeId::of::<T>() == TypeId::of::<bf16>() {
            dispatch::<bf16>(a, b.cast(), at, rows, panels, pf, out)
        } else {
            dispatch::<f32>(a, b.cast(), at, rows, panels, pf, out)
        }
    }
}

/// Where the kernel writes: row `r` at `ptr + r * ld`; each row starts from the `16 * panels`
/// values at `bias` (zero when `bias` is null).
#[derive(Clone, Copy)]
pub struct Out {
    /// First value of the first row.
    pub ptr: *mut f32,
    /// Distance between rows.
    pub ld: usize,
    /// What every row starts from, or null for zero.
    pub bias: *const f32,
}

impl Out {
    /// The rows of `acc`, starting from zero.
    pub fn acc(acc: &mut [[f32; NR]; MR]) -> Self {
        Self {
            ptr: acc.as_mut_ptr().cast(),
            ld: NR,
            bias: std::ptr::null(),
        }
    }
}

/// Strides of one product: row `r` of `a` starts at `a + r * lda`; step `p` of panel `w` starts
/// at `b + w * next + p * ldb`; `k` steps.
#[derive(Clone, Copy)]
pub struct Operands {
    /// Distance between rows of `a`.
    pub lda: usize,
    /// Distance between steps of a panel.
    pub ldb: usize,
    /// Distance between the two panels.
    pub next: usize,
    /// Steps (the inner dimension).
    pub k: usize,
}

/// `out row r [16w .. 16w + 16] = sum_p a[r * lda + p] * b[w * next + p * ldb .. + 16]` for
/// `r < rows`, `w < panels`: the kernel on strided operands, for attention's score and context
/// products.
///
/// # Safety
/// `has_avx512()` must hold; every address named above must be readable and `out` writable for
/// `rows` rows of `16 * panels` values, with `rows <= MR` and `panels <= 2`.
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
pub unsafe fn block(
    a: *const f32,
    b: *const f32,
    at: Operands,
    rows: usize,
    panels: usize,
    out: Out,
) {
    assert!((1..=MR).contains(&rows) && (1..=2).contains(&panels));
    // SAFETY: forwarded from the caller.
    unsafe { dispatch::<f32>(a, b, at, rows, panels, Prefetch::NONE, out) }
}

#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn dispatch<T: Load>(
    a: *const f32,
    b: *const T,
    at: Operands,
    rows: usize,
    panels: usize,
    pf: Prefetch,
    out: Out,
) {
    macro_rules! by_rows {
        ($w:literal) => {
            match rows {
                12 => kernel::<T, 12, $w>(a, b, at, pf, out),
                11 => kernel::<T, 11, $w>(a, b, at, pf, out),
                10 => kernel::<T, 10, $w>(a, b, at, pf, out),
                9 => kernel::<T, 9, $w>(a, b, at, pf, out),
                8 => kernel::<T, 8, $w>(a, b, at, pf, out),
                7 => kernel::<T, 7, $w>(a, b, at, pf, out),
                6 => kernel::<T, 6, $w>(a, b, at, pf, out),
                5 => kernel::<T, 5, $w>(a, b, at, pf, out),
                4 => kernel::<T, 4, $w>(a, b, at, pf, out),
                3 => kernel::<T, 3, $w>(a, b, at, pf, out),
                2 => kernel::<T, 2, $w>(a, b, at, pf, out),
                _ => kernel::<T, 1, $w>(a, b, at, pf, out),
            }
        };
    }
    // SAFETY: forwarded from `tile` or `block`, whose callers vouch for the addresses.
    unsafe {
        if panels == 2 {
            by_rows!(2)
        } else {
            by_rows!(1)
        }
    }
}

/// `R` rows × `16 W` columns, hinting `pf` along the way (when set).
#[target_feature(enable = "avx512f,avx2,fma,f16c")]
unsafe fn kernel<T: Load, const R: usize, const W: usize>(
    a: *const f32,
    b: *const T,
    at: Operands,
    pf: Prefetch,
    out: Out,
) {
    let mut start = [_mm512_setzero_ps(); W];
    if !out.bias.is_null() {
        for (w, v) in start.iter_mut().enumerate() {
            // SAFETY: a set bias holds `16 * W` values (the callers' promise).
            *v = unsafe { _mm512_loadu_ps(out.bias.add(16 * w)) };
        }
    }
    let mut c = [start; R];
    let step = pf.step(at.k);
    for p in 0..at.k {
        if pf.len != 0 {
            pf.at(p, step);
        }
        // SAFETY: p < k, r < R, w < W: inside what the callers of `tile` / `block` vouched
        // readable.
        unsafe {
            let mut bw = [_mm512_setzero_ps(); W];
            for (w, v) in bw.iter_mut().enumerate() {
                *v = T::load16(b.add(w * at.next + p * at.ldb));
            }
            for (r, cr) in c.iter_mut().enumerate() {
                let x = _mm512_set1_ps(*a.add(r * at.lda + p));
                for (cv, &bv) in cr.iter_mut().zip(&bw) {
                    *cv = _mm512_fmadd_ps(x, bv, *cv);
                }
            }
        }
    }
    for (r, cr) in c.iter().enumerate() {
        for (w, cv) in cr.iter().enumerate() {
            // SAFETY: `out` holds `R` rows of `16 * W` values (the callers' promise).
            unsafe { _mm512_storeu_ps(out.ptr.add(r * out.ld + 16 * w), *cv) };
        }
    }
}
