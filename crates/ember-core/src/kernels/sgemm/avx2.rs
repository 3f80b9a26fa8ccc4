//! The AVX2 + FMA f32 microkernel: 6 rows × one 16-column panel, two loads and six broadcasts
//! per 12 FMAs; f16 / bf16 panels are widened as they are loaded. Attention's score and context
//! products run on it too (`block`).

use std::any::TypeId;
use std::arch::x86_64::*;

use half::{bf16, f16};

use super::{Elem, Prefetch, MR, NR};

/// Eight panel values at `p`, widened to f32.
trait Load: Elem {
    /// # Safety
    /// AVX2 (and F16C for f16) must be available; `p .. p + 8` must be readable.
    unsafe fn load8(p: *const Self) -> __m256;
}

impl Load for f32 {
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> __m256 {
        // SAFETY: the caller's promise.
        unsafe { _mm256_loadu_ps(p) }
    }
}

impl Load for f16 {
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> __m256 {
        // SAFETY: the caller's promise: 8 × 2 bytes readable, F16C available.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
    }
}

impl Load for bf16 {
    #[inline(always)]
    unsafe fn load8(p: *const Self) -> __m256 {
        // SAFETY: the caller's promise: 8 × 2 bytes readable. bf16 is the top half of an
        // f32: widen to 32 bits and shift into place.
        unsafe {
            let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast()));
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(h))
        }
    }
}

/// AVX2 tile over a panel of `T`; dispatches to a kernel unrolled for the row count.
///
/// # Safety
/// `has_avx2()` must hold; `xs.len() >= rows * k`, `panel.len() >= k * NR`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn tile<T: Elem>(
    xs: &[f32],
    k: usize,
    rows: usize,
    panel: &[T],
    pf: Prefetch,
    acc: &mut [[f32; NR]; MR],
) {
    assert!(rows <= MR && xs.len() >= rows * k && panel.len() >= k * NR);
    let (a, b) = (xs.as_ptr(), panel.as_ptr());
    // SAFETY: sizes checked above; the CPU features are the caller's promise. The TypeId
    // tests pick the one `Load` impl that matches `T` (the casts are then identities).
    unsafe {
        if TypeId::of::<T>() == TypeId::of::<f16>() {
            rows_of::<f16>(a, k, b.cast(), NR, k, rows, pf, acc)
        } else if TypeId::of::<T>() == TypeId::of::<bf16>() {
            rows_of::<bf16>(a, k, b.cast(), NR, k, rows, pf, acc)
        } else {
            rows_of::<f32>(a, k, b.cast(), NR, k, rows, pf, acc)
        }
    }
}

/// `acc[r][0..16] = sum_p a[r * lda + p] * b[p * ldb .. p * ldb + 16]` for `r < rows`:
/// the microkernel behind the GEMM and attention's score and context products.
///
/// # Safety
/// AVX2 and FMA must be available; `a + r * lda + p` and `b + p * ldb + 0..16` must be
/// readable for every `r < rows <= MR` and `p < k`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn block(
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    k: usize,
    rows: usize,
    acc: &mut [[f32; NR]; MR],
) {
    // SAFETY: forwarded from the caller.
    unsafe { rows_of::<f32>(a, lda, b, ldb, k, rows, Prefetch::NONE, acc) }
}

#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn rows_of<T: Load>(
    a: *const f32,
    lda: usize,
    b: *const T,
    ldb: usize,
    k: usize,
    rows: usize,
    pf: Prefetch,
    acc: &mut [[f32; NR]; MR],
) {
    macro_rules! by_rows {
        ($pf:literal) => {
            match rows {
                6 => kernel::<T, 6, $pf>(a, lda, b, ldb, k, pf, acc),
                5 => kernel::<T, 5, $pf>(a, lda, b, ldb, k, pf, acc),
                4 => kernel::<T, 4, $pf>(a, lda, b, ldb, k, pf, acc),
                3 => kernel::<T, 3, $pf>(a, lda, b, ldb, k, pf, acc),
                2 => kernel::<T, 2, $pf>(a, lda, b, ldb, k, pf, acc),
                _ => kernel::<T, 1, $pf>(a, lda, b, ldb, k, pf, acc),
            }
        };
    }
    // SAFETY: forwarded from the caller.
    unsafe {
        if pf.len == 0 {
            by_rows!(false)
        } else {
            by_rows!(true)
        }
    }
}

/// `R` rows × 16 columns: per step, two `b` loads, `R` broadcasts, `2R` FMAs (and with `PF`, one
/// prefetch hint into `pf`).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn kernel<T: Load, const R: usize, const PF: bool>(
    a: *const f32,
    lda: usize,
    b: *const T,
    ldb: usize,
    k: usize,
    pf: Prefetch,
    acc: &mut [[f32; NR]; MR],
) {
    let mut c = [[_mm256_setzero_ps(); 2]; R];
    let step = if PF { pf.step(k) } else { 0 };
    for p in 0..k {
        if PF {
            pf.at(p, step);
        }
        // SAFETY: p < k and r < R: inside what the caller promised readable.
        unsafe {
            let b0 = T::load8(b.add(p * ldb));
            let b1 = T::load8(b.add(p * ldb + 8));
            for (r, cr) in c.iter_mut().enumerate() {
                let x = _mm256_broadcast_ss(&*a.add(r * lda + p));
                cr[0] = _mm256_fmadd_ps(x, b0, cr[0]);
                cr[1] = _mm256_fmadd_ps(x, b1, cr[1]);
            }
        }
    }
    for (cr, out) in c.iter().zip(acc.iter_mut()) {
        // SAFETY: each `out` row is 16 f32 wide.
        unsafe {
            _mm256_storeu_ps(out.as_mut_ptr(), cr[0]);
            _mm256_storeu_ps(out.as_mut_ptr().add(8), cr[1]);
        }
    }
}
