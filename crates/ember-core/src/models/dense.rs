//! sentence-transformers' `Dense` modules (`2_Dense` … `N_Dense`): a linear layer (weight,
//! optional bias) and a named activation, applied to the pooled vectors in the order of
//! `modules.json`, after pooling and before `Normalize`, for any architecture.
//!
//! The layers go through the same `Linear` as the encoders (packed GEMM; f16/bf16/int8 weights
//! in the model's dtype).

use std::path::{Path, PathBuf};

use candle_core::Device;

use super::{Activation, Linear};
use crate::config::{read_json, DenseConfigFile, ModuleEntry};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::kernels::int8::QuantizedRows;
use crate::weights::Weights;

/// One Dense module.
#[derive(Debug)]
pub struct Dense {
    linear: Linear,
    act: Activation,
    in_features: usize,
    out_features: usize,
}

impl Dense {
    /// Loads the module in `dir` (its `config.json` and `model.safetensors`), which must read
    /// `input` values per vector (the previous module's output, named `from` in errors).
    pub fn load(
        id: &str,
        dir: &Path,
        input: usize,
        from: &str,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let config = dir.join("config.json");
        if !config.is_file() {
            return Err(Error::MissingFile {
                dir: dir.to_path_buf(),
                file: "config.json",
            });
        }
        let cfg: DenseConfigFile = read_json(&config)?;
        if cfg.in_features != input {
            return Err(Error::ModuleShape {
                path: config,
                message: format!(
                    "in_features is {} but {from} outputs {input} values per vector, so the \
                     modules do not chain",
                    cfg.in_features
                ),
            });
        }
        if cfg.out_features == 0 {
            return Err(Error::ModuleShape {
                path: config,
                message: "out_features is 0".into(),
            });
        }
        let act = Activation::from_torch_class(&cfg.activation_function).ok_or_else(|| {
            Error::Config {
                path: config.clone(),
                message: format!(
                    "activation_function `{}` is not supported (Identity, Tanh, ReLU, GELU, \
                     SiLU, Sigmoid)",
                    cfg.activation_function
                ),
            }
        })?;
        let files = crate::weights::weight_files(dir)?;
        let w = Weights::load(id, &files, device)?.with_dtype(dtype);
        let shape_err = |name: &str, actual: Vec<usize>, expected: Vec<usize>| Error::ModuleShape {
            path: files[0].clone(),
            message: format!(
                "`{name}` has shape {actual:?}, but {} says {expected:?} (in_features {}, \
                 out_features {})",
                config.display(),
                cfg.in_features,
                cfg.out_features
            ),
        };
        let weight = w.get_any("linear.weight")?;
        let want = vec![cfg.out_features, cfg.in_features];
        if weight.dims() != want.as_slice() {
            return Err(shape_err("linear.weight", weight.dims().to_vec(), want));
        }
        let bias = match cfg.bias {
            true => {
                let b = w.get_any("linear.bias")?;
                if b.dims() != [cfg.out_features] {
                    return Err(shape_err(
                        "linear.bias",
                        b.dims().to_vec(),
                        vec![cfg.out_features],
                    ));
                }
                Some(b)
            }
            false => None,
        };
        Ok(Self {
            linear: Linear::from_tensors(&w, weight, bias)?,
            act,
            in_features: cfg.in_features,
            out_features: cfg.out_features,
        })
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.out_features
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.linear.bytes()
    }

    /// `act(x W^T + b)` for `[rows, in_features]` vectors.
    pub fn forward(&self, x: &[f32]) -> candle_core::Result<Vec<f32>> {
        let rows = x.len() / self.in_features.max(1);
        let mut out = vec![0f32; rows * self.out_features];
        let mut xq = QuantizedRows::default();
        self.linear.forward_host(x, &mut xq, &mut out)?;
        let mut unused = Vec::new();
        self.act
            .apply_host(&mut out, self.out_features, &mut unused);
        Ok(out)
    }
}

/// The Dense modules `modules.json` lists after pooling, loaded in order: the first reads the
/// pooled `input` values, each next one its predecessor's output.
pub fn load_chain(
    id: &str,
    dir: &Path,
    modules: &[ModuleEntry],
    input: usize,
    dtype: DType,
    device: &Device,
) -> Result<Vec<Dense>> {
    let mut chain: Vec<Dense> = Vec::new();
    let mut from = String::from("the pooling module");
    let mut width = input;
    for m in modules.iter().filter(|m| m.kind.ends_with(".Dense")) {
        let module_dir: PathBuf = dir.join(&m.path);
        let dense = Dense::load(id, &module_dir, width, &from, dtype, device)?;
        width = dense.out_features;
        from = format!("the Dense module `{}`", m.path);
        chain.push(dense);
    }
    Ok(chain)
}
