//! f32 linear layers on weights packed once, at load, into column panels: `y = x W^T + b`.
//!
//! Hand-written because the general GEMMs (the `gemm` crate, BLAS) take `W` as it is stored and
//! re-pack it on every call. For an embedding model that is the wrong trade: the weights never
//! change, and a short query (15 tokens) spends as long packing a 384×1536 matrix as multiplying
//! by it. Here `W` (`[n, k]`) is stored as panels of `NR = 16` output columns, each `[k, 16]`
//! row-major, so the microkernel reads one panel front to back while `MR = 6` input rows are
//! broadcast against it: 12 AVX2 accumulators (6 rows × 2 × 8 lanes), two loads and six
//! broadcasts per 12 FMAs. Threads split the column panels (small `m`) or the row blocks
//! (large `m`), each writing disjoint parts of the output.
//!
//! f16 and bf16 weights are packed the same way and widened to f32 inside the microkernel as they
//! are loaded (F16C `vcvtph2ps`; bf16 is a 16-bit shift), so half-precision models keep half the
//! bytes and pay no per-call conversion.

use half::{bf16, f16};
use rayon::prelude::*;

use super::has_avx2;
use super::threads::num_threads;

/// Output columns per panel.
pub const NR: usize = 16;
/// Input rows per microkernel call.
pub const MR: usize = 6;
/// Rows per block of work: a block's rows of `x` stay in L2 while every panel streams past.
const MC: usize = 48;

/// Values a panel may hold: f32, or half floats widened as they are read.
pub trait Elem: Copy + Default + Send + Sync + 'static {
    fn from_f32(v: f32) -> Self;
    fn to_f32(self) -> f32;
}

impl Elem for f32 {
    fn from_f32(v: f32) -> Self {
        v
    }
    fn to_f32(self) -> f32 {
        self
    }
}

impl Elem for f16 {
    fn from_f32(v: f32) -> Self {
        f16::from_f32(v)
    }
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
}

impl Elem for bf16 {
    fn from_f32(v: f32) -> Self {
        bf16::from_f32(v)
    }
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
}

/// Panel storage in the weights' dtype.
#[derive(Debug, Clone)]
enum Panels {
    F32(Vec<f32>),
    F16(Vec<f16>),
    Bf16(Vec<bf16>),
}

/// `W` (`[n, k]`, PyTorch layout) in column panels: panel `j` holds `W[16j .. 16j+16, :]`
/// transposed, `[k, 16]` row-major, zero-padded past `n`; values in f32, f16 or bf16.
#[derive(Debug, Clone)]
pub struct PackedF32 {
    data: Panels,
    /// Output features.
    pub n: usize,
    /// Input features.
    pub k: usize,
}

fn pack_as<T: Elem, S: Copy>(w: &[S], n: usize, k: usize, conv: impl Fn(S) -> T) -> Vec<T> {
    let panels = n.div_ceil(NR);
    let mut data = vec![T::default(); panels * k * NR];
    for (j, panel) in data.chunks_exact_mut(k * NR).enumerate() {
        for c in 0..NR.min(n - j * NR) {
            let row = &w[(j * NR + c) * k..(j * NR + c + 1) * k];
            for (p, &v) in row.iter().enumerate() {
                panel[p * NR + c] = conv(v);
            }
        }
    }
    data
}

fn unpack_from<T: Elem>(data: &[T], n: usize, k: usize) -> Vec<f32> {
    let mut w = vec![0f32; n * k];
    for (j, panel) in data.chunks_exact(k * NR).enumerate() {
        for c in 0..NR.min(n - j * NR) {
            for p in 0..k {
                w[(j * NR + c) * k + p] = panel[p * NR + c].to_f32();
            }
        }
    }
    w
}

impl PackedF32 {
    /// Packs f32 `w` (`[n, k]` row-major).
    pub fn pack(w: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k, "w is not [n, k]");
        let data = Panels::F32(pack_as(w, n, k, |v| v));
        Self { data, n, k }
    }

    /// Packs f16 `w` (`[n, k]` row-major), kept in f16.
    pub fn pack_f16(w: &[f16], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k, "w is not [n, k]");
        let data = Panels::F16(pack_as(w, n, k, |v| v));
        Self { data, n, k }
    }

    /// Packs bf16 `w` (`[n, k]` row-major), kept in bf16.
    pub fn pack_bf16(w: &[bf16], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k, "w is not [n, k]");
        let data = Panels::Bf16(pack_as(w, n, k, |v| v));
        Self { data, n, k }
    }

    /// Back to `[n, k]` row-major f32 (for the candle-tensor path and tests).
    pub fn unpack(&self) -> Vec<f32> {
        match &self.data {
            Panels::F32(d) => unpack_from(d, self.n, self.k),
            Panels::F16(d) => unpack_from(d, self.n, self.k),
            Panels::Bf16(d) => unpack_from(d, self.n, self.k),
        }
    }

    /// Bytes held (padding included).
    pub fn bytes(&self) -> usize {
        match &self.data {
            Panels::F32(d) => d.len() * 4,
            Panels::F16(d) => d.len() * 2,
            Panels::Bf16(d) => d.len() * 2,
        }
    }
}

/// A raw output pointer that tasks writing disjoint parts of the output may share.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: only used by `linear`, whose tasks write disjoint (row block, panel) tiles.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    // A method, so closures capture the whole (Sync) wrapper rather than its raw field.
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `out[m, n] = x[m, k] · W^T + bias[n]` (`bias` may be empty).
pub fn linear(x: &[f32], w: &PackedF32, bias: &[f32], out: &mut [f32]) {
    match &w.data {
        Panels::F32(d) => linear_on(x, d, w.n, w.k, bias, out),
        Panels::F16(d) => linear_on(x, d, w.n, w.k, bias, out),
        Panels::Bf16(d) => linear_on(x, d, w.n, w.k, bias, out),
    }
}

fn linear_on<T: Elem>(x: &[f32], data: &[T], n: usize, k: usize, bias: &[f32], out: &mut [f32]) {
    assert!(k > 0, "k is 0");
    let m = x.len() / k;
    assert_eq!(x.len(), m * k, "x is not [m, k]");
    assert_eq!(out.len(), m * n, "out is not [m, n]");
    assert!(bias.is_empty() || bias.len() == n, "bias is not [n]");
    if m == 0 || n == 0 {
        return;
    }
    let panels = n.div_ceil(NR);
    assert_eq!(
        data.len(),
        panels * k * NR,
        "panels are not [n / 16, k, 16]"
    );
    let blocks = m.div_ceil(MC);
    let avx = has_avx2();
    let ptr = OutPtr(out.as_mut_ptr());
    // One task: row block `b`, panels `p0..p1`.
    let task = |b: usize, p0: usize, p1: usize| {
        let (r0, r1) = (b * MC, ((b + 1) * MC).min(m));
        for j in p0..p1 {
            let panel = &data[j * k * NR..(j + 1) * k * NR];
            let (c0, c1) = (j * NR, ((j + 1) * NR).min(n));
            let mut i = r0;
            while i < r1 {
                // Even tiles (15 rows: 5 + 5 + 5, not 6 + 6 + 3): a short last tile has too few
                // accumulators to hide the FMA latency.
                let left = r1 - i;
                let rows = left.div_ceil(left.div_ceil(MR));
                let mut acc = [[0f32; NR]; MR];
                let xs = &x[i * k..(i + rows) * k];
                #[cfg(target_arch = "x86_64")]
                if avx {
                    // SAFETY: AVX2 and FMA were detected; `xs` holds `rows` rows of `k` and
                    // `panel` holds `k * NR` values, as the kernel reads them.
                    unsafe { avx2::tile(xs, k, rows, panel, &mut acc) };
                } else {
                    tile(xs, k, rows, panel, &mut acc);
                }
                #[cfg(not(target_arch = "x86_64"))]
                {
                    let _ = avx;
                    tile(xs, k, rows, panel, &mut acc);
                }
                for (r, a) in acc.iter().take(rows).enumerate() {
                    let width = c1 - c0;
                    // SAFETY: row `i + r < m`, columns `c0..c1 <= n` of `out` (asserted
                    // `[m, n]`); this tile belongs to this task alone (tasks partition the
                    // rows into blocks and the columns into panels).
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(ptr.get().add((i + r) * n + c0), width)
                    };
                    if bias.is_empty() {
                        dst.copy_from_slice(&a[..width]);
                    } else {
                        for ((d, &v), &b) in dst.iter_mut().zip(&a[..width]).zip(&bias[c0..c1]) {
                            *d = v + b;
                        }
                    }
                }
                i += rows;
            }
        }
    };
    let threads = num_threads();
    if threads <= 1 || m * n * k < 1 << 17 {
        (0..blocks).for_each(|b| task(b, 0, panels));
    } else if blocks >= 2 * threads {
        (0..blocks).into_par_iter().for_each(|b| task(b, 0, panels));
    } else {
        // Few rows (a short query): every thread takes a share of the panels of each block.
        let share = panels.div_ceil(threads);
        (0..blocks * threads).into_par_iter().for_each(|t| {
            let (b, s) = (t / threads, t % threads);
            let p0 = (s * share).min(panels);
            task(b, p0, ((s + 1) * share).min(panels));
        });
    }
}

/// Portable tile: `acc[r][c] = sum_p xs[r, p] * panel[p, c]` for `rows` rows.
pub fn tile<T: Elem>(xs: &[f32], k: usize, rows: usize, panel: &[T], acc: &mut [[f32; NR]; MR]) {
    let mut w = [0f32; NR];
    for (p, wt) in panel.chunks_exact(NR).enumerate().take(k) {
        w.iter_mut().zip(wt).for_each(|(d, s)| *d = s.to_f32());
        for (r, a) in acc.iter_mut().enumerate().take(rows) {
            let v = xs[r * k + p];
            for (o, &wv) in a.iter_mut().zip(&w) {
                *o += v * wv;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::any::TypeId;
    use std::arch::x86_64::*;

    use half::{bf16, f16};

    use super::{Elem, MR, NR};

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
        acc: &mut [[f32; NR]; MR],
    ) {
        assert!(rows <= MR && xs.len() >= rows * k && panel.len() >= k * NR);
        let (a, b) = (xs.as_ptr(), panel.as_ptr());
        // SAFETY: sizes checked above; the CPU features are the caller's promise. The TypeId
        // tests pick the one `Load` impl that matches `T` (the casts are then identities).
        unsafe {
            if TypeId::of::<T>() == TypeId::of::<f16>() {
                rows_of::<f16>(a, k, b.cast(), NR, k, rows, acc)
            } else if TypeId::of::<T>() == TypeId::of::<bf16>() {
                rows_of::<bf16>(a, k, b.cast(), NR, k, rows, acc)
            } else {
                rows_of::<f32>(a, k, b.cast(), NR, k, rows, acc)
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
        unsafe { rows_of::<f32>(a, lda, b, ldb, k, rows, acc) }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn rows_of<T: Load>(
        a: *const f32,
        lda: usize,
        b: *const T,
        ldb: usize,
        k: usize,
        rows: usize,
        acc: &mut [[f32; NR]; MR],
    ) {
        // SAFETY: forwarded from the caller.
        unsafe {
            match rows {
                6 => kernel::<T, 6>(a, lda, b, ldb, k, acc),
                5 => kernel::<T, 5>(a, lda, b, ldb, k, acc),
                4 => kernel::<T, 4>(a, lda, b, ldb, k, acc),
                3 => kernel::<T, 3>(a, lda, b, ldb, k, acc),
                2 => kernel::<T, 2>(a, lda, b, ldb, k, acc),
                _ => kernel::<T, 1>(a, lda, b, ldb, k, acc),
            }
        }
    }

    /// `R` rows × 16 columns: per step, two `b` loads, `R` broadcasts, `2R` FMAs.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn kernel<T: Load, const R: usize>(
        a: *const f32,
        lda: usize,
        b: *const T,
        ldb: usize,
        k: usize,
        acc: &mut [[f32; NR]; MR],
    ) {
        let mut c = [[_mm256_setzero_ps(); 2]; R];
        for p in 0..k {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::test_data;

    fn reference(x: &[f32], w: &[f32], bias: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut out = vec![0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f64;
                for p in 0..k {
                    s += x[i * k + p] as f64 * w[j * k + p] as f64;
                }
                out[i * n + j] = s as f32 + bias.get(j).copied().unwrap_or(0.0);
            }
        }
        out
    }

    #[test]
    fn pack_round_trips() {
        let (n, k) = (37, 11);
        let w = test_data(n * k, 3, 1.0);
        assert_eq!(PackedF32::pack(&w, n, k).unpack(), w);
    }

    /// Odd shapes (partial panels, partial row tiles, blocks split across threads) and the
    /// model's shapes, with and without bias, against a float64 reference.
    #[test]
    fn linear_matches_the_reference() {
        for &(m, k, n) in &[
            (1, 1, 1),
            (5, 7, 3),
            (13, 33, 17),
            (15, 384, 1152),
            (49, 64, 100),
            (100, 129, 48),
            (200, 384, 384),
        ] {
            let x = test_data(m * k, 1, 1.0);
            let w = test_data(n * k, 2, 0.5);
            let b = test_data(n, 4, 0.5);
            let packed = PackedF32::pack(&w, n, k);
            for bias in [&b[..], &[]] {
                let want = reference(&x, &w, bias, m, k, n);
                let mut got = vec![f32::NAN; m * n];
                linear(&x, &packed, bias, &mut got);
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                        "{m}x{k}x{n}: {g} vs {w}"
                    );
                }
            }
        }
    }

    /// f16 and bf16 panels give the product of the rounded weights.
    #[test]
    fn half_panels_match_the_reference_of_rounded_weights() {
        let (m, k, n) = (13, 70, 35);
        let x = test_data(m * k, 1, 1.0);
        let w = test_data(n * k, 2, 0.5);
        let b = test_data(n, 4, 0.5);
        let w16: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
        let wb16: Vec<bf16> = w.iter().map(|&v| bf16::from_f32(v)).collect();
        for (packed, rounded) in [
            (
                PackedF32::pack_f16(&w16, n, k),
                w16.iter().map(|v| v.to_f32()).collect::<Vec<_>>(),
            ),
            (
                PackedF32::pack_bf16(&wb16, n, k),
                wb16.iter().map(|v| v.to_f32()).collect(),
            ),
        ] {
            assert_eq!(packed.bytes(), n.div_ceil(NR) * NR * k * 2);
            assert_eq!(packed.unpack(), rounded);
            let want = reference(&x, &rounded, &b, m, k, n);
            let mut got = vec![0f32; m * n];
            linear(&x, &packed, &b, &mut got);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{g} vs {w}");
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_tile_matches_the_portable_one() {
        if !has_avx2() {
            return;
        }
        let k = 77;
        let panel = test_data(k * NR, 5, 1.0);
        let xs = test_data(MR * k, 6, 1.0);
        let p16: Vec<f16> = panel.iter().map(|&v| f16::from_f32(v)).collect();
        let pb16: Vec<bf16> = panel.iter().map(|&v| bf16::from_f32(v)).collect();
        for rows in 1..=MR {
            let mut a = [[0f32; NR]; MR];
            let mut b = [[0f32; NR]; MR];
            tile(&xs, k, rows, &panel, &mut a);
            // SAFETY: AVX2 checked above; sizes as the tile requires.
            unsafe { avx2::tile(&xs, k, rows, &panel, &mut b) };
            let (mut c, mut d) = ([[0f32; NR]; MR], [[0f32; NR]; MR]);
            tile(&xs, k, rows, &p16, &mut c);
            // SAFETY: as above.
            unsafe { avx2::tile(&xs, k, rows, &p16, &mut d) };
            let (mut e, mut f) = ([[0f32; NR]; MR], [[0f32; NR]; MR]);
            tile(&xs, k, rows, &pb16, &mut e);
            // SAFETY: as above.
            unsafe { avx2::tile(&xs, k, rows, &pb16, &mut f) };
            let pairs = c
                .iter()
                .zip(&d)
                .take(rows)
                .chain(e.iter().zip(&f).take(rows));
            for (x, y) in pairs {
                for (u, v) in x.iter().zip(y) {
                    assert!((u - v).abs() <= 1e-4 * (1.0 + u.abs()), "half rows {rows}");
                }
            }
            for (ra, rb) in a.iter().zip(&b).take(rows) {
                for (va, vb) in ra.iter().zip(rb) {
                    assert!((va - vb).abs() <= 1e-4 * (1.0 + va.abs()), "rows {rows}");
                }
            }
        }
    }
}
