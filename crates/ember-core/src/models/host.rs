//! The CPU forward pass of a transformer layer on host buffers, through `crate::kernels`: fused
//! bias GEMMs (f32 or int8), attention straight from the fused QKV rows, residual add + layer norm
//! and GELU in place. Scratch buffers live per thread and are reused across layers and calls.
//!
//! The candle-tensor path (`Module::forward`) stays for other devices and as the benchmarks'
//! baseline.

use std::cell::RefCell;

use candle_core::{Storage, Tensor};

use super::quant::Stored;
use super::{Activation, Batch, LayerNorm, Linear};
use crate::kernels::rope::{QkLayout, Rope, RopeTable};
use crate::kernels::{self, attention::AttnShape, flash, int8};

/// Padded length from which the tiled attention kernel takes over from the dense one: equal at
/// 128 tokens, 1.07x at 512 and 2.7x at 2,048 on base-size heads (`benches/attention.rs`), and
/// memory linear in the length instead of a score row per query per thread.
const TILED_FROM: usize = 512;

/// The batch's sequences as row ranges for the tiled kernel, when it should take them: long
/// enough, no relative-position bias, and each row's tokens in one run (padding at either end).
fn long_rows(batch: &Batch, bias: &[f32]) -> Option<Vec<flash::Rows>> {
    if batch.seq < TILED_FROM || !bias.is_empty() {
        return None;
    }
    let mut seqs = Vec::with_capacity(batch.batch);
    for (b, m) in batch.mask.chunks_exact(batch.seq).enumerate() {
        let first = m.iter().position(|&v| v != 0).unwrap_or(0);
        let len = m.iter().filter(|&&v| v != 0).count();
        if m[first..first + len].contains(&0) {
            return None;
        }
        seqs.push(flash::Rows {
            start: b * batch.seq + first,
            len,
        });
    }
    Some(seqs)
}

/// Runs `f` on `t`'s f32 values when `t` is a contiguous f32 tensor in CPU memory.
pub(crate) fn with_host<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    with_host_as::<f32, R>(t, f)
}

/// Runs `f` on `t`'s values when `t` is a contiguous tensor of `T` in CPU memory.
pub(crate) fn with_host_as<T: candle_core::WithDType, R>(
    t: &Tensor,
    f: impl FnOnce(&[T]) -> R,
) -> candle_core::Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => {
            let all = cpu.as_slice::<T>()?;
            match layout.contiguous_offsets() {
                Some((a, b)) => Ok(f(&all[a..b])),
                None => candle_core::bail!("tensor {:?} is not contiguous", t.shape()),
            }
        }
        _ => candle_core::bail!("tensor {:?} is not in CPU memory", t.shape()),
    }
}

/// Reusable buffers for one layer's intermediates.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    tmp: Vec<f32>,
    ff: Vec<f32>,
    gated: Vec<f32>,
    xq: int8::QuantizedRows,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch buffers (`kernels::threads::with_local`).
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    kernels::threads::with_local(&SCRATCH, f)
}

/// `v` resized to `n` values (stale values kept: every caller writes before it reads).
pub(crate) fn sized(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    v.resize(n, 0.0);
    &mut v[..n]
}

impl Linear {
    /// `out[rows, out_dim] = x[rows, in_dim] W^T + b` on host slices, with the integer GEMM
    /// for int8 weights and the f32 GEMM otherwise.
    pub(crate) fn forward_host(
        &self,
        x: &[f32],
        xq: &mut int8::QuantizedRows,
        out: &mut [f32],
    ) -> candle_core::Result<()> {
        match &self.bias {
            Some(b) => with_host(b, |b| self.gemm_host(x, b, xq, out))?,
            None => self.gemm_host(x, &[], xq, out),
        }
    }

    fn gemm_host(
        &self,
        x: &[f32],
        bias: &[f32],
        xq: &mut int8::QuantizedRows,
        out: &mut [f32],
    ) -> candle_core::Result<()> {
        let (n, k) = self.weight.dims();
        let m = x.len() / k;
        match &self.weight {
            Stored::Packed(w) => {
                kernels::sgemm::linear(x, w, bias, out);
                Ok(())
            }
            Stored::F32(w) => with_host(w, |w| kernels::gemm::linear(x, w, bias, m, k, n, out)),
            Stored::Int8(w) => match w.panels() {
                Some(p) => {
                    int8::quantize_rows(x, k, p.group, xq);
                    int8::gemm(xq, p, bias, out);
                    Ok(())
                }
                None => with_host(&w.dequantize()?, |w| {
                    kernels::gemm::linear(x, w, bias, m, k, n, out)
                }),
            },
            other => with_host(&other.to_f32()?, |w| {
                kernels::gemm::linear(x, w, bias, m, k, n, out)
            }),
        }
    }
}

impl LayerNorm {
    /// `x = LN(x + residual)` in place (`residual` may be empty).
    pub(crate) fn forward_host(&self, x: &mut [f32], residual: &[f32]) -> candle_core::Result<()> {
        with_host(&self.weight, |g| {
            with_host(&self.bias, |b| {
                kernels::elementwise::add_layer_norm(x, residual, g, b, self.eps)
            })
        })?
    }
}

impl Activation {
    /// Applies the activation to `x`, rows of `width` values: in place, or for a gated one from
    /// `[up | gate]` rows into `gated` (rows of `width / 2`). Returns the activated rows.
    pub(crate) fn apply_host<'a>(
        &self,
        x: &'a mut [f32],
        width: usize,
        gated: &'a mut Vec<f32>,
    ) -> &'a [f32] {
        use kernels::gated::{self as g, Gate};
        let gate = match self {
            Activation::SwiGlu => Gate::Silu,
            Activation::GeGluTanh => Gate::GeluTanh,
            Activation::Gelu => {
                kernels::elementwise::gelu_erf(x);
                return x;
            }
            Activation::GeluTanh => {
                g::gelu_tanh_in_place(x);
                return x;
            }
            Activation::Relu => {
                x.iter_mut().for_each(|v| *v = v.max(0.0));
                return x;
            }
            Activation::Silu => {
                x.iter_mut().for_each(|v| *v = g::silu(*v));
                return x;
            }
            Activation::Tanh => {
                x.iter_mut().for_each(|v| *v = v.tanh());
                return x;
            }
            Activation::Sigmoid => {
                x.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp()));
                return x;
            }
            Activation::Identity => return x,
        };
        let out = sized(gated, x.len() / 2);
        g::gated(x, width / 2, gate, out);
        out
    }
}

/// The self-attention of a layer: fused QKV projection, rotary embeddings, output projection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttnParts<'a> {
    pub qkv: &'a Linear,
    pub out: &'a Linear,
    pub heads: usize,
    /// Rotary embeddings applied to Q and K after the projection (NomicBERT).
    pub rope: Option<&'a RopeBatch>,
    /// The attention score scale; `None`: `1 / sqrt(head_dim)` (T5: 1).
    pub scale: Option<f32>,
}

/// The feed-forward of a layer: `down(act(up(x)))`, `up` giving `[up | gate]` rows for a gated
/// activation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MlpParts<'a> {
    pub up: &'a Linear,
    pub act: Activation,
    pub down: &'a Linear,
}

/// The parts of one post-norm encoder layer (BERT, MPNet and NomicBERT share the shape; T5 and
/// pre-norm NomicBERT use the attention and MLP blocks alone).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LayerParts<'a> {
    pub attn: AttnParts<'a>,
    pub attn_norm: &'a LayerNorm,
    pub mlp: MlpParts<'a>,
    pub out_norm: &'a LayerNorm,
}

/// One post-norm layer in place on `x` (`[batch * seq, hidden]`); `bias` is empty or
/// `[heads, seq, seq]`.
pub(crate) fn layer_forward(
    p: LayerParts<'_>,
    x: &mut [f32],
    batch: &Batch,
    bias: &[f32],
    s: &mut Scratch,
) -> candle_core::Result<()> {
    let mut tmp = std::mem::take(&mut s.tmp);
    let out = sized(&mut tmp, x.len());
    let done = attention_block(p.attn, x, batch, bias, s, out).and_then(|()| {
        // x = LN(x + attention output): the residual sum is symmetric, so no copy back is needed.
        p.attn_norm.forward_host(x, out)?;
        mlp_block(p.mlp, x, s, out)?;
        p.out_norm.forward_host(x, out)
    });
    s.tmp = tmp;
    done
}

/// Self-attention of `x` (`[batch * seq, hidden]`): the fused QKV projection, rotary embeddings
/// when `p` has them, attention (`bias` empty or `[heads, seq, seq]`) and the output projection
/// into `out` (`[batch * seq, hidden]`).
pub(crate) fn attention_block(
    p: AttnParts<'_>,
    x: &[f32],
    batch: &Batch,
    bias: &[f32],
    s: &mut Scratch,
    out: &mut [f32],
) -> candle_core::Result<()> {
    let rows = batch.batch * batch.seq;
    let width = p.qkv.out_dim();
    // Q, K and V are `inner` wide each (the hidden size, or T5's heads × d_kv).
    let inner = width / 3;
    let head_dim = inner / p.heads;
    let qkv = sized(&mut s.qkv, rows * width);
    p.qkv.forward_host(x, &mut s.xq, qkv)?;
    if let Some(rope) = p.rope {
        rope.apply(qkv, batch.seq, width, p.heads, p.heads, head_dim);
    }
    let ctx = sized(&mut s.ctx, rows * inner);
    let shape = AttnShape {
        batch: batch.batch,
        seq: batch.seq,
        heads: p.heads,
        head_dim,
        scale: p.scale.unwrap_or_else(|| AttnShape::scale_for(head_dim)),
    };
    match long_rows(batch, bias) {
        Some(seqs) => {
            // Padding rows are never pooled, but the next layer reads them: zero, as the dense
            // kernel leaves them.
            ctx.fill(0.0);
            let spec = flash::Spec {
                heads: flash::Heads {
                    heads: p.heads,
                    kv_heads: p.heads,
                    head_dim,
                },
                span: flash::Span::FULL,
                scale: shape.scale,
            };
            flash::attention(qkv, &seqs, &spec, ctx);
        }
        None => kernels::attention::attention(qkv, &batch.mask, bias, shape, ctx),
    }
    p.out.forward_host(ctx, &mut s.xq, out)
}

/// The feed-forward of `x` into `out`: intermediate projection, activation (gated or not),
/// output projection.
pub(crate) fn mlp_block(
    p: MlpParts<'_>,
    x: &[f32],
    s: &mut Scratch,
    out: &mut [f32],
) -> candle_core::Result<()> {
    let width = p.up.out_dim();
    let rows = x.len() / p.up.in_dim().max(1);
    let ff = sized(&mut s.ff, rows * width);
    p.up.forward_host(x, &mut s.xq, ff)?;
    let ff = p.act.apply_host(ff, width, &mut s.gated);
    p.down.forward_host(ff, &mut s.xq, out)
}

/// The rotary tables of one batch: each sequence rotates with the table of its own length's base
/// (dynamic NTK scaling past the trained length; see `kernels::rope`).
#[derive(Debug)]
pub(crate) struct RopeBatch {
    /// Per sequence: its real length and the index of its table.
    rows: Vec<(usize, usize)>,
    tables: Vec<RopeTable>,
    interleaved: bool,
}

impl RopeBatch {
    /// Tables for `batch`: one shared by every sequence within the trained length, one per
    /// longer sequence when scaling is on.
    pub(crate) fn new(rope: &Rope, batch: &Batch) -> Self {
        let mut tables: Vec<(f64, RopeTable)> = Vec::new();
        let mut rows = Vec::with_capacity(batch.batch);
        for b in 0..batch.batch {
            let len = batch.len_of(b);
            let base = rope.base_for(len);
            let at = match tables.iter().position(|(tb, _)| *tb == base) {
                Some(i) => i,
                None => {
                    tables.push((base, rope.table(base, batch.seq)));
                    tables.len() - 1
                }
            };
            rows.push((len, at));
        }
        Self {
            rows,
            tables: tables.into_iter().map(|(_, t)| t).collect(),
            interleaved: rope.interleaved,
        }
    }

    /// Rotates the Q and K heads of `qkv` (`[batch * seq, width]`).
    pub(crate) fn apply(
        &self,
        qkv: &mut [f32],
        seq: usize,
        width: usize,
        q_heads: usize,
        kv_heads: usize,
        head_dim: usize,
    ) {
        let layout = QkLayout {
            width,
            q_heads,
            kv_heads,
            head_dim,
        };
        for (rows, &(len, t)) in qkv.chunks_exact_mut(seq * width).zip(&self.rows) {
            kernels::rope::apply(rows, layout, len, &self.tables[t], self.interleaved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(rows: &[(usize, usize)], seq: usize) -> Batch {
        let mut mask = vec![0u32; rows.len() * seq];
        for (b, &(first, len)) in rows.iter().enumerate() {
            mask[b * seq + first..b * seq + first + len].fill(1);
        }
        Batch {
            ids: vec![0; mask.len()],
            type_ids: vec![0; mask.len()],
            batch: rows.len(),
            seq,
            mask,
        }
    }

    #[test]
    fn long_batches_go_to_the_tiled_kernel_as_row_ranges() {
        // Right and left padding, and an empty row.
        let b = batch(&[(0, 600), (100, 500), (0, 0)], 600);
        let seqs = long_rows(&b, &[]).expect("long, no bias, no holes");
        let want = [(0, 600), (700, 500), (1200, 0)];
        for (s, &(start, len)) in seqs.iter().zip(&want) {
            assert_eq!((s.start, s.len), (start, len));
        }
        // Short batches, a relative-position bias, or a hole inside a row stay dense.
        assert!(long_rows(&batch(&[(0, 100)], 100), &[]).is_none());
        assert!(long_rows(&b, &[0.0]).is_none());
        let mut holed = batch(&[(0, 600)], 600);
        holed.mask[300] = 0;
        assert!(long_rows(&holed, &[]).is_none());
    }
}
