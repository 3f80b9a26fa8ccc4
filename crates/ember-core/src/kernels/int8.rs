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
//! Groups are zero-padded to a multiple of 4. A microkernel takes a tile of rows × 16 columns and
//! broadcasts 4 activation bytes of a row against a step, so one multiply instruction makes
//! several columns' 4-term dot products. The instruction set is chosen once, when the weights are
//! packed (`Isa::detect`), because it decides how the weight bytes are stored:
//!
//! - **AVX-512 VNNI** (`Isa::Avx512Vnni`, 6 rows × two neighbouring panels, 32 columns): one
//!   `vpdpbusd` per row, panel and step multiplies 64 unsigned by signed bytes and adds each
//!   column's four products to its i32 lane, with no intermediate saturation; each activation
//!   broadcast feeds both panels' `vpdpbusd`. The weights are the unsigned operand, stored offset
//!   by 128 (`w + 128` in 0..=254), so the activations stay signed and are broadcast straight
//!   from memory; `sum (w + 128) x = sum w x + 128 sum x`, so each row's group sum of codes
//!   (from `quantize_rows`) seeds the accumulator with `-128 sum x`. Both operands keep 8 bits.
//! - **AVX2** (`Isa::Avx2`, 4 rows × 16 columns): `vpmaddubsw` multiplies unsigned by signed
//!   bytes but saturates its i16 pair sums, so we use the sign trick `|x| * sign(w, x)`
//!   (`vpabsb` once per row and step, `vpsignb` per product): both operands stay within 127, a
//!   pair sum is at most 2 · 127 · 127 = 32 258 and never saturates, and both keep their full
//!   8 bits, then `vpmaddwd` by ones widens to i32. The alternative (activations offset to u8
//!   with column sums subtracted) saves the `vpsignb` but needs one operand cut to 7 bits to
//!   avoid saturation, doubling that operand's rounding error; `vpsignb` runs on a vector ALU
//!   port while the two multiplies share the multiply ports, so it costs little throughput.
//! - **NEON `dotprod`** (`Isa::NeonDot`, AArch64, 3 rows × 16 columns): one `sdot` per row,
//!   quarter panel and step multiplies 4 columns' 4 signed weights by the row's 4 signed
//!   activations and adds them to each column's i32 lane: the AVX2 layout, full 8 bits, no
//!   saturation (`int8/neon.rs`). AArch64 CPUs without `dotprod` run the portable kernel.
//! - **Portable**: the same arithmetic in plain Rust, reading either weight format; the tests
//!   hold every SIMD kernel to it.

use rayon::prelude::*;

use super::threads::num_threads;
use super::{has_avx2, Prefetch};

/// Output columns per panel.
pub const NR: usize = 16;
/// Most input rows per microkernel call (the VNNI kernel's tile height).
pub const MR: usize = 6;
/// Most panels per microkernel call (the VNNI kernel takes two neighbouring ones).
pub const PANELS: usize = 2;
/// A microkernel's output: up to `MR` rows of up to `PANELS` panels' columns.
pub type Acc = [[f32; PANELS * NR]; MR];
/// Rows per block of work (a multiple of every kernel's tile height): the block's activations
/// stay in L1/L2 while every panel streams past.
const MC: usize = 48;
/// Largest group: `group` products of at most 127 · 127 must fit an i32 sum.
const MAX_GROUP: usize = 1 << 16;

/// The instruction set an int8 matrix was packed for (it fixes the weight bytes' format).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Plain Rust.
    Portable,
    /// AVX2 (`vpmaddubsw` with the sign trick).
    Avx2,
    /// AVX-512 BW + VNNI (`vpdpbusd`; weights stored offset by 128).
    Avx512Vnni,
    /// AArch64 NEON with the dot-product extension (`sdot`).
    NeonDot,
}

impl Isa {
    /// The fastest kernel this CPU runs.
    pub fn detect() -> Self {
        #[cfg(all(target_arch = "x86_64", ember_avx512))]
        {
            if super::has_avx512()
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vnni")
            {
                return Isa::Avx512Vnni;
            }
        }
        // On AArch64 any `EMBER_ISA` cap but `portable` allows NEON.
        #[cfg(target_arch = "aarch64")]
        if super::isa_cap() > super::IsaCap::Portable && neon::detected() {
            return Isa::NeonDot;
        }
        if has_avx2() {
            Isa::Avx2
        } else {
            Isa::Portable
        }
    }

    /// The kernel's name, for logs, metrics and bench labels.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512Vnni => "avx512-vnni",
            Isa::NeonDot => "neon-dotprod",
        }
    }

    /// Whether this CPU runs the kernel.
    pub fn available(self) -> bool {
        match self {
            Isa::Portable => true,
            Isa::Avx2 => has_avx2(),
            Isa::Avx512Vnni | Isa::NeonDot => Isa::detect() == self,
        }
    }

    /// Most rows per microkernel call.
    fn rows(self) -> usize {
        match self {
            Isa::Avx512Vnni => MR,
            Isa::NeonDot => 3,
            Isa::Avx2 | Isa::Portable => 4,
        }
    }

    /// Most neighbouring panels per microkernel call.
    fn panels(self) -> usize {
        match self {
            Isa::Avx512Vnni => PANELS,
            Isa::Avx2 | Isa::NeonDot | Isa::Portable => 1,
        }
    }

    /// Whether weight bytes are stored offset by 128 (`w + 128` as u8).
    fn offset(self) -> bool {
        self == Isa::Avx512Vnni
    }
}

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
    /// `[rows, groups]`: the sum of each group's codes (for offset weights).
    pub sums: Vec<i32>,
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
    out.sums.resize(groups, 0);
    (out.rows, out.cols, out.group) = (x.len() / cols, cols, group);
    let avx = has_avx2() && group % 32 == 0;
    if x.len() >= 1 << 15 {
        x.par_chunks_exact(group)
            .zip(out.q.par_chunks_exact_mut(gp))
            .zip(out.scales.par_iter_mut().zip(out.sums.par_iter_mut()))
            .for_each(|((xg, qg), (s, sum))| (*s, *sum) = quantize_padded(xg, qg, avx));
    } else {
        x.chunks_exact(group)
            .zip(out.q.chunks_exact_mut(gp))
            .zip(out.scales.iter_mut().zip(out.sums.iter_mut()))
            .for_each(|((xg, qg), (s, sum))| (*s, *sum) = quantize_padded(xg, qg, avx));
    }
}

/// Quantizes `x` into the front of `q` and zeroes the rest; returns the scale and the codes' sum.
/// `avx`: AVX2 + FMA are available and `x.len()` is a multiple of 32.
fn quantize_padded(x: &[f32], q: &mut [i8], avx: bool) -> (f32, i32) {
    let (qv, pad) = q.split_at_mut(x.len());
    pad.fill(0);
    #[cfg(target_arch = "x86_64")]
    if avx {
        // SAFETY: the caller checked AVX2 and FMA; `x` and `qv` have the same length, a
        // multiple of 32.
        return unsafe { x86::quantize_group(x, qv) };
    }
    let _ = avx;
    let scale = quantize_group(x, qv);
    (scale, qv.iter().map(|&v| v as i32).sum())
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
/// panel `j`, group `g`, step `s` holds `W[16j + c, g * group + 4s + t]` at byte `64s + 4c + t`
/// (plus 128, as u8, for `Isa::Avx512Vnni`).
#[derive(Debug, Clone)]
pub struct PackedInt8 {
    data: Vec<i8>,
    /// The kernel the bytes are laid out for.
    pub isa: Isa,
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
    /// Packs `q` (`[n, k]` row-major, values in [-127, 127]) with `scales` (`[n, k / group]`)
    /// for the fastest kernel on this CPU.
    pub fn pack(q: &[i8], scales: &[f32], n: usize, k: usize, group: usize) -> Self {
        Self::pack_for(Isa::detect(), q, scales, n, k, group)
    }

    /// Packs for kernel `isa` (which must be available to run `gemm` on the result).
    pub fn pack_for(isa: Isa, q: &[i8], scales: &[f32], n: usize, k: usize, group: usize) -> Self {
        assert!(supports(k, group), "{k} features in groups of {group}");
        assert_eq!(q.len(), n * k, "q is not [n, k]");
        assert_eq!(
            scales.len(),
            n * (k / group),
            "scales are not [n, k / group]"
        );
        let (groups, gp) = (k / group, padded(group));
        let panels = n.div_ceil(NR);
        // Offset bytes: `w + 128` as u8 is `w ^ 0x80` as i8, and padding is `0 + 128`.
        let flip = if isa.offset() { i8::MIN } else { 0 };
        let mut data = vec![flip; panels * groups * gp * NR];
        let mut sc = vec![0f32; panels * groups * NR];
        for col in 0..n {
            let (j, c) = (col / NR, col % NR);
            for g in 0..groups {
                let base = (j * groups + g) * gp * NR;
                for p in 0..group {
                    // -128 would overflow `vpsignb`'s negation; the quantizers never produce it.
                    let v = q[col * k + g * group + p].max(-127);
                    data[base + (p / 4) * 4 * NR + 4 * c + p % 4] = v ^ flip;
                }
                sc[(j * groups + g) * NR + c] = scales[col * groups + g];
            }
        }
        Self {
            data,
            isa,
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
        let flip = if self.isa.offset() { i8::MIN } else { 0 };
        for col in 0..n {
            let (j, c) = (col / NR, col % NR);
            for g in 0..groups {
                let base = (j * groups + g) * gp * NR;
                for p in 0..group {
                    q[col * k + g * group + p] =
                        self.data[base + (p / 4) * 4 * NR + 4 * c + p % 4] ^ flip;
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

    /// Panels `j..j + count`'s values and scales (neighbouring panels are contiguous).
    fn panels(&self, j: usize, count: usize) -> (&[i8], &[f32]) {
        let groups = self.k / self.group;
        let len = groups * padded(self.group) * NR;
        (
            &self.data[j * len..(j + count) * len],
            &self.scales[j * groups * NR..(j + count) * groups * NR],
        )
    }
}

/// Where a SIMD microkernel writes its tile: row `r` of the tile at `ptr + r * ld`. The GEMM
/// points it into the output for whole-panel tiles (no copy through a buffer), or at an `Acc`.
#[derive(Debug, Clone, Copy)]
pub struct Dst {
    ptr: *mut f32,
    ld: usize,
}

impl Dst {
    /// Rows of `acc` (valid while `acc` is, for `MR` rows of `PANELS * NR` values).
    pub fn acc(acc: &mut Acc) -> Self {
        Self {
            ptr: acc.as_mut_ptr().cast(),
            ld: PANELS * NR,
        }
    }

    /// Row `r`'s first value.
    ///
    /// # Safety
    /// `r` must be a row the destination holds.
    #[inline(always)]
    unsafe fn row(self, r: usize) -> *mut f32 {
        // SAFETY: the caller keeps `r` inside the destination.
        unsafe { self.ptr.add(r * self.ld) }
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

/// One microkernel call's operands: `rows` quantized rows and `panels` neighbouring panels.
#[derive(Debug, Clone, Copy)]
pub struct Tile<'a> {
    /// `rows` rows of `groups * padded(group)` values.
    pub xq: &'a [i8],
    /// `rows` rows of `groups` scales.
    pub xs: &'a [f32],
    /// `rows` rows of `groups` sums of codes.
    pub xsum: &'a [i32],
    /// Rows in this tile (1..=MR).
    pub rows: usize,
    /// Panels in this tile (1..=PANELS).
    pub panels: usize,
    /// The panels' values, each `groups * padded(group) * NR`, one after the other.
    pub panel: &'a [i8],
    /// The panels' scales, each `groups * NR`, one after the other.
    pub ps: &'a [f32],
    /// What each row's outputs start from (the panels' bias), `panels * NR`.
    pub bias: &'a [f32],
    /// Groups per row.
    pub groups: usize,
    /// Padded group length (a multiple of 4).
    pub gp: usize,
    /// Whether the panel's bytes are offset by 128.
    pub offset: bool,
    /// What to prefetch along the way (a share of the next panels; see [`Prefetch`]).
    pub pf: Prefetch,
}

impl Tile<'_> {
    /// Whether the slices hold what the kernels read.
    fn is_valid(&self) -> bool {
        let row = self.groups * self.gp;
        (1..=MR).contains(&self.rows)
            && (1..=PANELS).contains(&self.panels)
            && self.gp % 4 == 0
            && self.xq.len() >= self.rows * row
            && self.xs.len() >= self.rows * self.groups
            && self.xsum.len() >= self.rows * self.groups
            && self.panel.len() >= self.panels * row * NR
            && self.ps.len() >= self.panels * self.groups * NR
            && self.bias.len() >= self.panels * NR
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
    assert!(x.q.len() >= m * row && x.scales.len() >= m * groups && x.sums.len() >= m * groups);
    assert!(w.isa.available(), "int8 weights packed for {:?}", w.isa);
    assert_eq!(out.len(), m * n, "out is not [m, n]");
    assert!(bias.is_empty() || bias.len() == n, "bias is not [n]");
    if m == 0 || n == 0 {
        return;
    }
    let panels = n.div_ceil(NR);
    let blocks = m.div_ceil(MC);
    let (isa, mr, pw) = (w.isa, w.isa.rows(), w.isa.panels());
    let ptr = OutPtr(out.as_mut_ptr());
    // One task: row block `b`, panels `p0..p1`.
    let task = |b: usize, p0: usize, p1: usize| {
        let (r0, r1) = (b * MC, ((b + 1) * MC).min(m));
        let tiles = (r1 - r0).div_ceil(mr);
        // Every kernel writes all of its rows and panels: no zeroing per tile.
        let mut acc: Acc = [[0f32; PANELS * NR]; MR];
        let mut j = p0;
        while j < p1 {
            let count = pw.min(p1 - j);
            let (panel, ps) = w.panels(j, count);
            // The panels after these, which the tiles over these prefetch in shares.
            let next = w
                .panels(j + count, count.min(panels.saturating_sub(j + count)))
                .0;
            let mut t_no = 0;
            let (c0, c1) = (j * NR, ((j + count) * NR).min(n));
            let width = c1 - c0;
            let mut pb = [0f32; PANELS * NR];
            if !bias.is_empty() {
                pb[..width].copy_from_slice(&bias[c0..c1]);
            }
            let mut i = r0;
            while i < r1 {
                let rows = tile_rows(r1 - i, mr);
                let t = Tile {
                    xq: &x.q[i * row..(i + rows) * row],
                    xs: &x.scales[i * groups..(i + rows) * groups],
                    xsum: &x.sums[i * groups..(i + rows) * groups],
                    rows,
                    panels: count,
                    panel,
                    ps,
                    bias: &pb,
                    groups,
                    gp,
                    offset: isa.offset(),
                    pf: Prefetch::share(next, t_no, tiles),
                };
                t_no += 1;
                // Whole panels go straight to the output: row `i + r < m`, columns `c0..c1`
                // (`c1 <= n`) of `out` (asserted `[m, n]`), a tile this task alone writes (tasks
                // partition the rows into blocks and the columns into panels).
                let direct = Dst {
                    ptr: ptr.get().wrapping_add(i * n + c0),
                    ld: n,
                };
                let whole = width == count * NR;
                // Whether the kernel wrote the output itself (else it wrote `acc`).
                let written = match isa {
                    #[cfg(all(target_arch = "x86_64", ember_avx512))]
                    // SAFETY: the CPU runs AVX-512 BW + VNNI (asserted `isa.available()`); `t`
                    // is valid by construction (slices sized from the asserted shapes); the
                    // destination holds `rows` rows of `width` values (above, or `acc`).
                    Isa::Avx512Vnni if whole => unsafe {
                        vnni::tile(t, direct);
                        true
                    },
                    #[cfg(all(target_arch = "x86_64", ember_avx512))]
                    // SAFETY: as above.
                    Isa::Avx512Vnni => unsafe {
                        vnni::tile(t, Dst::acc(&mut acc));
                        false
                    },
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: as above, for AVX2 + FMA.
                    Isa::Avx2 if whole => unsafe {
                        x86::tile_avx2(t, direct);
                        true
                    },
                    #[cfg(target_arch = "x86_64")]
                    // SAFETY: as above.
                    Isa::Avx2 => unsafe {
                        x86::tile_avx2(t, Dst::acc(&mut acc));
                        false
                    },
                    #[cfg(target_arch = "aarch64")]
                    // SAFETY: as above, for NEON with `dotprod`.
                    Isa::NeonDot if whole => unsafe {
                        neon::tile(t, direct);
                        true
                    },
                    #[cfg(target_arch = "aarch64")]
                    // SAFETY: as above.
                    Isa::NeonDot => unsafe {
                        neon::tile(t, Dst::acc(&mut acc));
                        false
                    },
                    _ => {
                        tile(t, &mut acc);
                        false
                    }
                };
                if written {
                    i += rows;
                    continue;
                }
                for (r, a) in acc.iter().take(rows).enumerate() {
                    // SAFETY: row `i + r < m`, columns `c0..c1 <= n` of `out` (asserted
                    // `[m, n]`); this tile belongs to this task alone (tasks partition the rows
                    // into blocks and the columns into panels).
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(ptr.get().add((i + r) * n + c0), width)
                    };
                    // Whole panels: a fixed-size copy, no call.
                    if let Ok(d) = <&mut [f32; PANELS * NR]>::try_from(&mut *dst) {
                        *d = *a;
                    } else if let Ok(d) = <&mut [f32; NR]>::try_from(&mut *dst) {
                        d.copy_from_slice(&a[..NR]);
                    } else {
                        dst.copy_from_slice(&a[..width]);
                    }
                }
                i += rows;
            }
            j += count;
        }
    };
    let threads = num_threads();
    if threads <= 1 || m * n * k < 1 << 17 {
        (0..blocks).for_each(|b| task(b, 0, panels));
    } else if blocks >= 2 * threads {
        (0..blocks).into_par_iter().for_each(|b| task(b, 0, panels));
    } else {
        // Few rows (a short query): every thread takes a share of the panels of each block,
        // whole pairs when the kernel takes two panels at a time.
        let share = panels.div_ceil(threads).next_multiple_of(pw);
        (0..blocks * threads).into_par_iter().for_each(|t| {
            let (b, s) = (t / threads, t % threads);
            let p0 = (s * share).min(panels);
            task(b, p0, ((s + 1) * share).min(panels));
        });
    }
}

/// Splits `left` rows into even tiles of at most `most` (15 rows with 6 at most: 5 + 5 + 5, not
/// 6 + 6 + 3): a short last tile has too few accumulators to hide the multiply latency.
fn tile_rows(left: usize, most: usize) -> usize {
    left.div_ceil(left.div_ceil(most))
}

/// Portable microkernel, for each panel `w < t.panels` and column `c < NR`:
/// `acc[r][NR w + c] = bias[NR w + c] + sum_g xs[r, g] ps_w[g, c] sum_{p in g} xq[r, p] w_w[p, c]`.
pub fn tile(t: Tile<'_>, acc: &mut Acc) {
    assert!(t.is_valid(), "malformed int8 tile");
    let row = t.groups * t.gp;
    let flip = if t.offset { i8::MIN } else { 0 };
    for w in 0..t.panels {
        let panel = &t.panel[w * row * NR..(w + 1) * row * NR];
        let ps = &t.ps[w * t.groups * NR..(w + 1) * t.groups * NR];
        let cols = w * NR..(w + 1) * NR;
        for a in acc.iter_mut().take(t.rows) {
            a[cols.clone()].copy_from_slice(&t.bias[cols.clone()]);
        }
        for g in 0..t.groups {
            let mut sums = [[0i32; NR]; MR];
            let pg = &panel[g * t.gp * NR..(g + 1) * t.gp * NR];
            for (s, wv) in pg.chunks_exact(4 * NR).enumerate() {
                for (r, sr) in sums.iter_mut().enumerate().take(t.rows) {
                    let xv = &t.xq[r * row + g * t.gp + 4 * s..][..4];
                    for (o, wc) in sr.iter_mut().zip(wv.chunks_exact(4)) {
                        let dot = xv
                            .iter()
                            .zip(wc)
                            .map(|(&a, &b)| a as i32 * (b ^ flip) as i32);
                        *o += dot.sum::<i32>();
                    }
                }
            }
            for (r, (a, sr)) in acc.iter_mut().zip(&sums).enumerate().take(t.rows) {
                let sx = t.xs[r * t.groups + g];
                let pgs = &ps[g * NR..(g + 1) * NR];
                for ((o, &v), &sw) in a[cols.clone()].iter_mut().zip(sr).zip(pgs) {
                    *o = (v as f32).mul_add(sx * sw, *o);
                }
            }
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "x86_64")]
mod x86;
// Compiled only by a Rust with the AVX-512 intrinsics (1.89+, `build.rs`), so the MSRV lint,
// which measures against the workspace's 1.85, does not apply.
#[cfg(all(target_arch = "x86_64", ember_avx512))]
#[allow(clippy::incompatible_msrv)]
mod vnni;

#[cfg(test)]
mod tests;
