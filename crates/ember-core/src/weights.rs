//! Safetensors weights of one model: single-file or sharded, looked up by checkpoint name.
//!
//! Only safetensors are read: Ember never unpickles `pytorch_model.bin`.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use candle_core::safetensors::Load;
use candle_core::{DType as CDType, Device, Tensor};
use safetensors::tensor::{Metadata, TensorView};
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

/// All tensors of a checkpoint, keyed by name. Tensors of a file are read when a layer asks for
/// them, one at a time: a model's load peaks at its built layers plus one tensor, not at the
/// checkpoint in f32 beside its packed or quantized copies.
#[derive(Debug)]
pub struct Weights {
    model: String,
    tensors: HashMap<String, Slot>,
    /// The files `Slot::Stored` tensors are read from.
    files: Vec<PathBuf>,
    /// Prefixes some checkpoints put before every name (`bert.`, `roberta.`, …).
    prefixes: Vec<String>,
    /// The dtype layers store their matrices in.
    dtype: DType,
    device: Device,
}

/// One tensor: in memory, or where it lies in one of the files.
#[derive(Debug, Clone)]
enum Slot {
    Loaded(Tensor),
    Stored { file: usize, tensor: StoredTensor },
}

impl Slot {
    fn dims(&self) -> &[usize] {
        match self {
            Slot::Loaded(t) => t.dims(),
            Slot::Stored { tensor, .. } => &tensor.shape,
        }
    }
}

impl Weights {
    /// Indexes every shard (its header checked against the file's length); each tensor is read
    /// to `device` when asked for, floating tensors converted to f32.
    pub fn load(model: &str, files: &[PathBuf], device: &Device) -> Result<Self> {
        let mut tensors = HashMap::new();
        for (i, path) in files.iter().enumerate() {
            if !path.is_file() {
                return Err(Error::io(
                    path,
                    std::io::Error::new(std::io::ErrorKind::NotFound, "shard file is missing"),
                ));
            }
            let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            let index = safetensors_index(&mut file).map_err(|source| Error::Safetensors {
                path: path.clone(),
                source,
            })?;
            for tensor in index {
                tensors.insert(tensor.name.clone(), Slot::Stored { file: i, tensor });
            }
        }
        Ok(Self {
            model: model.to_string(),
            tensors,
            files: files.to_vec(),
            prefixes: Vec::new(),
            dtype: DType::Fp32,
            device: device.clone(),
        })
    }

    /// Builds weights from tensors already in memory (tests, conversions).
    pub fn from_tensors(model: &str, tensors: HashMap<String, Tensor>) -> Self {
        Self {
            model: model.to_string(),
            tensors: tensors
                .into_iter()
                .map(|(k, t)| (k, Slot::Loaded(t)))
                .collect(),
            files: Vec::new(),
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

    fn find(&self, name: &str) -> Option<&Slot> {
        self.tensors.get(name).or_else(|| {
            self.prefixes
                .iter()
                .find_map(|p| self.tensors.get(&format!("{p}{name}")))
        })
    }

    fn missing(&self, name: &str) -> Error {
        Error::MissingWeight {
            model: self.model.clone(),
            name: name.to_string(),
        }
    }

    /// `slot`'s tensor: read from its file now when it is not in memory, floating tensors as f32.
    fn read(&self, slot: &Slot) -> Result<Tensor> {
        let (file, tensor) = match slot {
            Slot::Loaded(t) => return Ok(t.clone()),
            Slot::Stored { file, tensor } => (&self.files[*file], tensor),
        };
        let read = || -> candle_core::Result<Tensor> {
            let mut src = std::fs::File::open(file)?;
            let t = tensor.read(&mut src, &self.device)?;
            if t.dtype().is_float() && t.dtype() != CDType::F32 {
                t.to_dtype(CDType::F32)
            } else {
                Ok(t)
            }
        };
        read().map_err(|source| Error::Safetensors {
            path: file.clone(),
            source,
        })
    }

    /// True when the checkpoint holds `name` (with or without one of the prefixes).
    pub fn contains(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    /// The tensor `name` with whatever shape it has.
    pub fn get_any(&self, name: &str) -> Result<Tensor> {
        let slot = self.find(name).ok_or_else(|| self.missing(name))?;
        self.read(slot)
    }

    /// The tensor `name`, which must have exactly `shape` (checked before it is read).
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let slot = self.find(name).ok_or_else(|| self.missing(name))?;
        if slot.dims() != shape {
            return Err(Error::ShapeMismatch {
                model: self.model.clone(),
                name: name.to_string(),
                expected: shape.to_vec(),
                actual: slot.dims().to_vec(),
            });
        }
        self.read(slot)
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

/// The largest safetensors header read (the format's own limit): a longer one is refused before
/// it is allocated.
const MAX_HEADER_BYTES: usize = 100_000_000;

/// Where one tensor of a safetensors file lies: its name, dtype and shape, and its bytes,
/// checked against the file's length and against its dtype and shape.
#[derive(Debug, Clone)]
pub struct StoredTensor {
    pub name: String,
    pub shape: Vec<usize>,
    dtype: safetensors::Dtype,
    /// Offset of its first byte in the file.
    start: u64,
    len: usize,
}

impl StoredTensor {
    /// Reads the tensor from `src` (the file it was indexed from) to `device`, in its stored
    /// dtype.
    pub fn read<R: Read + Seek>(
        &self,
        src: &mut R,
        device: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut buf = vec![0u8; self.len];
        src.seek(SeekFrom::Start(self.start))?;
        src.read_exact(&mut buf)?;
        let view = TensorView::new(self.dtype, self.shape.clone(), &buf)
            .map_err(|e| candle_core::Error::Msg(format!("tensor `{}`: {e}", self.name)))?;
        view.load(device)
    }
}

/// The tensors of a safetensors file in `src`, in file order, from its header, each checked to
/// lie inside the file and to fill its bytes exactly; nothing is read but the header.
///
/// Hand-written around the `safetensors` crate's header parser because candle's
/// `safetensors::load` reads the whole file into memory and then copies every tensor out of it
/// (twice a checkpoint's size at the peak, before any layer is built), and candle's
/// memory-mapped loader needs `unsafe`, which this crate keeps to its kernels. Every size the
/// header claims is checked against the file before anything is allocated for it.
pub fn safetensors_index<R: Read + Seek>(src: &mut R) -> candle_core::Result<Vec<StoredTensor>> {
    use candle_core::Error as E;
    let mut len = [0u8; 8];
    src.seek(SeekFrom::Start(0))?;
    src.read_exact(&mut len)
        .map_err(|e| E::Msg(format!("cannot read the header length: {e}")))?;
    let header_len = usize::try_from(u64::from_le_bytes(len)).unwrap_or(usize::MAX);
    let file_len = src.seek(SeekFrom::End(0))?;
    let file_len = usize::try_from(file_len).unwrap_or(usize::MAX);
    if header_len > MAX_HEADER_BYTES || header_len > file_len.saturating_sub(8) {
        return Err(E::Msg(format!(
            "invalid header length {header_len} (the file has {file_len} bytes)"
        )));
    }
    let mut header = vec![0u8; header_len];
    src.seek(SeekFrom::Start(8))?;
    src.read_exact(&mut header)?;
    let metadata: Metadata =
        serde_json::from_slice(&header).map_err(|e| E::Msg(format!("invalid header: {e}")))?;
    let data_start = 8 + header_len;
    let data_len = file_len - data_start;
    let mut out: Vec<StoredTensor> = Vec::new();
    for (name, info) in metadata.tensors() {
        let (start, end) = info.data_offsets;
        if start > end || end > data_len {
            return Err(E::Msg(format!(
                "tensor `{name}` claims bytes {start}..{end} of a {data_len}-byte data section"
            )));
        }
        let bits = info
            .shape
            .iter()
            .try_fold(info.dtype.bitsize(), |n, &d| n.checked_mul(d));
        if bits != Some((end - start) * 8) {
            return Err(E::Msg(format!(
                "tensor `{name}` of shape {:?} and dtype {:?} does not fill its {} bytes",
                info.shape,
                info.dtype,
                end - start
            )));
        }
        out.push(StoredTensor {
            name,
            shape: info.shape.clone(),
            dtype: info.dtype,
            start: (data_start + start) as u64,
            len: end - start,
        });
    }
    out.sort_by_key(|t| t.start);
    Ok(out)
}
