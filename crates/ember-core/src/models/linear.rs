//! The one linear-layer type every encoder goes through.
//!
//! The weight dtype (f32, f16/bf16, int8) is chosen when the weights are loaded, never inside
//! `forward`: `forward` is the same code for every dtype.

use candle_core::{Module, Tensor};

use super::quant::Stored;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::weights::Weights;

/// `y = x W^T + b`, with `W` stored `[out, in]` as in PyTorch checkpoints.
#[derive(Debug, Clone)]
pub struct Linear {
    pub(super) weight: Stored,
    pub(super) bias: Option<Tensor>,
}

impl Linear {
    /// Loads `{prefix}.weight` (`[out, in]`) and `{prefix}.bias` (`[out]`) in the weights' dtype.
    pub fn load(w: &Weights, prefix: &str, in_dim: usize, out_dim: usize) -> Result<Self> {
        Self::load_fused(w, &[prefix], in_dim, out_dim)
    }

    /// Loads several layers that read the same input (e.g. Q, K, V) as one, so one matmul serves
    /// them all; outputs are concatenated in the given order, each `out_each` wide.
    pub fn load_fused(
        w: &Weights,
        prefixes: &[&str],
        in_dim: usize,
        out_each: usize,
    ) -> Result<Self> {
        Self::load_fused_with(w, prefixes, in_dim, out_each, true)
    }

    /// `load` for a layer that has a bias only when `bias` (NomicBERT's `qkv_proj_bias`, T5's
    /// bias-free projections).
    pub fn load_opt(
        w: &Weights,
        prefix: &str,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
    ) -> Result<Self> {
        Self::load_fused_with(w, &[prefix], in_dim, out_dim, bias)
    }

    /// `load_fused` for layers that have biases only when `bias`.
    pub fn load_fused_with(
        w: &Weights,
        prefixes: &[&str],
        in_dim: usize,
        out_each: usize,
        bias: bool,
    ) -> Result<Self> {
        let (weight, bias) = Self::read(w, prefixes, in_dim, out_each, bias)?;
        Self::from_tensors(w, weight, bias)
    }

    /// `load_opt` with the matrix stored in `dtype` whatever the weights' dtype (a small head
    /// kept in FP32 over a quantized encoder).
    pub fn load_opt_in(
        w: &Weights,
        prefix: &str,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
        dtype: DType,
    ) -> Result<Self> {
        let (weight, bias) = Self::read(w, &[prefix], in_dim, out_dim, bias)?;
        Self::stored_as(w, weight, bias, dtype)
    }

    /// The `[out, in]` weights of `prefixes` concatenated, and their biases when `bias`.
    fn read(
        w: &Weights,
        prefixes: &[&str],
        in_dim: usize,
        out_each: usize,
        bias: bool,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let mut weights = Vec::with_capacity(prefixes.len());
        let mut biases = Vec::with_capacity(prefixes.len());
        for p in prefixes {
            weights.push(w.get(&format!("{p}.weight"), &[out_each, in_dim])?);
            if bias {
                biases.push(w.get(&format!("{p}.bias"), &[out_each])?);
            }
        }
        let tensor_err = |source| Error::Tensor {
            model: w.model().to_string(),
            source,
        };
        let weight = Tensor::cat(&weights, 0).map_err(tensor_err)?;
        let bias = match bias {
            true => Some(Tensor::cat(&biases, 0).map_err(tensor_err)?),
            false => None,
        };
        Ok((weight, bias))
    }

    /// A layer from an `[out, in]` weight and an optional `[out]` bias already in memory, stored
    /// in the weights' dtype.
    pub fn from_tensors(w: &Weights, weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        Self::stored_as(w, weight, bias, w.dtype())
    }

    fn stored_as(w: &Weights, weight: Tensor, bias: Option<Tensor>, dtype: DType) -> Result<Self> {
        let tensor_err = |source| Error::Tensor {
            model: w.model().to_string(),
            source,
        };
        Ok(Self {
            weight: Stored::new(weight, dtype)
                .and_then(Stored::for_linear)
                .map_err(tensor_err)?,
            bias,
        })
    }

    /// Input features.
    pub fn in_dim(&self) -> usize {
        self.weight.dims().1
    }

    /// Output features.
    pub fn out_dim(&self) -> usize {
        self.weight.dims().0
    }

    /// Bytes held by this layer's tensors.
    pub fn bytes(&self) -> usize {
        self.weight.bytes() + self.bias.as_ref().map_or(0, |b| b.elem_count() * 4)
    }
}

impl Module for Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        // Flatten leading dims so one GEMM runs over every token of the batch.
        let dims = x.dims().to_vec();
        let in_dim = dims[dims.len() - 1];
        let rows = x.elem_count() / in_dim.max(1);
        let x2 = x.reshape((rows, in_dim))?;
        if let Stored::Packed(w) = &self.weight {
            // CPU weights are only kept packed: the host GEMM serves this path too.
            let x2 = x2.contiguous()?;
            let mut y = vec![0f32; rows * w.n];
            let bias = self.bias.as_ref().map(|b| b.to_vec1::<f32>()).transpose()?;
            super::host::with_host(&x2, |x| {
                crate::kernels::sgemm::linear(x, w, bias.as_deref().unwrap_or(&[]), &mut y)
            })?;
            let mut out_dims = dims;
            let last = out_dims.len() - 1;
            out_dims[last] = w.n;
            return Tensor::from_vec(y, out_dims, x.device());
        }
        let mut y = x2.matmul(&self.weight.to_f32()?.t()?)?;
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b)?;
        }
        let mut out_dims = dims;
        let last = out_dims.len() - 1;
        out_dims[last] = self.out_dim();
        y.reshape(out_dims)
    }
}
