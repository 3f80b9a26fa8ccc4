//! Tiled attention for long inputs in bounded memory (flash-attention's online softmax, on the
//! CPU): no `n × n` score matrix, per head or otherwise, ever exists.
//!
//! The fused projection rows hold `[Q: heads · d | K: kv_heads · d | V: kv_heads · d]` per token,
//! so grouped-query attention (fewer key/value heads than query heads) and plain multi-head
//! attention read the same layout. K is first copied per (sequence, key head) into blocks of `BC`
//! transposed columns and V into blocks of `BC` rows, each block contiguous (one pass, as much
//! memory as K and V themselves). A task is then one (sequence, query head, block of query rows):
//! it walks the key blocks its rows can see, scores `MR` rows at a time on the GEMM's
//! microkernel, folds each block into a running maximum, sum and context (`o = o · α + P V`),
//! and divides by the sum at the end. Per thread it holds one block of context rows and one of
//! scores: memory grows with the length only through the copies of K and V.
//!
//! What a query sees is a [`Span`] of positions around it: everything (bidirectional), everything
//! before it (causal), or a sliding window on either side; key blocks outside the span are never
//! computed, so sliding-window layers cost `O(n · window)`. Sequences are row ranges of the
//! buffers ([`Rows`]), so a padded batch (left or right) and an unpadded one (sequences back to
//! back) are the same call; rows outside every range are left untouched.

use std::cell::RefCell;

use rayon::prelude::*;

use super::attention::SyncPtr;
use super::elementwise::{exp, softmax_on};
use super::Simd;

/// Keys per block: whole 16-column panels for the SIMD products, and a block of K and of V
/// (`BC · d` values each) small enough to stay in cache while a task's rows go over it.
pub const BC: usize = 64;
/// Query rows per task: a multiple of every path's row tile (portable 8, AVX2 6, AVX-512 12).
pub const BR: usize = 48;
/// Multiply-adds below which attention stays on the calling thread.
const SERIAL_WORK: usize = 1 << 19;

/// Heads of the fused projection: each token's row is `[Q | K | V]`, `heads · head_dim` query
/// values then `kv_heads · head_dim` key and value values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heads {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads; must divide `heads` (query head `h` reads key head
    /// `h / (heads / kv_heads)`, as transformers' `repeat_kv`).
    pub kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

impl Heads {
    /// `heads` query heads, each with its own key and value head, splitting `hidden` evenly (the
    /// config's validation has checked that `heads` divides it).
    pub fn full(heads: usize, hidden: usize) -> Self {
        Self {
            heads,
            kv_heads: heads,
            head_dim: hidden / heads.max(1),
        }
    }

    /// Values per token in the fused projection.
    pub fn row(&self) -> usize {
        (self.heads + 2 * self.kv_heads) * self.head_dim
    }

    /// Values per token in the context (`heads · head_dim`).
    pub fn ctx_row(&self) -> usize {
        self.heads * self.head_dim
    }
}

/// The keys a query at position `i` of its sequence sees: positions `i - before ..= i + after`,
/// clipped to the sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Positions before the query.
    pub before: usize,
    /// Positions after the query (0: causal).
    pub after: usize,
}

impl Span {
    /// Every key (bidirectional attention).
    pub const FULL: Span = Span {
        before: usize::MAX,
        after: usize::MAX,
    };
    /// The query's own position and every one before it (a decoder).
    pub const CAUSAL: Span = Span {
        before: usize::MAX,
        after: 0,
    };

    /// Keys `i - before ..= i + after`.
    pub fn window(before: usize, after: usize) -> Self {
        Span { before, after }
    }

    /// Keys of query `i` inside `0..len`, as `[first, end)`.
    #[inline]
    fn keys(self, i: usize, len: usize) -> (usize, usize) {
        (
            i.saturating_sub(self.before),
            i.saturating_add(self.after).saturating_add(1).min(len),
        )
    }
}

/// One attention call: heads, span and the scale of the scores (`1 / sqrt(head_dim)` for most
/// models; Gemma's `query_pre_attn_scalar^-1/2`).
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// The fused projection's heads.
    pub heads: Heads,
    /// Which keys each query sees.
    pub span: Span,
    /// Multiplies `q · k` before the softmax.
    pub scale: f32,
}

/// One sequence: rows `start .. start + len` of the projection and context buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rows {
    /// First row.
    pub start: usize,
    /// Tokens.
    pub len: usize,
}

/// `ctx = softmax(scale · q k^T, over the span) v` for every sequence and query head.
///
/// `qkv` is `[rows, heads.row()]`, `ctx` is `[rows, heads.ctx_row()]` with the same rows; the
/// sequences' row ranges must lie inside both and not overlap (checked). Rows of no sequence
/// are not written.
pub fn attention(qkv: &[f32], seqs: &[Rows], spec: &Spec, ctx: &mut [f32]) {
    attention_on(Simd::detect(), qkv, seqs, spec, ctx)
}

/// [`attention`] on the kernels of `path` (which this CPU must run).
pub(crate) fn attention_on(path: Simd, qkv: &[f32], seqs: &[Rows], spec: &Spec, ctx: &mut [f32]) {
    let Heads {
        heads,
        kv_heads,
        head_dim: d,
    } = spec.heads;
    assert!(
        heads > 0 && d > 0 && kv_heads > 0 && heads % kv_heads == 0,
        "{heads} query heads cannot share {kv_heads} key heads"
    );
    let (ld, cw) = (spec.heads.row(), spec.heads.ctx_row());
    assert_eq!(qkv.len() % ld, 0, "qkv is not [rows, {ld}]");
    let rows = qkv.len() / ld;
    assert_eq!(ctx.len(), rows * cw, "ctx is not [{rows}, {cw}]");
    let mut order: Vec<Rows> = seqs.iter().copied().filter(|s| s.len > 0).collect();
    order.sort_by_key(|s| s.start);
    let mut end = 0;
    for s in &order {
        assert!(
            s.start >= end && s.start + s.len <= rows,
            "sequence rows {}..{} overlap another or lie outside {rows} rows",
            s.start,
            s.start + s.len
        );
        end = s.start + s.len;
    }
    // The SIMD products work on whole 16-column panels of the head width.
    let path = if d % 16 == 0 { path } else { Simd::Portable };
    let work: usize = order
        .iter()
        .map(|s| s.len * s.len.min(span_width(spec.span)))
        .sum::<usize>()
        * heads
        * d;
    let serial = work < SERIAL_WORK;
    with_packed(|packed| {
        let blocks = packed.fill(qkv, &order, spec, serial);
        let job = Job {
            qkv,
            spec,
            path,
            packed: &*packed,
            blocks: &blocks,
            out: SyncPtr(ctx.as_mut_ptr()),
        };
        // One task per (sequence, query head, block of query rows).
        let tasks: Vec<(u32, u32, u32)> = order
            .iter()
            .enumerate()
            .flat_map(|(s, r)| {
                (0..heads).flat_map(move |h| {
                    (0..r.len.div_ceil(BR)).map(move |q| (s as u32, h as u32, q as u32))
                })
            })
            .collect();
        let run = |&(s, h, q): &(u32, u32, u32)| {
            with_tile(|tile| job.task(&order[s as usize], s as usize, h as usize, q as usize, tile))
        };
        if serial {
            tasks.iter().for_each(run);
        } else {
            tasks.par_iter().for_each(run);
        }
    });
}

/// Keys one query sees at most (for the work estimate).
fn span_width(span: Span) -> usize {
    span.before.saturating_add(span.after).saturating_add(1)
}

/// K and V of every (sequence, key head), copied into blocks of `BC` keys: K transposed
/// (`[d, BC]` per block, so a score row is a run of multiply-adds), V as rows (`[BC, d]`).
/// Keys past a sequence's end are zero.
#[derive(Default)]
struct Packed {
    kt: Vec<f32>,
    v: Vec<f32>,
}

impl Packed {
    /// Copies K and V of `seqs` out of `qkv`; returns the first block of each sequence (blocks
    /// of one sequence are laid out key head after key head).
    fn fill(&mut self, qkv: &[f32], seqs: &[Rows], spec: &Spec, serial: bool) -> Vec<usize> {
        let Heads {
            heads,
            kv_heads,
            head_dim: d,
        } = spec.heads;
        let ld = spec.heads.row();
        let mut first = Vec::with_capacity(seqs.len());
        let mut total = 0;
        for s in seqs {
            first.push(total);
            total += kv_heads * s.len.div_ceil(BC);
        }
        let unit = BC * d;
        self.kt.resize(total * unit, 0.0);
        self.v.resize(total * unit, 0.0);
        // Split both buffers into one region per (sequence, key head), in order.
        let mut jobs = Vec::with_capacity(seqs.len() * kv_heads);
        let (mut kt, mut v) = (&mut self.kt[..total * unit], &mut self.v[..total * unit]);
        for s in seqs {
            let n = s.len.div_ceil(BC) * unit;
            for g in 0..kv_heads {
                let (k_here, k_rest) = std::mem::take(&mut kt).split_at_mut(n);
                let (v_here, v_rest) = std::mem::take(&mut v).split_at_mut(n);
                (kt, v) = (k_rest, v_rest);
                jobs.push((*s, g, k_here, v_here));
            }
        }
        let pack = |(s, g, kt, v): &mut (Rows, usize, &mut [f32], &mut [f32])| {
            let (koff, voff) = ((heads + *g) * d, (heads + kv_heads + *g) * d);
            for (b, (ktb, vb)) in kt
                .chunks_exact_mut(unit)
                .zip(v.chunks_exact_mut(unit))
                .enumerate()
            {
                for t in 0..BC {
                    let j = b * BC + t;
                    if j < s.len {
                        let row = &qkv[(s.start + j) * ld..][..ld];
                        for (c, &k) in row[koff..koff + d].iter().enumerate() {
                            ktb[c * BC + t] = k;
                        }
                        vb[t * d..(t + 1) * d].copy_from_slice(&row[voff..voff + d]);
                    } else {
                        for c in 0..d {
                            ktb[c * BC + t] = 0.0;
                        }
                        vb[t * d..(t + 1) * d].fill(0.0);
                    }
                }
            }
        };
        if serial {
            jobs.iter_mut().for_each(pack);
        } else {
            jobs.par_iter_mut().for_each(pack);
        }
        first
    }
}

/// One thread's running state for a block of query rows.
#[derive(Default)]
struct Tile {
    /// Context rows, `[BR, d]`.
    o: Vec<f32>,
    /// Score / probability rows of one row tile, `[12, BC]`.
    s: Vec<f32>,
    /// Running maximum of each row's raw scores.
    m: Vec<f32>,
    /// Running sum of each row's probabilities.
    l: Vec<f32>,
    /// Each row's rescale factor for the current key block.
    alpha: Vec<f32>,
}

thread_local! {
    static PACKED: RefCell<Packed> = RefCell::new(Packed::default());
    static TILE: RefCell<Tile> = RefCell::new(Tile::default());
}

fn with_packed<R>(f: impl FnOnce(&mut Packed) -> R) -> R {
    super::threads::with_local(&PACKED, f)
}

fn with_tile<R>(f: impl FnOnce(&mut Tile) -> R) -> R {
    super::threads::with_local(&TILE, f)
}

/// What every task of one call shares.
struct Job<'a> {
    qkv: &'a [f32],
    spec: &'a Spec,
    path: Simd,
    packed: &'a Packed,
    /// First block of each sequence in `packed`.
    blocks: &'a [usize],
    out: SyncPtr,
}

impl Job<'_> {
    /// Query rows `q · BR ..` of query head `h` in sequence `s` (index `si` in `blocks`).
    fn task(&self, s: &Rows, si: usize, h: usize, q: usize, tile: &mut Tile) {
        let Heads {
            heads,
            kv_heads,
            head_dim: d,
        } = self.spec.heads;
        let (ld, cw) = (self.spec.heads.row(), self.spec.heads.ctx_row());
        let span = self.spec.span;
        let g = h / (heads / kv_heads);
        let unit = BC * d;
        let nb = s.len.div_ceil(BC);
        let base = (self.blocks[si] + g * nb) * unit;
        let (i0, i1) = (q * BR, ((q + 1) * BR).min(s.len));
        let n = i1 - i0;
        let mr = tile_rows(self.path);
        tile.o.clear();
        tile.o.resize(n * d, 0.0);
        tile.s.resize(12 * BC, 0.0);
        tile.m.clear();
        tile.m.resize(n, f32::NEG_INFINITY);
        tile.l.clear();
        tile.l.resize(n, 0.0);
        tile.alpha.resize(n, 1.0);
        // Keys any row of the block sees.
        let (lo, _) = span.keys(i0, s.len);
        let (_, hi) = span.keys(i1 - 1, s.len);
        for kb in lo / BC..hi.div_ceil(BC) {
            let j0 = kb * BC;
            let cols = BC.min(s.len - j0);
            let kt = &self.packed.kt[base + kb * unit..][..unit];
            let v = &self.packed.v[base + kb * unit..][..unit];
            for r0 in (0..n).step_by(mr) {
                let rows = mr.min(n - r0);
                // Rows of this tile whose keys miss the block entirely skip it.
                let (first, _) = span.keys(i0 + r0, s.len);
                let (_, last) = span.keys(i0 + r0 + rows - 1, s.len);
                if first >= j0 + cols || last <= j0 {
                    continue;
                }
                let q_at = (s.start + i0 + r0) * ld + h * d;
                let sc = &mut tile.s[..rows * BC];
                scores(self.path, &self.qkv[q_at..], ld, kt, d, rows, sc);
                for r in 0..rows {
                    let i = i0 + r0 + r;
                    let (a, b) = span.keys(i, s.len);
                    let (a, b) = (a.max(j0) - j0, b.min(j0 + cols).saturating_sub(j0));
                    let row = &mut sc[r * BC..r * BC + cols];
                    if a >= b {
                        row.fill(0.0);
                        tile.alpha[r0 + r] = 1.0;
                        continue;
                    }
                    let m_old = tile.m[r0 + r];
                    let (m, sum) = softmax_on(self.path, &mut row[a..b], self.spec.scale, m_old);
                    row[..a].fill(0.0);
                    row[b..].fill(0.0);
                    let alpha = if m_old == f32::NEG_INFINITY {
                        0.0
                    } else {
                        exp((m_old - m) * self.spec.scale)
                    };
                    tile.alpha[r0 + r] = alpha;
                    tile.l[r0 + r] = tile.l[r0 + r] * alpha + sum;
                    tile.m[r0 + r] = m;
                }
                let o = &mut tile.o[r0 * d..(r0 + rows) * d];
                context(
                    self.path,
                    sc,
                    v,
                    d,
                    cols,
                    rows,
                    &tile.alpha[r0..r0 + rows],
                    o,
                );
            }
        }
        for (r, o) in tile.o.chunks_exact(d).enumerate() {
            let inv = 1.0 / tile.l[r];
            let row = s.start + i0 + r;
            // SAFETY: row `row` belongs to sequence `s` alone (sequences' rows do not overlap,
            // checked in `attention_on`) and columns `h · d .. h · d + d` to query head `h`
            // alone, so no other task writes here; `ctx` holds `rows · cw` values (checked) and
            // outlives the parallel loop.
            unsafe {
                let dst = self.out.get().add(row * cw + h * d);
                for (c, &x) in o.iter().enumerate() {
                    *dst.add(c) = x * inv;
                }
            }
        }
    }
}

/// Rows the products of `path` take at a time.
fn tile_rows(path: Simd) -> usize {
    match path {
        Simd::Portable => 8,
        Simd::Avx2 => super::sgemm::MR,
        #[cfg(all(target_arch = "x86_64", ember_avx512))]
        Simd::Avx512 => super::sgemm::avx512::MR,
    }
}

/// `s[r, 0..BC] = q_r · kt[.., 0..BC]` for `rows` query rows (`q` row `r` at `q[r · ld ..]`,
/// `d` values; `kt` is `[d, BC]`).
fn scores(path: Simd, q: &[f32], ld: usize, kt: &[f32], d: usize, rows: usize, s: &mut [f32]) {
    assert!(q.len() >= (rows - 1) * ld + d && kt.len() >= d * BC && s.len() >= rows * BC);
    match path {
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => {
            use super::sgemm::{avx2::block, MR, NR};
            let mut acc = [[0f32; NR]; MR];
            for j in (0..BC).step_by(NR) {
                // SAFETY: AVX2 + FMA were detected (the only way `path` is `Avx2`); rows
                // `r < rows` of `q` hold `d` values at stride `ld` (asserted), and `kt` columns
                // `j .. j + 16 <= BC` of its `d` rows of `BC` are inside `kt`.
                unsafe { block(q.as_ptr(), ld, kt.as_ptr().add(j), BC, d, rows, &mut acc) };
                for (r, a) in acc.iter().take(rows).enumerate() {
                    s[r * BC + j..][..NR].copy_from_slice(a);
                }
            }
        }
        #[cfg(all(target_arch = "x86_64", ember_avx512))]
        Simd::Avx512 => {
            use super::sgemm::avx512::{block, Operands, Out};
            let at = Operands {
                lda: ld,
                ldb: BC,
                next: 16,
                k: d,
            };
            for j in (0..BC).step_by(32) {
                let out = Out {
                    ptr: s[j..].as_mut_ptr(),
                    ld: BC,
                    bias: std::ptr::null(),
                };
                // SAFETY: AVX-512 F was detected; `q` and `kt` as in the AVX2 arm, two panels
                // `j .. j + 32 <= BC`; `s` holds `rows` rows of `BC` from column `j`.
                unsafe { block(q.as_ptr(), kt.as_ptr().add(j), at, rows, 2, out) };
            }
        }
        _ => {
            for r in 0..rows {
                let row = &mut s[r * BC..(r + 1) * BC];
                row.fill(0.0);
                for (c, &x) in q[r * ld..r * ld + d].iter().enumerate() {
                    for (sv, &k) in row.iter_mut().zip(&kt[c * BC..(c + 1) * BC]) {
                        *sv += x * k;
                    }
                }
            }
        }
    }
}

/// `o_r = o_r · alpha_r + p_r · v` for `rows` rows: `p` rows of `BC` (the first `cols` read),
/// `v` `[BC, d]`, `o` `[rows, d]`.
#[allow(clippy::too_many_arguments)]
fn context(
    path: Simd,
    p: &[f32],
    v: &[f32],
    d: usize,
    cols: usize,
    rows: usize,
    alpha: &[f32],
    o: &mut [f32],
) {
    assert!(
        cols <= BC && p.len() >= rows * BC && v.len() >= BC * d && o.len() == rows * d,
        "malformed context tile"
    );
    match path {
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => {
            use super::sgemm::{avx2::block, MR, NR};
            let mut acc = [[0f32; NR]; MR];
            for c in (0..d).step_by(NR) {
                // SAFETY: AVX2 + FMA were detected; rows `r < rows` of `p` (stride BC) hold
                // `cols <= BC` values; `v` rows `0..cols` (stride d) hold columns
                // `c .. c + 16 <= d` (d is whole panels on this path).
                unsafe { block(p.as_ptr(), BC, v.as_ptr().add(c), d, cols, rows, &mut acc) };
                for (r, a) in acc.iter().take(rows).enumerate() {
                    rescale_add(&mut o[r * d + c..][..NR], alpha[r], a);
                }
            }
        }
        #[cfg(all(target_arch = "x86_64", ember_avx512))]
        Simd::Avx512 => {
            use super::sgemm::avx512::{block, Operands, Out, MR, NR};
            let mut acc = [[0f32; NR]; MR];
            let at = Operands {
                lda: BC,
                ldb: d,
                next: 16,
                k: cols,
            };
            for c in (0..d).step_by(NR) {
                let panels = ((d - c) / 16).min(2);
                // SAFETY: AVX-512 F was detected; `p` and `v` as in the AVX2 arm, columns
                // `c .. c + 16 · panels <= d`; `acc` holds `MR >= rows` rows of `NR`.
                unsafe {
                    block(
                        p.as_ptr(),
                        v.as_ptr().add(c),
                        at,
                        rows,
                        panels,
                        Out::acc(&mut acc),
                    )
                };
                for (r, a) in acc.iter().take(rows).enumerate() {
                    rescale_add(
                        &mut o[r * d + c..][..16 * panels],
                        alpha[r],
                        &a[..16 * panels],
                    );
                }
            }
        }
        _ => {
            for r in 0..rows {
                let orow = &mut o[r * d..(r + 1) * d];
                orow.iter_mut().for_each(|x| *x *= alpha[r]);
                for (t, &pv) in p[r * BC..r * BC + cols].iter().enumerate() {
                    if pv != 0.0 {
                        for (x, &vv) in orow.iter_mut().zip(&v[t * d..(t + 1) * d]) {
                            *x += pv * vv;
                        }
                    }
                }
            }
        }
    }
}

/// `o = o · alpha + a`.
#[inline]
fn rescale_add(o: &mut [f32], alpha: f32, a: &[f32]) {
    for (x, &y) in o.iter_mut().zip(a) {
        *x = *x * alpha + y;
    }
}

#[cfg(test)]
mod tests;
