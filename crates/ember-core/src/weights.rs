//! Safetensors weights of one model: single-file or sharded, looked up by checkpoint name.
//!
//! Only safetensors are read: Ember never unpickles `pytorch_model.bin`.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType as CDType, Device, Tensor};
use serde::Deserialize;

use crate::config::read_json;
use crate::dtype::DType;
use crate::error::{Error, Result};

/// `model.safetensors.index.json` of a sharded checkpoint.
#[derive(Debug, Deserialize)]
struct ShardIndex {
    weight_map: HashMap<String, String>,
}

/// The safetensors files of a model directory, in load order.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let parsed: ShardIndex = read_json(&index)?;
        let shards: BTreeSet<&String> = parsed.weight_map.values().collect();
        return Ok(shards.into_iter().map(|s| dir.join(s)).collect());
    }
    if dir.join("pytorch_model.bin").is_file() {
        return Err(Error::PickleOnly {
            dir: dir.to_path_buf(),
        });
    }
    Err(Error::MissingFile {
        dir: dir.to_path_buf(),
        file: "model.safetensors (or model.safetensors.index.json)",
    })
}

/// All tensors of a checkpoint, keyed by name.
#[derive(Debug)]
pub struct Weights {
    model: String,
    tensors: HashMap<String, Tensor>,
    /// Prefixes some checkpoints put before every name (`bert.`, `roberta.`, …).
    prefixes: Vec<String>,
    /// The dtype layers store their matrices in.
    dtype: DType,
    device: Device,
}

impl Weights {
    /// Loads every shard to `device`, converting floating tensors to f32.
    pub fn load(model: &str, files: &[PathBuf], device: &Device) -> Result<Self> {
        let mut tensors = HashMap::new();
        for path in files {
            if !path.is_file() {
                return Err(Error::io(
                    path,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "shard file is missing"),
                ));
            }
            let loaded = candle_core::safetensors::load(path, device).map_err(|source| {
                Error::Safetensors {
                    path: path.clone(),
                    source,
                }
            })?;
            for (name, t) in loaded {
                let t = if t.dtype().is_float() && t.dtype() != CDType::F32 {
                    t.to_dtype(CDType::F32)
                        .map_err(|source| Error::Safetensors {
                            path: path.clone(),
                            source,
                        })?
                } else {
                    t
                };
                tensors.insert(name, t);
            }
        }
        Ok(Self {
            model: model.to_string(),
            tensors,
            prefixes: Vec::new(),
            dtype: DType::Fp32,
            device: device.clone(),
        })
    }

    /// Builds weights from tensors already in memory (tests, conversions).
    pub fn from_tensors(model: &str, tensors: HashMap<String, Tensor>) -> Self {
        Self {
            model: model.to_string(),
            tensors,
            prefixes: Vec::new(),
            dtype: DType::Fp32,
            device: Device::Cpu,
        }
    }

    /// Accepts names carrying one of these prefixes (e.g. `bert.` in a `BertForMaskedLM` export).
    pub fn with_prefixes(mut self, prefixes: &[&str]) -> Self {
        self.prefixes = prefixes.iter().map(|p| p.to_string()).collect();
        self
    }

    fn find(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name).or_else(|| {
            self.prefixes
                .iter()
                .find_map(|p| self.tensors.get(&format!("{p}{name}")))
        })
    }

    /// True when the checkpoint holds `name` (with or without one of the prefixes).
    pub fn contains(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    /// The tensor `name` with whatever shape it has.
    pub fn get_any(&self, name: &str) -> Result<Tensor> {
        self.find(name)
            .cloned()
            .ok_or_else(|| Error::MissingWeight {
                model: self.model.clone(),
                name: name.to_string(),
            })
    }

    /// The tensor `name`, which must have exactly `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.find(name).ok_or_else(|| Error::MissingWeight {
            model: self.model.clone(),
            name: name.to_string(),
        })?;
        if t.dims() != shape {
            return Err(Error::ShapeMismatch {
                model: self.model.clone(),
                name: name.to_string(),
                expected: shape.to_vec(),
                actual: t.dims().to_vec(),
            });
        }
        Ok(t.clone())
    }

    /// Makes `name` find `target`'s tensor when the checkpoint has no `name` of its own (tied
    /// weights, which transformers leaves out of the file). Returns whether `name` now resolves.
    pub fn alias(&mut self, name: &str, target: &str) -> bool {
        if self.find(name).is_some() {
            return true;
        }
        match self.find(target).cloned() {
            Some(t) => {
                self.tensors.insert(name.to_string(), t);
                true
            }
            None => false,
        }
    }

    /// Renames every tensor through `f` (another architecture's names for the same layers).
    pub fn with_renames(mut self, f: impl Fn(&str) -> String) -> Self {
        self.tensors = self.tensors.into_iter().map(|(k, v)| (f(&k), v)).collect();
        self
    }

    /// Layers built from these weights store their matrices in `dtype`.
    pub fn with_dtype(mut self, dtype: DType) -> Self {
        self.dtype = dtype;
        self
    }

    /// The dtype matrices are stored in.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The device tensors live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The name of the model these weights belong to.
    pub fn model(&self) -> &str {
        &self.model
    }
}
