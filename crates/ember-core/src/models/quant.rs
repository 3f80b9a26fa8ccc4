//! Weight storage per dtype: f32, half (f16/bf16) tensors, or int8 with per-row f32 scales.
//!
//! Hand-written because candle has no int8 tensor type: the int8 data lives in a plain `Vec<i8>`
//! (real integer storage, a quarter of the f32 bytes) and is widened on the fly.

use std::sync::Arc;

use candle_core::{DType as CDType, Device, Tensor};

use crate::dtype::DType;
use crate::kernels::int8::{self, PackedInt8};
use crate::kernels::sgemm::PackedF32;

/// Values of a row that share one int8 scale. Per-row scales alone let one large weight (or an
/// outlier input channel) cost the whole row its precision: on all-mpnet-base-v2 a degenerate
/// input fell to cosine 0.80 against FP32; groups of 128 keep every reference text above 0.997
/// for 3 % more bytes. Rows whose length 128 does not divide fall back to one scale per row.
pub const INT8_GROUP: usize = 128;

/// A `[rows, cols]` matrix stored in one of Ember's dtypes.
#[derive(Debug, Clone)]
pub enum Stored {
    /// f32, as loaded.
    F32(Tensor),
    /// f16 or bf16.
    Half(Tensor),
    /// Symmetric int8, `value = q * scale[row, group]` (column panels for CPU linear layers).
    Int8(Arc<Int8Matrix>),
    /// f32 in the column panels the CPU GEMM reads (linear layers on the CPU).
    Packed(Arc<PackedF32>),
}

/// Int8 values with one f32 scale per `group` consecutive values of a row (`group == cols`:
/// one scale per row).
#[derive(Debug)]
pub struct Int8Matrix {
    pub rows: usize,
    pub cols: usize,
    pub group: usize,
    data: Int8Data,
    device: Device,
}

/// Where an int8 matrix's values live.
#[derive(Debug)]
enum Int8Data {
    /// Row-major `[rows, cols]` with `[rows, cols / group]` scales (embedding tables).
    Rows { q: Vec<i8>, scales: Vec<f32> },
    /// Column panels for the integer GEMM (linear layers on the CPU).
    Panels(PackedInt8),
}

impl Int8Matrix {
    /// Quantizes each group of a row symmetrically to [-127, 127] with `scale = max|group| / 127`.
    /// `group` must divide `cols` (else one scale per row is used).
    pub fn quantize(w: &[f32], rows: usize, cols: usize, group: usize, device: &Device) -> Self {
        let group = if group > 0 && cols % group == 0 {
            group
        } else {
            cols.max(1)
        };
        let mut q = Vec::with_capacity(rows * cols);
        let mut scales = Vec::with_capacity(rows * cols / group);
        for chunk in w.chunks_exact(group) {
            let max = chunk.iter().fold(0f32, |m, x| m.max(x.abs()));
            let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
            scales.push(scale);
            q.extend(
                chunk
                    .iter()
                    .map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8),
            );
        }
        Self {
            rows,
            cols,
            group,
            data: Int8Data::Rows { q, scales },
            device: device.clone(),
        }
    }

    /// The same matrix in the column panels the integer GEMM reads (a linear layer's weight on
    /// the CPU), or unchanged when the kernel does not take its shape or device.
    pub fn into_panels(self) -> Self {
        match self.data {
            Int8Data::Rows { q, scales }
                if self.device.is_cpu() && int8::supports(self.cols, self.group) =>
            {
                let packed = PackedInt8::pack(&q, &scales, self.rows, self.cols, self.group);
                Self {
                    data: Int8Data::Panels(packed),
                    ..self
                }
            }
            data => Self { data, ..self },
        }
    }

    /// The packed weights, when `into_panels` packed them.
    pub fn panels(&self) -> Option<&PackedInt8> {
        match &self.data {
            Int8Data::Panels(p) => Some(p),
            Int8Data::Rows { .. } => None,
        }
    }

    /// Rows `ids`, widened to f32, as a `[ids.len(), cols]` tensor.
    pub fn gather(&self, ids: &[u32]) -> candle_core::Result<Tensor> {
        let mut out = Vec::with_capacity(ids.len() * self.cols);
        let unpacked;
        let (q, scales) = match &self.data {
            Int8Data::Rows { q, scales } => (q, scales),
            Int8Data::Panels(p) => {
                unpacked = p.unpack();
                (&unpacked.0, &unpacked.1)
            }
        };
        let per_row = self.cols / self.group;
        for &id in ids {
            let r = id as usize;
            if r >= self.rows {
                candle_core::bail!("index {r} out of range for {} rows", self.rows);
            }
            let row = &q[r * self.cols..(r + 1) * self.cols];
            for (chunk, &s) in row
                .chunks_exact(self.group)
                .zip(&scales[r * per_row..(r + 1) * per_row])
            {
                out.extend(chunk.iter().map(|&v| v as f32 * s));
            }
        }
        Tensor::from_vec(out, (ids.len(), self.cols), &self.device)
    }

    /// Adds rows `ids`, widened to f32, to `out` (`[ids.len(), cols]`), on the host.
    pub fn add_rows(&self, ids: &[u32], out: &mut [f32]) -> candle_core::Result<()> {
        let Int8Data::Rows { q, scales } = &self.data else {
            candle_core::bail!("an int8 embedding table is kept in rows, never packed");
        };
        let per_row = self.cols / self.group;
        for (&id, o) in ids.iter().zip(out.chunks_exact_mut(self.cols)) {
            let r = id as usize;
            if r >= self.rows {
                candle_core::bail!("index {r} out of range for {} rows", self.rows);
            }
            let row = &q[r * self.cols..(r + 1) * self.cols];
            let groups = row
                .chunks_exact(self.group)
                .zip(o.chunks_exact_mut(self.group));
            for ((chunk, o), &s) in groups.zip(&scales[r * per_row..(r + 1) * per_row]) {
                o.iter_mut()
                    .zip(chunk)
                    .for_each(|(o, &v)| *o += v as f32 * s);
            }
        }
        Ok(())
    }

    /// The whole matrix widened to f32.
    pub fn dequantize(&self) -> candle_core::Result<Tensor> {
        let ids: Vec<u32> = (0..self.rows as u32).collect();
        self.gather(&ids)
    }

    fn bytes(&self) -> usize {
        match &self.data {
            Int8Data::Rows { q, scales } => q.len() + scales.len() * 4,
            Int8Data::Panels(p) => p.bytes(),
        }
    }
}

impl Stored {
    /// Converts an f32 `[rows, cols]` tensor to `dtype`.
    pub fn new(t: Tensor, dtype: DType) -> candle_core::Result<Self> {
        Ok(match dtype {
            DType::Fp32 => Stored::F32(t),
            DType::Fp16 => Stored::Half(t.to_dtype(CDType::F16)?),
            DType::Bf16 => Stored::Half(t.to_dtype(CDType::BF16)?),
            DType::Int8 => {
                let (rows, cols) = t.dims2()?;
                let data = t.flatten_all()?.to_vec1::<f32>()?;
                Stored::Int8(Arc::new(Int8Matrix::quantize(
                    &data,
                    rows,
                    cols,
                    INT8_GROUP,
                    t.device(),
                )))
            }
        })
    }

    /// A linear layer's weight in the layout its CPU kernel reads: f32 and int8 on the CPU
    /// become column panels (packed once here, never per call); other dtypes and devices stay.
    pub fn for_linear(self) -> candle_core::Result<Self> {
        match self {
            Stored::F32(t) if t.device().is_cpu() => {
                let (n, k) = t.dims2()?;
                let w = t.flatten_all()?.to_vec1::<f32>()?;
                Ok(Stored::Packed(Arc::new(PackedF32::pack(&w, n, k))))
            }
            Stored::Half(t) if t.device().is_cpu() => {
                let (n, k) = t.dims2()?;
                let flat = t.flatten_all()?;
                let packed = match t.dtype() {
                    CDType::BF16 => PackedF32::pack_bf16(&flat.to_vec1::<half::bf16>()?, n, k),
                    _ => PackedF32::pack_f16(&flat.to_vec1::<half::f16>()?, n, k),
                };
                Ok(Stored::Packed(Arc::new(packed)))
            }
            Stored::Int8(m) => Ok(Stored::Int8(match Arc::try_unwrap(m) {
                Ok(m) => Arc::new(m.into_panels()),
                Err(shared) => shared,
            })),
            other => Ok(other),
        }
    }

    /// The matrix as an f32 tensor (a cheap clone for f32, widened or unpacked otherwise).
    pub fn to_f32(&self) -> candle_core::Result<Tensor> {
        match self {
            Stored::F32(t) => Ok(t.clone()),
            Stored::Half(t) => t.to_dtype(CDType::F32),
            Stored::Int8(m) => m.dequantize(),
            Stored::Packed(p) => Tensor::from_vec(p.unpack(), (p.n, p.k), &Device::Cpu),
        }
    }

    /// Rows `ids` as f32 `[ids.len(), cols]` (embedding lookup).
    pub fn gather(&self, ids: &[u32]) -> candle_core::Result<Tensor> {
        match self {
            Stored::Int8(m) => m.gather(ids),
            Stored::Packed(_) => self
                .to_f32()?
                .index_select(&Tensor::from_slice(ids, ids.len(), &Device::Cpu)?, 0),
            Stored::F32(t) | Stored::Half(t) => {
                let idx = Tensor::from_slice(ids, ids.len(), t.device())?;
                t.index_select(&idx, 0)?.to_dtype(CDType::F32)
            }
        }
    }

    /// Adds rows `ids`, widened to f32, to `out` (`[ids.len(), cols]`) on the host: the
    /// embedding lookups of the CPU forward pass, with no tensor made. Ids past the table are an
    /// error, never a panic.
    pub fn add_rows(&self, ids: &[u32], out: &mut [f32]) -> candle_core::Result<()> {
        let (rows, cols) = self.dims();
        if out.len() != ids.len() * cols {
            candle_core::bail!(
                "{} ids need {} outputs, got {}",
                ids.len(),
                ids.len() * cols,
                out.len()
            );
        }
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= rows) {
            candle_core::bail!("index {bad} out of range for {rows} rows");
        }
        fn add<T: candle_core::WithDType>(table: &[T], ids: &[u32], cols: usize, out: &mut [f32]) {
            for (&id, o) in ids.iter().zip(out.chunks_exact_mut(cols)) {
                let row = &table[id as usize * cols..][..cols];
                o.iter_mut()
                    .zip(row)
                    .for_each(|(o, v)| *o += v.to_f64() as f32);
            }
        }
        match self {
            Stored::Int8(m) => m.add_rows(ids, out),
            Stored::F32(t) => super::host::with_host(t, |table| {
                for (&id, o) in ids.iter().zip(out.chunks_exact_mut(cols)) {
                    let row = &table[id as usize * cols..][..cols];
                    o.iter_mut().zip(row).for_each(|(o, &v)| *o += v);
                }
            }),
            Stored::Half(t) if t.dtype() == CDType::BF16 => {
                super::host::with_host_as::<half::bf16, _>(t, |table| add(table, ids, cols, out))
            }
            Stored::Half(t) => {
                super::host::with_host_as::<half::f16, _>(t, |table| add(table, ids, cols, out))
            }
            Stored::Packed(p) => {
                let table = p.unpack();
                add(&table, ids, cols, out);
                Ok(())
            }
        }
    }

    /// `(rows, cols)`.
    pub fn dims(&self) -> (usize, usize) {
        match self {
            Stored::F32(t) | Stored::Half(t) => {
                let d = t.dims();
                (d[0], d[1])
            }
            Stored::Int8(m) => (m.rows, m.cols),
            Stored::Packed(p) => (p.n, p.k),
        }
    }

    /// Bytes held, scales included.
    pub fn bytes(&self) -> usize {
        match self {
            Stored::F32(t) | Stored::Half(t) => t.elem_count() * t.dtype().size_in_bytes(),
            Stored::Int8(m) => m.bytes(),
            Stored::Packed(p) => p.bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_round_trip_is_within_half_a_step() {
        let w: Vec<f32> = (0..64)
            .map(|i| ((i * 37 % 17) as f32 - 8.0) / 3.0)
            .collect();
        let m = Int8Matrix::quantize(&w, 4, 16, 16, &Device::Cpu);
        let back = m
            .dequantize()
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let Int8Data::Rows { scales, .. } = &m.data else {
            panic!("quantize keeps rows")
        };
        for (r, (row, brow)) in w.chunks(16).zip(back.chunks(16)).enumerate() {
            let step = scales[r];
            for (a, b) in row.iter().zip(brow) {
                assert!((a - b).abs() <= step / 2.0 + 1e-6);
            }
        }
        assert_eq!(m.bytes(), 64 + 16);
    }

    #[test]
    fn int8_panels_read_back_like_rows() {
        let (rows, cols) = (20, 256);
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 7919 % 263) as f32 - 131.0) / 50.0)
            .collect();
        let flat = Int8Matrix::quantize(&w, rows, cols, INT8_GROUP, &Device::Cpu);
        let want = flat.dequantize().unwrap().to_vec2::<f32>().unwrap();
        let ids = [3u32, 0, 19];
        let want_rows = flat.gather(&ids).unwrap().to_vec2::<f32>().unwrap();
        let packed = flat.into_panels();
        let p = packed
            .panels()
            .expect("256 columns in groups of 128 are packed");
        assert_eq!((p.n, p.k, p.group), (rows, cols, INT8_GROUP));
        assert_eq!(packed.dequantize().unwrap().to_vec2::<f32>().unwrap(), want);
        assert_eq!(
            packed.gather(&ids).unwrap().to_vec2::<f32>().unwrap(),
            want_rows
        );
        assert!(packed.gather(&[20]).is_err());
        // 20 rows pad to 32 columns of panels.
        assert_eq!(packed.bytes(), 32 * cols + 32 * 2 * 4);
        // Rows that 128 does not divide: one scale per row, still packed (padded to steps of 4).
        let odd = Int8Matrix::quantize(&w[..rows * 5], rows, 5, INT8_GROUP, &Device::Cpu);
        assert_eq!(odd.group, 5);
        assert!(odd.into_panels().panels().is_some());
    }
}
