//! The transformer layer the rotary-position models share (Qwen3, Gemma3, ModernBERT, Alibaba
//! GTE), on unpadded token rows and Ember's kernels: one fused `[Q | K | V]` GEMM (grouped-query
//! heads allowed), per-head RMS norm of Q and K, RoPE from the layer's table, the tiled attention
//! kernel over the layer's span, the output GEMM, and a gated feed-forward (one `[up | gate]`
//! GEMM, the fused gate activation, the down GEMM).
//!
//! The families differ only in where the norms sit, so a block holds each as an option:
//! pre-norm (Qwen3, ModernBERT: `x += f(norm(x))`), Gemma's sandwich (`x += post(f(pre(x)))`)
//! and GTE's post-norm (`x = norm(x + f(x))`).

use std::cell::RefCell;

use rayon::prelude::*;

use super::{Linear, Unpadded};
use crate::error::{Error, Result};
use crate::kernels::flash::{self, Heads, Span};
use crate::kernels::gated::{self, Gate};
use crate::kernels::rope::{self, QkLayout, RopeTable};
use crate::kernels::{elementwise, int8, threads};
use crate::weights::Weights;

/// A normalization over the hidden (or head) width, held on the host in f32.
#[derive(Debug, Clone)]
pub(crate) enum Norm {
    /// RMS norm, `x / rms(x) * gamma` (Gemma's `1 + w` folded into `gamma` at load).
    Rms { gamma: Vec<f32>, eps: f32 },
    /// Layer norm (`beta` zero when the checkpoint has no bias).
    Layer {
        gamma: Vec<f32>,
        beta: Vec<f32>,
        eps: f32,
    },
}

/// Reads a 1-D f32 tensor `name` of `dim` values to the host.
fn vector(w: &Weights, name: &str, dim: usize) -> Result<Vec<f32>> {
    w.get(name, &[dim])?
        .to_vec1::<f32>()
        .map_err(|source| Error::Tensor {
            model: w.model().to_string(),
            source,
        })
}

impl Norm {
    /// RMS norm from `{prefix}.weight`; `plus_one` for Gemma's `(1 + w)` scale.
    pub fn rms(w: &Weights, prefix: &str, dim: usize, eps: f64, plus_one: bool) -> Result<Self> {
        let mut gamma = vector(w, &format!("{prefix}.weight"), dim)?;
        if plus_one {
            gamma.iter_mut().for_each(|g| *g += 1.0);
        }
        Ok(Norm::Rms {
            gamma,
            eps: eps as f32,
        })
    }

    /// Layer norm from `{prefix}.weight` and, when `bias`, `{prefix}.bias`.
    pub fn layer(w: &Weights, prefix: &str, dim: usize, eps: f64, bias: bool) -> Result<Self> {
        Ok(Norm::Layer {
            gamma: vector(w, &format!("{prefix}.weight"), dim)?,
            beta: match bias {
                true => vector(w, &format!("{prefix}.bias"), dim)?,
                false => vec![0.0; dim],
            },
            eps: eps as f32,
        })
    }

    /// `out = norm(x)`, row by row.
    pub fn apply(&self, x: &[f32], out: &mut [f32]) {
        match self {
            Norm::Rms { gamma, eps } => gated::rms_norm(x, gamma, *eps, out),
            Norm::Layer { .. } => {
                out.copy_from_slice(x);
                self.add_in_place(out, &[]);
            }
        }
    }

    /// `x = norm(x + residual)` in place (`residual` may be empty).
    pub fn add_in_place(&self, x: &mut [f32], residual: &[f32]) {
        match self {
            Norm::Layer { gamma, beta, eps } => {
                elementwise::add_layer_norm(x, residual, gamma, beta, *eps)
            }
            Norm::Rms { gamma, eps } => {
                if !residual.is_empty() {
                    gated::add_in_place(x, residual);
                }
                gated::rms_norm_in_place(x, gamma, *eps);
            }
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        match self {
            Norm::Rms { gamma, .. } => gamma.len() * 4,
            Norm::Layer { gamma, beta, .. } => (gamma.len() + beta.len()) * 4,
        }
    }
}

/// One layer. Norms: `pre_*` feed the sublayer, `post_*` scale its output before the residual
/// add, `after_*` normalize the stream after it.
#[derive(Debug)]
pub(crate) struct Block {
    pub pre_attn: Option<Norm>,
    /// `[Q | K | V]` rows, `heads.row()` wide.
    pub qkv: Linear,
    /// Per-head RMS norms of Q and of K (Qwen3, Gemma3).
    pub qk_norm: Option<(Norm, Norm)>,
    pub out: Linear,
    pub post_attn: Option<Norm>,
    pub after_attn: Option<Norm>,
    pub pre_mlp: Option<Norm>,
    /// `[up | gate]` rows, twice the inner width.
    pub up_gate: Linear,
    pub gate: Gate,
    pub down: Linear,
    pub post_mlp: Option<Norm>,
    pub after_mlp: Option<Norm>,
    pub heads: Heads,
    /// Which keys a query sees in this layer.
    pub span: Span,
    /// The score scale.
    pub scale: f32,
    /// Index of this layer's rotary table (models with one base per layer type have two).
    pub rope: usize,
}

/// One thread's buffers for a block, reused across layers and calls.
#[derive(Debug, Default)]
struct Scratch {
    h: Vec<f32>,
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    out: Vec<f32>,
    ug: Vec<f32>,
    g: Vec<f32>,
    xq: int8::QuantizedRows,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

fn sized(v: &mut Vec<f32>, n: usize) -> &mut [f32] {
    v.resize(n, 0.0);
    &mut v[..n]
}

impl Block {
    /// Runs the layer in place on `x` (`[tokens, hidden]` of `u`'s sequences), rotating with
    /// `tables[self.rope]`.
    pub fn forward(
        &self,
        x: &mut [f32],
        u: &Unpadded,
        tables: &[RopeTable],
    ) -> candle_core::Result<()> {
        threads::with_local(&SCRATCH, |s| self.forward_in(x, u, &tables[self.rope], s))
    }

    fn forward_in(
        &self,
        x: &mut [f32],
        u: &Unpadded,
        table: &RopeTable,
        s: &mut Scratch,
    ) -> candle_core::Result<()> {
        let tokens = u.tokens();
        let hidden = x.len() / tokens.max(1);
        // Attention.
        let input: &[f32] = match &self.pre_attn {
            Some(n) => {
                let h = sized(&mut s.h, x.len());
                n.apply(x, h);
                h
            }
            None => x,
        };
        let width = self.heads.row();
        let qkv = sized(&mut s.qkv, tokens * width);
        self.qkv.forward_host(input, &mut s.xq, qkv)?;
        self.rotate(qkv, u, table);
        let ctx = sized(&mut s.ctx, tokens * self.heads.ctx_row());
        let spec = flash::Spec {
            heads: self.heads,
            span: self.span,
            scale: self.scale,
        };
        flash::attention(qkv, &u.seqs, &spec, ctx);
        let out = sized(&mut s.out, tokens * hidden);
        self.out.forward_host(ctx, &mut s.xq, out)?;
        residual(x, out, &self.post_attn, &self.after_attn);
        // Feed-forward.
        let input: &[f32] = match &self.pre_mlp {
            Some(n) => {
                let h = sized(&mut s.h, x.len());
                n.apply(x, h);
                h
            }
            None => x,
        };
        let inner = self.up_gate.out_dim() / 2;
        let ug = sized(&mut s.ug, tokens * 2 * inner);
        self.up_gate.forward_host(input, &mut s.xq, ug)?;
        let g = sized(&mut s.g, tokens * inner);
        gated::gated(ug, inner, self.gate, g);
        let out = sized(&mut s.out, tokens * hidden);
        self.down.forward_host(g, &mut s.xq, out)?;
        residual(x, out, &self.post_mlp, &self.after_mlp);
        Ok(())
    }

    /// Q/K norms, then RoPE, on every sequence's rows of `qkv`.
    fn rotate(&self, qkv: &mut [f32], u: &Unpadded, table: &RopeTable) {
        let Heads {
            heads,
            kv_heads,
            head_dim: d,
        } = self.heads;
        let width = self.heads.row();
        if let Some((qn, kn)) = &self.qk_norm {
            let (Norm::Rms { gamma: gq, eps }, Norm::Rms { gamma: gk, .. }) = (qn, kn) else {
                unreachable!("q/k norms are RMS norms");
            };
            let norm_row = |row: &mut [f32]| {
                gated::rms_norm_in_place(&mut row[..heads * d], gq, *eps);
                gated::rms_norm_in_place(&mut row[heads * d..(heads + kv_heads) * d], gk, *eps);
            };
            if qkv.len() >= 1 << 15 {
                qkv.par_chunks_mut(width).for_each(norm_row);
            } else {
                qkv.chunks_mut(width).for_each(norm_row);
            }
        }
        let layout = QkLayout {
            width,
            q_heads: heads,
            kv_heads,
            head_dim: d,
        };
        for seq in &u.seqs {
            let rows = &mut qkv[seq.start * width..(seq.start + seq.len) * width];
            rope::apply(rows, layout, seq.len, table, false);
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        let norms = [
            &self.pre_attn,
            &self.post_attn,
            &self.after_attn,
            &self.pre_mlp,
            &self.post_mlp,
            &self.after_mlp,
        ];
        norms
            .iter()
            .filter_map(|n| n.as_ref())
            .map(Norm::bytes)
            .sum::<usize>()
            + self
                .qk_norm
                .as_ref()
                .map_or(0, |(q, k)| q.bytes() + k.bytes())
            + self.qkv.bytes()
            + self.out.bytes()
            + self.up_gate.bytes()
            + self.down.bytes()
    }
}

/// `x += post(out)`, then `x = after(x)`, fused where both are plain.
fn residual(x: &mut [f32], out: &mut [f32], post: &Option<Norm>, after: &Option<Norm>) {
    if let Some(n) = post {
        n.add_in_place(out, &[]);
    }
    match after {
        Some(n) => n.add_in_place(x, out),
        None => gated::add_in_place(x, out),
    }
}
