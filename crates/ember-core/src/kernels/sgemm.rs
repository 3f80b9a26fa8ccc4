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

use rayon::prelude::*;

use super::has_avx2;
use super::threads::num_threads;

/// Output columns per panel.
pub const NR: usize = 16;
/// Input rows per microkernel call.
pub const MR: usize = 6;
/// Rows per block of work: a block's rows of `x` stay in L2 while every panel streams past.
const MC: usize = 48;

/// `W` (`[n, k]`, PyTorch layout) in column panels: panel `j` holds `W[16j .. 16j+16, :]`
/// transposed, `[k, 16]` row-major, zero-padded past `n`.
#[derive(Debug, Clone)]
pub struct PackedF32 {
    data: Vec<f32>,
    /// Output features.
    pub n: usize,
    /// Input features.
    pub k: usize,
}

impl PackedF32 {
    /// Packs `w` (`[n, k]` row-major).
    pub fn pack(w: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k, "w is not [n, k]");
        let panels = n.div_ceil(NR);
        let mut data = vec![0f32; panels * k * NR];
        for (j, panel) in data.chunks_exact_mut(k * NR).enumerate() {
            for c in 0..NR.min(n - j * NR) {
                let row = &w[(j * NR + c) * k..(j * NR + c + 1) * k];
                for (p, &v) in row.iter().enumerate() {
                    panel[p * NR + c] = v;
                }
            }
        }
        Self { data, n, k }
    }

    /// Back to `[n, k]` row-major (for the candle-tensor path and tests).
    pub fn unpack(&self) -> Vec<f32> {
        let (n, k) = (self.n, self.k);
        let mut w = vec![0f32; n * k];
        for (j, panel) in self.data.chunks_exact(k * NR).enumerate() {
            for c in 0..NR.min(n - j * NR) {
                for p in 0..k {
                    w[(j * NR + c) * k + p] = panel[p * NR + c];
                }
            }
        }
        w
    }

    /// Bytes held (padding included).
    pub fn bytes(&self) -> usize {
        self.data.len() * 4
    }

    fn panel(&self, j: usize) -> &[f32] {
        &self.data[j * self.k * NR..(j + 1) * self.k * NR]
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
    let (n, k) = (w.n, w.k);
    assert!(k > 0, "k is 0");
    let m = x.len() / k;
    assert_eq!(x.len(), m * k, "x is not [m, k]");
    assert_eq!(out.len(), m * n, "out is not [m, n]");
    assert!(bias.is_empty() || bias.len() == n, "bias is not [n]");
    if m == 0 || n == 0 {
        return;
    }
    let panels = n.div_ceil(NR);
    let blocks = m.div_ceil(MC);
    let avx = has_avx2();
    let ptr = OutPtr(out.as_mut_ptr());
    // One task: row block `b`, panels `p0..p1`.
    let task = |b: usize, p0: usize, p1: usize| {
        let (r0, r1) = (b * MC, ((b + 1) * MC).min(m));
        for j in p0..p1 {
            let panel = w.panel(j);
            let (c0, c1) = (j * NR, ((j + 1) * NR).min(n));
            let mut i = r0;
            while i < r1 {
                let rows = MR.min(r1 - i);
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
pub fn tile(xs: &[f32], k: usize, rows: usize, panel: &[f32], acc: &mut [[f32; NR]; MR]) {
    for (p, w) in panel.chunks_exact(NR).enumerate().take(k) {
        for (r, a) in acc.iter_mut().enumerate().take(rows) {
            let v = xs[r * k + p];
            for (o, &wv) in a.iter_mut().zip(w) {
                *o += v * wv;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    use super::{MR, NR};

    /// AVX2 tile; dispatches to a kernel unrolled for the row count.
    ///
    /// # Safety
    /// AVX2 and FMA must be available; `xs.len() >= rows * k`, `panel.len() >= k * NR`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile(
        xs: &[f32],
        k: usize,
        rows: usize,
        panel: &[f32],
        acc: &mut [[f32; NR]; MR],
    ) {
        assert!(rows <= MR && xs.len() >= rows * k && panel.len() >= k * NR);
        // SAFETY: the sizes were just checked; AVX2 is the caller's promise.
        unsafe { block(xs.as_ptr(), k, panel.as_ptr(), NR, k, rows, acc) }
    }

    /// `acc[r][0..16] = sum_p a[r * lda + p] * b[p * ldb .. p * ldb + 16]` for `r < rows`:
    /// the microkernel behind the GEMM and attention's score and context products.
    ///
    /// # Safety
    /// AVX2 and FMA must be available; `a + r * lda + p` and `b + p * ldb + 0..16` must be
    /// readable for every `r < rows <= MR` and `p < k`.
    #[target_feature(enable = "avx2,fma")]
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
        unsafe {
            match rows {
                6 => kernel::<6>(a, lda, b, ldb, k, acc),
                5 => kernel::<5>(a, lda, b, ldb, k, acc),
                4 => kernel::<4>(a, lda, b, ldb, k, acc),
                3 => kernel::<3>(a, lda, b, ldb, k, acc),
                2 => kernel::<2>(a, lda, b, ldb, k, acc),
                _ => kernel::<1>(a, lda, b, ldb, k, acc),
            }
        }
    }

    /// `R` rows × 16 columns: per step, two `b` loads, `R` broadcasts, `2R` FMAs.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn kernel<const R: usize>(
        a: *const f32,
        lda: usize,
        b: *const f32,
        ldb: usize,
        k: usize,
        acc: &mut [[f32; NR]; MR],
    ) {
        let mut c = [[_mm256_setzero_ps(); 2]; R];
        for p in 0..k {
            // SAFETY: p < k and r < R: inside what the caller promised readable.
            unsafe {
                let b0 = _mm256_loadu_ps(b.add(p * ldb));
                let b1 = _mm256_loadu_ps(b.add(p * ldb + 8));
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

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_tile_matches_the_portable_one() {
        if !has_avx2() {
            return;
        }
        let k = 77;
        let panel = test_data(k * NR, 5, 1.0);
        let xs = test_data(MR * k, 6, 1.0);
        for rows in 1..=MR {
            let mut a = [[0f32; NR]; MR];
            let mut b = [[0f32; NR]; MR];
            tile(&xs, k, rows, &panel, &mut a);
            // SAFETY: AVX2 checked above; sizes as the tile requires.
            unsafe { avx2::tile(&xs, k, rows, &panel, &mut b) };
            for (ra, rb) in a.iter().zip(&b).take(rows) {
                for (va, vb) in ra.iter().zip(rb) {
                    assert!((va - vb).abs() <= 1e-4 * (1.0 + va.abs()), "rows {rows}");
                }
            }
        }
    }
}
