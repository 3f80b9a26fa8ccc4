//! f32 linear layers on weights packed once, at load, into column panels: `y = x W^T + b`.
//!
//! Hand-written because the general GEMMs (the `gemm` crate, BLAS) take `W` as it is stored and
//! re-pack it on every call. For an embedding model that is the wrong trade: the weights never
//! change, and a short query (15 tokens) spends as long packing a 384×1536 matrix as multiplying
//! by it. Here `W` (`[n, k]`) is stored as panels of `NR = 16` output columns, each `[k, 16]`
//! row-major, so a microkernel reads panels front to back while input rows are broadcast against
//! them. The AVX2 kernel (`avx2`) takes 6 rows × one panel: 12 accumulators of 8 lanes, two loads
//! and six broadcasts per 12 FMAs. The AVX-512 kernel (`avx512`) takes 12 rows × two panels: 24
//! accumulators of 16 lanes, two loads and 12 broadcasts per 24 FMAs. Which one runs is decided
//! at run time. Threads split the column panels (small `m`) or the row blocks (large `m`), each
//! writing disjoint parts of the output.
//!
//! A model's weights do not fit the L3 cache, so a short input streams them from memory on every
//! call. The tiles over a panel each prefetch a share of the next panel (`Prefetch`), which keeps
//! memory busy while they compute instead of leaving the first tile to wait for it: a 15-token
//! query's p50 went from 1.62–1.88 ms to 0.87–1.46 ms on AVX-512 and from 2.66–2.79 ms to
//! 1.63–1.95 ms on AVX2 (`examples/embed_queries`, old and new binaries in turn, 2026-11-24),
//! with batch 32 unchanged.
//!
//! f16 and bf16 weights are packed the same way and widened to f32 inside the microkernel as they
//! are loaded (F16C `vcvtph2ps`; bf16 is a 16-bit shift), so half-precision models keep half the
//! bytes and pay no per-call conversion.

use half::{bf16, f16};
use rayon::prelude::*;

use super::threads::num_threads;
use super::{Prefetch, Simd};

// Built only where `build.rs` found Rust 1.89+ (the AVX-512 intrinsics' release), so the lint's
// MSRV warning does not apply.
#[cfg(all(target_arch = "x86_64", ember_avx512))]
#[allow(clippy::incompatible_msrv)]
pub(crate) mod avx512;

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

impl Simd {
    /// Panels one microkernel call covers.
    fn panels_per_call(self) -> usize {
        match self {
            #[cfg(all(target_arch = "x86_64", ember_avx512))]
            Simd::Avx512 => 2,
            _ => 1,
        }
    }
}

/// One GEMM's operands, shared by the tasks that each fill a (row block, panel range) of `out`.
struct Job<'a, T> {
    x: &'a [f32],
    data: &'a [T],
    n: usize,
    k: usize,
    bias: &'a [f32],
    out: OutPtr,
}

/// Splits `left` rows into even tiles of at most `most` (15 rows with 6 at most: 5 + 5 + 5, not
/// 6 + 6 + 3): a short last tile has too few accumulators to hide the FMA latency.
fn tile_rows(left: usize, most: usize) -> usize {
    left.div_ceil(left.div_ceil(most))
}

impl<T: Elem> Job<'_, T> {
    /// Writes `acc`'s first `rows` rows, columns `c0..c1`, to `out` at row `i`, adding the bias.
    fn store<const W: usize>(&self, i: usize, acc: &[[f32; W]], c0: usize, c1: usize) {
        let width = c1 - c0;
        for (r, a) in acc.iter().enumerate() {
            // SAFETY: row `i + r < m`, columns `c0..c1 <= n` of `out` (asserted `[m, n]` by
            // `linear_on`); this tile belongs to this task alone (tasks partition the rows into
            // blocks and the columns into panels).
            let dst = unsafe {
                std::slice::from_raw_parts_mut(self.out.get().add((i + r) * self.n + c0), width)
            };
            if self.bias.is_empty() {
                dst.copy_from_slice(&a[..width]);
            } else {
                for ((d, &v), &b) in dst.iter_mut().zip(&a[..width]).zip(&self.bias[c0..c1]) {
                    *d = v + b;
                }
            }
        }
    }

    /// Rows `rows` × panels `p0..p1` on the 16-column kernels (AVX2 or portable).
    fn narrow(&self, path: Simd, rows: std::ops::Range<usize>, p0: usize, p1: usize) {
        let (k, n) = (self.k, self.n);
        let tiles = rows.len().div_ceil(MR);
        for j in p0..p1 {
            let panel = &self.data[j * k * NR..(j + 1) * k * NR];
            // The panel after this one, which the tiles over this one prefetch in shares.
            let next = self
                .data
                .get((j + 1) * k * NR..(j + 2) * k * NR)
                .unwrap_or(&[]);
            let (c0, c1) = (j * NR, ((j + 1) * NR).min(n));
            let mut i = rows.start;
            let mut t = 0;
            while i < rows.end {
                let h = tile_rows(rows.end - i, MR);
                let mut acc = [[0f32; NR]; MR];
                let xs = &self.x[i * k..(i + h) * k];
                #[cfg(target_arch = "x86_64")]
                if path != Simd::Portable {
                    let pf = Prefetch::share(next, t, tiles);
                    // SAFETY: AVX2, FMA and F16C were detected (every path but the portable one
                    // implies them); `xs` holds `h` rows of `k` and `panel` `k * NR` values.
                    unsafe { avx2::tile(xs, k, h, panel, pf, &mut acc) };
                } else {
                    tile(xs, k, h, panel, &mut acc);
                }
                #[cfg(not(target_arch = "x86_64"))]
                {
                    let _ = path;
                    tile(xs, k, h, panel, &mut acc);
                }
                self.store(i, &acc[..h], c0, c1);
                i += h;
                t += 1;
            }
        }
    }

    /// Rows `rows` × panels `p0..p1` on the AVX-512 kernel, two panels per call.
    ///
    /// # Safety
    /// `has_avx512()` must hold.
    #[cfg(all(target_arch = "x86_64", ember_avx512))]
    unsafe fn avx512(&self, rows: std::ops::Range<usize>, p0: usize, p1: usize) {
        use avx512::{MR as MR512, NR as NR512};
        let (k, n) = (self.k, self.n);
        let tiles = rows.len().div_ceil(MR512);
        let mut j = p0;
        while j < p1 {
            let panels = (p1 - j).min(2);
            let block = &self.data[j * k * NR..(j + panels) * k * NR];
            // The two panels after these, which the tiles over these prefetch in shares.
            let next = self.data[(j + panels) * k * NR..]
                .get(..2 * k * NR)
                .unwrap_or(&[]);
            let (c0, c1) = (j * NR, ((j + panels) * NR).min(n));
            let whole = c1 - c0 == panels * NR;
            let mut i = rows.start;
            let mut t = 0;
            while i < rows.end {
                let pf = Prefetch::share(next, t, tiles);
                let h = tile_rows(rows.end - i, MR512);
                let xs = &self.x[i * k..(i + h) * k];
                if whole {
                    // Whole panels: straight into the output, starting from the bias.
                    let out = avx512::Out {
                        ptr: self.out.get().wrapping_add(i * n + c0),
                        ld: n,
                        bias: match self.bias.is_empty() {
                            true => std::ptr::null(),
                            false => self.bias[c0..c1].as_ptr(),
                        },
                    };
                    // SAFETY: the caller's promise of AVX-512; `tile_to` checks the sizes; rows
                    // `i..i + h < m`, columns `c0..c1 <= n` of `out` (asserted `[m, n]` by
                    // `linear_on`) are this task's alone (tasks partition the rows into blocks
                    // and the columns into panels); the bias holds `c1 - c0` values.
                    unsafe { avx512::tile_to(xs, k, h, block, panels, pf, out) };
                } else {
                    let mut acc = [[0f32; NR512]; MR512];
                    // SAFETY: the caller's promise of AVX-512; `tile` checks the sizes.
                    unsafe { avx512::tile(xs, k, h, block, panels, &mut acc) };
                    self.store(i, &acc[..h], c0, c1);
                }
                i += h;
                t += 1;
            }
            j += panels;
        }
    }
}

/// `out[m, n] = x[m, k] · W^T + bias[n]` (`bias` may be empty).
pub fn linear(x: &[f32], w: &PackedF32, bias: &[f32], out: &mut [f32]) {
    match &w.data {
        Panels::F32(d) => linear_on(Simd::detect(), x, d, w.n, w.k, bias, out),
        Panels::F16(d) => linear_on(Simd::detect(), x, d, w.n, w.k, bias, out),
        Panels::Bf16(d) => linear_on(Simd::detect(), x, d, w.n, w.k, bias, out),
    }
}

/// `linear` on the kernels of `path` (which the CPU must run).
fn linear_on<T: Elem>(
    path: Simd,
    x: &[f32],
    data: &[T],
    n: usize,
    k: usize,
    bias: &[f32],
    out: &mut [f32],
) {
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
    let ptr = OutPtr(out.as_mut_ptr());
    // One task: row block `b`, panels `p0..p1`.
    let task = |b: usize, p0: usize, p1: usize| {
        let rows = b * MC..((b + 1) * MC).min(m);
        let job = Job {
            x,
            data,
            n,
            k,
            bias,
            out: ptr,
        };
        match path {
            #[cfg(all(target_arch = "x86_64", ember_avx512))]
            // SAFETY: AVX-512 F (and AVX2, FMA, F16C) were detected.
            Simd::Avx512 => unsafe { job.avx512(rows, p0, p1) },
            _ => job.narrow(path, rows, p0, p1),
        }
    };
    let threads = num_threads();
    if threads <= 1 || m * n * k < 1 << 17 {
        (0..blocks).for_each(|b| task(b, 0, panels));
    } else if blocks >= 2 * threads {
        (0..blocks).into_par_iter().for_each(|b| task(b, 0, panels));
    } else {
        // Few rows (a short query): every thread takes a share of the panels of each block.
        // Whole pairs of panels per thread when the kernel takes two at a time.
        let share = panels
            .div_ceil(threads)
            .next_multiple_of(path.panels_per_call());
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
pub(crate) mod avx2;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{has_avx2, test_data};

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

    /// Odd shapes (partial panels, odd panel counts, partial row tiles, blocks split across
    /// threads) and the model's shapes, with and without bias, on every path this CPU runs,
    /// against a float64 reference.
    #[test]
    fn linear_matches_the_reference() {
        for &(m, k, n) in &[
            (1, 1, 1),
            (5, 7, 3),
            (13, 33, 17),
            (14, 20, 80),
            (15, 384, 1152),
            (27, 40, 16 * 7),
            (49, 64, 100),
            (100, 129, 48),
            (200, 384, 384),
        ] {
            let x = test_data(m * k, 1, 1.0);
            let w = test_data(n * k, 2, 0.5);
            let b = test_data(n, 4, 0.5);
            let packed = PackedF32::pack(&w, n, k);
            let Panels::F32(data) = &packed.data else {
                unreachable!("f32 weights pack as f32")
            };
            for bias in [&b[..], &[]] {
                let want = reference(&x, &w, bias, m, k, n);
                for path in Simd::available() {
                    let mut got = vec![f32::NAN; m * n];
                    linear_on(path, &x, data, n, k, bias, &mut got);
                    for (g, w) in got.iter().zip(&want) {
                        assert!(
                            (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                            "{path:?} {m}x{k}x{n}: {g} vs {w}"
                        );
                    }
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
            unsafe { avx2::tile(&xs, k, rows, &panel, Prefetch::share(&panel, 0, 1), &mut b) };
            let (mut c, mut d) = ([[0f32; NR]; MR], [[0f32; NR]; MR]);
            tile(&xs, k, rows, &p16, &mut c);
            // SAFETY: as above.
            unsafe { avx2::tile(&xs, k, rows, &p16, Prefetch::NONE, &mut d) };
            let (mut e, mut f) = ([[0f32; NR]; MR], [[0f32; NR]; MR]);
            tile(&xs, k, rows, &pb16, &mut e);
            // SAFETY: as above.
            unsafe { avx2::tile(&xs, k, rows, &pb16, Prefetch::NONE, &mut f) };
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

    /// The AVX-512 kernel (rows 1..=12, one or two panels, f32/f16/bf16 panels) against the
    /// portable tile on the same inputs.
    #[cfg(all(target_arch = "x86_64", ember_avx512))]
    #[test]
    fn avx512_tile_matches_the_portable_one() {
        use avx512::{MR as MR512, NR as NR512};
        if !crate::kernels::has_avx512() {
            return;
        }
        let k = 77;
        let panels = test_data(2 * k * NR, 5, 1.0);
        let xs = test_data(MR512 * k, 6, 1.0);
        let p16: Vec<f16> = panels.iter().map(|&v| f16::from_f32(v)).collect();
        let pb16: Vec<bf16> = panels.iter().map(|&v| bf16::from_f32(v)).collect();
        fn check<T: Elem>(xs: &[f32], k: usize, panels: &[T]) {
            for rows in 1..=MR512 {
                for count in 1..=2 {
                    let mut got = [[f32::NAN; NR512]; MR512];
                    // SAFETY: AVX-512 checked by the caller; the tile checks the sizes.
                    unsafe { avx512::tile(xs, k, rows, panels, count, &mut got) };
                    for j in 0..count {
                        let panel = &panels[j * k * NR..(j + 1) * k * NR];
                        // The portable tile takes at most MR rows at a time.
                        for r0 in (0..rows).step_by(MR) {
                            let h = (rows - r0).min(MR);
                            let mut want = [[0f32; NR]; MR];
                            tile(&xs[r0 * k..], k, h, panel, &mut want);
                            for r in 0..h {
                                for c in 0..NR {
                                    let (u, v) = (want[r][c], got[r0 + r][j * NR + c]);
                                    assert!(
                                        (u - v).abs() <= 1e-4 * (1.0 + u.abs()),
                                        "rows {rows} panels {count}: {u} vs {v}"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
        check(&xs, k, &panels);
        check(&xs, k, &p16);
        check(&xs, k, &pb16);
    }
}
