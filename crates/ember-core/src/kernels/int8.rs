//! Integer GEMM for int8 linear layers, `y = x W^T + b`, on weights packed once at load.
//!
//! Weights are symmetric int8 with one f32 scale per output column and group of `group` input
//! channels (`models::quant::INT8_GROUP`); activations are quantized per call to symmetric int8
//! with one scale per row and group (`quantize_rows`), so both scales multiply a group's i32 sum
//! and an outlier channel costs only its own group its precision. Products accumulate in i32
//! within a group and in f32 across groups.
//!
//! Layout (`PackedInt8`): panels of `NR = 16` output columns; inside a panel, group by group, each
//! step of 4 consecutive input channels is 64 bytes, column `c`'s four values at `4c..4c + 4`.
//! Groups are zero-padded to a multiple of 4. The AVX2 microkernel (`MR = 4` rows × 16 columns,
//! 8 i32 accumulators) broadcasts 4 activation bytes of a row against the two 32-byte halves of a
//! step, so one `vpmaddubsw` + `vpmaddwd` makes 8 columns' 4-term dot products.
//!
//! `vpmaddubsw` multiplies unsigned by signed bytes and saturates its i16 pair sums. We use the
//! sign trick, `|x| * sign(w, x)` (`vpabsb` once per row and step, `vpsignb` per product): both
//! operands stay within 127, so a pair sum is at most 2 · 127 · 127 = 32 258 and never saturates,
//! and both operands keep their full 8 bits. The alternative (activations offset to u8 with
//! column sums subtracted) saves the `vpsignb` but needs one operand cut to 7 bits to avoid
//! saturation, doubling that operand's rounding error; `vpsignb` runs on a vector ALU port while
//! the two multiplies per product share the two multiply ports, so it costs little throughput.
//! AVX-512-VNNI (`vpdpbusd`) and NEON (`sdot`) would replace the three-instruction product with
//! one; neither is on the machines we test on, so they are left for when they can be tested.

use rayon::prelude::*;

use super::has_avx2;
use super::threads::num_threads;

/// Output columns per panel.
pub const NR: usize = 16;
/// Input rows per microkernel call.
pub const MR: usize = 4;
/// Rows per block of work (a multiple of `MR`): the block's activations stay in L1/L2 while
/// every panel streams past.
const MC: usize = 48;
/// Largest group: `group` products of at most 127 · 127 must fit an i32 sum.
const MAX_GROUP: usize = 1 << 16;

/// Whether the integer kernel handles `cols` input features in groups of `group`.
pub fn supports(cols: usize, group: usize) -> bool {
    group > 0 && group <= MAX_GROUP && cols % group == 0
}

/// A group's length in the packed layouts: zero-padded to whole steps of 4.
fn padded(group: usize) -> usize {
    group.next_multiple_of(4)
}

/// Activations quantized per row and group, in the layout the kernel reads.
#[derive(Debug, Default)]
pub struct QuantizedRows {
    /// `[rows, groups * padded(group)]`, each group zero-padded to a multiple of 4.
    pub q: Vec<i8>,
    /// `[rows, groups]`.
    pub scales: Vec<f32>,
    /// Rows quantized.
    pub rows: usize,
    /// Input features per row (before padding).
    pub cols: usize,
    /// Values per scale.
    pub group: usize,
}

/// Quantizes `x` (`[rows, cols]`) per row and group to [-127, 127], `scale = max|group| / 127`.
pub fn quantize_rows(x: &[f32], cols: usize, group: usize, out: &mut QuantizedRows) {
    assert!(
        supports(cols, group),
        "{cols} features in groups of {group}"
    );
    assert_eq!(x.len() % cols, 0, "x is not [rows, {cols}]");
    let gp = padded(group);
    let groups = x.len() / group;
    out.q.resize(groups * gp, 0);
    out.scales.resize(groups, 0.0);
    (out.rows, out.cols, out.group) = (x.len() / cols, cols, group);
    let avx = has_avx2() && group % 32 == 0;
    let work = |((xg, qg), s): ((&[f32], &mut [i8]), &mut f32)| {
        let (qv, pad) = qg.split_at_mut(group);
        pad.fill(0);
        #[cfg(target_arch = "x86_64")]
        if avx {
            // SAFETY: AVX2 and FMA were detected on this CPU; `xg` and `qv` have `group` values,
            // a multiple of 32.
            *s = unsafe { avx2::quantize_group(xg, qv) };
            return;
        }
        let _ = avx;
        *s = quantize_group(xg, qv);
    };
    if x.len() >= 1 << 15 {
        x.par_chunks_exact(group)
            .zip(out.q.par_chunks_exact_mut(gp))
            .zip(out.scales.par_iter_mut())
            .for_each(work);
    } else {
        x.chunks_exact(group)
            .zip(out.q.chunks_exact_mut(gp))
            .zip(out.scales.iter_mut())
            .for_each(work);
    }
}

/// Portable quantization of one group; returns its scale.
pub fn quantize_group(x: &[f32], q: &mut [i8]) -> f32 {
    let max = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    if max == 0.0 {
        q.fill(0);
        return 1.0;
    }
    let inv = 127.0 / max;
    for (qv, &v) in q.iter_mut().zip(x) {
        *qv = (v * inv).round_ties_even().clamp(-127.0, 127.0) as i8;
    }
    max / 127.0
}

/// Int8 weights `[n, k]` with one scale per row and group, packed into column panels:
/// panel `j`, group `g`, step `s` holds `W[16j + c, g * group + 4s + t]` at byte `64s + 4c + t`.
#[derive(Debug, Clone)]
pub struct PackedInt8 {
    data: Vec<i8>,
    /// Panel `j`, group `g`: the 16 columns' scales at `(j * groups + g) * 16`, 0 past `n`.
    scales: Vec<f32>,
    /// Output features.
    pub n: usize,
    /// Input features.
    pub k: usize,
    /// Input features per scale.
    pub group: usize,
}

impl PackedInt8 {
    /// Packs `q` (`[n, k]` row-major, values in [-127, 127]) with `scales` (`[n, k / group]`).
    pub fn pack(q: &[i8], scales: &[f32], n: usize, k: usize, group: usize) -> Self {
        assert!(supports(k, group), "{k} features in groups of {group}");
        assert_eq!(q.len(), n * k, "q is not [n, k]");
        assert_eq!(
            scales.len(),
            n * (k / group),
            "scales are not [n, k / group]"
        );
        let (groups, gp) = (k / group, padded(group));
        let panels = n.div_ceil(NR);
        let mut data = vec![0i8; panels * groups * gp * NR];
        let mut sc = vec![0f32; panels * groups * NR];
        for col in 0..n {
            let (j, c) = (col / NR, col % NR);
            for g in 0..groups {
                let base = (j * groups + g) * gp * NR;
                for p in 0..group {
                    // -128 would overflow `vpsignb`'s negation; the quantizers never produce it.
                    let v = q[col * k + g * group + p].max(-127);
                    data[base + (p / 4) * 4 * NR + 4 * c + p % 4] = v;
                }
                sc[(j * groups + g) * NR + c] = scales[col * groups + g];
            }
        }
        Self {
            data,
            scales: sc,
            n,
            k,
            group,
        }
    }

    /// Back to `[n, k]` values and `[n, k / group]` scales.
    pub fn unpack(&self) -> (Vec<i8>, Vec<f32>) {
        let (n, k, group) = (self.n, self.k, self.group);
        let (groups, gp) = (k / group, padded(group));
        let mut q = vec![0i8; n * k];
        let mut scales = vec![0f32; n * groups];
        for col in 0..n {
            let (j, c) = (col / NR, col % NR);
            for g in 0..groups {
                let base = (j * groups + g) * gp * NR;
                for p in 0..group {
                    q[col * k + g * group + p] = self.data[base + (p / 4) * 4 * NR + 4 * c + p % 4];
                }
                scales[col * groups + g] = self.scales[(j * groups + g) * NR + c];
            }
        }
        (q, scales)
    }

    /// Bytes held (padding included).
    pub fn bytes(&self) -> usize {
        self.data.len() + self.scales.len() * 4
    }

    /// Panel `j`'s values and scales.
    fn panel(&self, j: usize) -> (&[i8], &[f32]) {
        let groups = self.k / self.group;
        let len = groups * padded(self.group) * NR;
        (
            &self.data[j * len..(j + 1) * len],
            &self.scales[j * groups * NR..(j + 1) * groups * NR],
        )
    }
}

/// A raw output pointer that tasks writing disjoint parts of the output may share.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: only used by `gemm`, whose tasks write disjoint (row block, panel) tiles.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    // A method, so closures capture the whole (Sync) wrapper rather than its raw field.
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// One microkernel call's operands: `rows` quantized rows and one panel.
#[derive(Debug, Clone, Copy)]
pub struct Tile<'a> {
    /// `rows` rows of `groups * padded(group)` values.
    pub xq: &'a [i8],
    /// `rows` rows of `groups` scales.
    pub xs: &'a [f32],
    /// Rows in this tile (1..=MR).
    pub rows: usize,
    /// The panel's values, `groups * padded(group) * NR`.
    pub panel: &'a [i8],
    /// The panel's scales, `groups * NR`.
    pub ps: &'a [f32],
    /// Groups per row.
    pub groups: usize,
    /// Padded group length (a multiple of 4).
    pub gp: usize,
}

impl Tile<'_> {
    /// Whether the slices hold what the kernels read.
    fn is_valid(&self) -> bool {
        let row = self.groups * self.gp;
        (1..=MR).contains(&self.rows)
            && self.gp % 4 == 0
            && self.xq.len() >= self.rows * row
            && self.xs.len() >= self.rows * self.groups
            && self.panel.len() >= row * NR
            && self.ps.len() >= self.groups * NR
    }
}

/// `out[m, n] = dequant(x) · dequant(W)^T + bias[n]` (`bias` may be empty) for activations
/// quantized by `quantize_rows` with the weights' group.
pub fn gemm(x: &QuantizedRows, w: &PackedInt8, bias: &[f32], out: &mut [f32]) {
    let (n, k, group) = (w.n, w.k, w.group);
    assert!(
        x.cols == k && x.group == group,
        "activations are [_, {}] in groups of {}, weights [_, {k}] in groups of {group}",
        x.cols,
        x.group
    );
    let (m, groups, gp) = (x.rows, k / group, padded(group));
    let row = groups * gp;
    assert!(x.q.len() >= m * row && x.scales.len() >= m * groups);
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
            let (panel, ps) = w.panel(j);
            let (c0, c1) = (j * NR, ((j + 1) * NR).min(n));
            let mut i = r0;
            while i < r1 {
                let rows = MR.min(r1 - i);
                let t = Tile {
                    xq: &x.q[i * row..(i + rows) * row],
                    xs: &x.scales[i * groups..(i + rows) * groups],
                    rows,
                    panel,
                    ps,
                    groups,
                    gp,
                };
                let mut acc = [[0f32; NR]; MR];
                #[cfg(target_arch = "x86_64")]
                if avx {
                    // SAFETY: AVX2 and FMA were detected; `t` is a valid tile by construction
                    // (row and panel slices sized from the asserted shapes).
                    unsafe { avx2::tile(t, &mut acc) };
                } else {
                    tile(t, &mut acc);
                }
                #[cfg(not(target_arch = "x86_64"))]
                {
                    let _ = avx;
                    tile(t, &mut acc);
                }
                for (r, a) in acc.iter().take(rows).enumerate() {
                    let width = c1 - c0;
                    // SAFETY: row `i + r < m`, columns `c0..c1 <= n` of `out` (asserted
                    // `[m, n]`); this tile belongs to this task alone (tasks partition the rows
                    // into blocks and the columns into panels).
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

/// Portable microkernel: `acc[r][c] = sum_g xs[r, g] ps[g, c] sum_{p in g} xq[r, p] w[p, c]`.
pub fn tile(t: Tile<'_>, acc: &mut [[f32; NR]; MR]) {
    assert!(t.is_valid(), "malformed int8 tile");
    let row = t.groups * t.gp;
    for g in 0..t.groups {
        let mut sums = [[0i32; NR]; MR];
        let pg = &t.panel[g * t.gp * NR..(g + 1) * t.gp * NR];
        for (s, w) in pg.chunks_exact(4 * NR).enumerate() {
            for (r, sr) in sums.iter_mut().enumerate().take(t.rows) {
                let xv = &t.xq[r * row + g * t.gp + 4 * s..][..4];
                for (o, wc) in sr.iter_mut().zip(w.chunks_exact(4)) {
                    *o += xv
                        .iter()
                        .zip(wc)
                        .map(|(&a, &b)| a as i32 * b as i32)
                        .sum::<i32>();
                }
            }
        }
        for (r, (a, sr)) in acc.iter_mut().zip(&sums).enumerate().take(t.rows) {
            let sx = t.xs[r * t.groups + g];
            for ((o, &v), &sw) in a.iter_mut().zip(sr).zip(&t.ps[g * NR..(g + 1) * NR]) {
                *o = (v as f32).mul_add(sx * sw, *o);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Tile, MR, NR};
    use crate::kernels::elementwise::avx2::hmax;

    /// AVX2 tile; dispatches to a kernel unrolled for the row count.
    ///
    /// # Safety
    /// AVX2 and FMA must be available.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile(t: Tile<'_>, acc: &mut [[f32; NR]; MR]) {
        // The kernel's raw reads rely on it: a cheap check per 4 × 16 × k tile.
        assert!(t.is_valid(), "malformed int8 tile");
        // SAFETY: `t` is valid (checked above) and the caller guarantees AVX2 + FMA.
        unsafe {
            match t.rows {
                4 => kernel::<4>(t, acc),
                3 => kernel::<3>(t, acc),
                2 => kernel::<2>(t, acc),
                _ => kernel::<1>(t, acc),
            }
        }
    }

    /// `R` rows × 16 columns. Per step of 4 input channels: two panel loads, and per row one
    /// broadcast, one `vpabsb`, and per half-panel `vpsignb` + `vpmaddubsw` + `vpmaddwd` +
    /// `vpaddd`. The i32 sums are scaled into f32 at the end of each group.
    ///
    /// # Safety
    /// AVX2 and FMA must be available; `t` valid with `t.rows >= R`.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn kernel<const R: usize>(t: Tile<'_>, acc: &mut [[f32; NR]; MR]) {
        let row = t.groups * t.gp;
        let ones = _mm256_set1_epi16(1);
        let mut f = [[_mm256_setzero_ps(); 2]; R];
        for g in 0..t.groups {
            let mut c = [[_mm256_setzero_si256(); 2]; R];
            // SAFETY (whole block): `g < groups`, so the group's `gp * NR` panel bytes and each
            // row's `gp` bytes at `r * row + g * gp` lie inside the slices (`t.is_valid()`,
            // `r < R <= rows`); steps `s < gp / 4` stay within the group.
            unsafe {
                let wp = t.panel.as_ptr().add(g * t.gp * NR);
                let xp = t.xq.as_ptr().add(g * t.gp);
                for s in 0..t.gp / 4 {
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
        for (fr, out) in f.iter().zip(acc.iter_mut()) {
            // SAFETY: each `out` row is 16 f32 wide.
            unsafe {
                _mm256_storeu_ps(out.as_mut_ptr(), fr[0]);
                _mm256_storeu_ps(out.as_mut_ptr().add(8), fr[1]);
            }
        }
    }

    /// Quantizes one group of a multiple of 32 values; returns its scale.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn quantize_group(x: &[f32], q: &mut [i8]) -> f32 {
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
            return 1.0;
        }
        let inv = _mm256_set1_ps(127.0 / max);
        let perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
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
            }
        }
        max / 127.0
    }
}

#[cfg(test)]
mod tests;
