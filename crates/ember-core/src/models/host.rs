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
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => {
            let all = cpu.as_slice::<f32>()?;
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
    xq: int8::QuantizedRows,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch buffers (`kernels::threads::with_local`).
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    kernels::threads::with_local(&SCRATCH, f)
}

fn sized(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
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
    /// Applies the activation in place.
    pub(crate) fn forward_host(&self, x: &mut [f32]) {
        match self {
            Activation::Gelu => kernels::elementwise::gelu_erf(x),
            Activation::GeluTanh => x.iter_mut().for_each(|v| {
                let c = (2.0 / std::f32::consts::PI).sqrt();
                *v = 0.5 * *v * (1.0 + (c * (*v + 0.044_715 * *v * *v * *v)).tanh());
            }),
            Activation::Relu => x.iter_mut().for_each(|v| *v = v.max(0.0)),
        }
    }
}

/// The parts of one post-norm encoder layer (BERT and MPNet share the shape).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LayerParts<'a> {
    pub qkv: &'a Linear,
    pub attn_out: &'a Linear,
    pub attn_norm: &'a LayerNorm,
    pub intermediate: &'a Linear,
    pub output: &'a Linear,
    pub out_norm: &'a LayerNorm,
    pub heads: usize,
    pub act: Activation,
}

/// One layer in place on `x` (`[batch * seq, hidden]`); `bias` is empty or `[heads, seq, seq]`.
pub(crate) fn layer_forward(
    p: LayerParts<'_>,
    x: &mut [f32],
    batch: &Batch,
    bias: &[f32],
    s: &mut Scratch,
) -> candle_core::Result<()> {
    let rows = batch.batch * batch.seq;
    let h = x.len() / rows.max(1);
    let qkv = sized(&mut s.qkv, rows * p.qkv.out_dim());
    p.qkv.forward_host(x, &mut s.xq, qkv)?;
    let ctx = sized(&mut s.ctx, rows * h);
    let shape = AttnShape {
        batch: batch.batch,
        seq: batch.seq,
        heads: p.heads,
        head_dim: h / p.heads,
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
                    head_dim: h / p.heads,
                },
                span: flash::Span::FULL,
                scale: 1.0 / ((h / p.heads) as f32).sqrt(),
            };
            flash::attention(qkv, &seqs, &spec, ctx);
        }
        None => kernels::attention::attention(qkv, &batch.mask, bias, shape, ctx),
    }
    let tmp = sized(&mut s.tmp, rows * h);
    p.attn_out.forward_host(ctx, &mut s.xq, tmp)?;
    // x = LN(x + attention output): the residual sum is symmetric, so no copy back is needed.
    p.attn_norm.forward_host(x, tmp)?;
    let ff = sized(&mut s.ff, rows * p.intermediate.out_dim());
    p.intermediate.forward_host(x, &mut s.xq, ff)?;
    p.act.forward_host(ff);
    p.output.forward_host(ff, &mut s.xq, tmp)?;
    p.out_norm.forward_host(x, tmp)?;
    Ok(())
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
