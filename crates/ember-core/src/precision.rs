//! Output quantization of embeddings, as sentence-transformers' `quantize_embeddings` defines it:
//! `float32`, `int8` / `uint8` (255 buckets per dimension between calibration ranges), `binary` /
//! `ubinary` (sign bits packed eight to a byte, most significant first).

use std::str::FromStr;

use serde::Serialize;

use crate::error::{Error, Result};

/// The output precision of embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    Float32,
    Int8,
    Uint8,
    Binary,
    Ubinary,
}

impl FromStr for Precision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "float32" | "float" | "fp32" => Ok(Precision::Float32),
            "int8" => Ok(Precision::Int8),
            "uint8" => Ok(Precision::Uint8),
            "binary" => Ok(Precision::Binary),
            "ubinary" => Ok(Precision::Ubinary),
            other => Err(Error::invalid(
                "precision",
                format!("unknown precision `{other}`; use float32, int8, uint8, binary or ubinary"),
            )),
        }
    }
}

impl Precision {
    /// Values per vector of dimension `dim` in this precision.
    pub fn width(self, dim: usize) -> usize {
        match self {
            Precision::Binary | Precision::Ubinary => dim.div_ceil(8),
            _ => dim,
        }
    }
}

/// Quantized vectors, row-major `[rows, width]`.
#[derive(Debug, Clone, PartialEq)]
pub enum Quantized {
    Float32(Vec<f32>),
    Int8(Vec<i8>),
    Uint8(Vec<u8>),
}

/// Per-dimension `[min; dim]` and `[max; dim]` from a set of embeddings (the calibration).
pub fn ranges_of(data: &[f32], dim: usize) -> (Vec<f32>, Vec<f32>) {
    let mut lo = vec![f32::INFINITY; dim];
    let mut hi = vec![f32::NEG_INFINITY; dim];
    for row in data.chunks_exact(dim.max(1)) {
        for (j, &v) in row.iter().enumerate() {
            lo[j] = lo[j].min(v);
            hi[j] = hi[j].max(v);
        }
    }
    (lo, hi)
}

/// Quantizes `data` (`rows × dim`, row-major). `ranges` (min and max per dimension) calibrate
/// `int8`/`uint8`; without them the embeddings themselves are the calibration, which needs at
/// least two of them (as in sentence-transformers).
pub fn quantize(
    data: &[f32],
    dim: usize,
    precision: Precision,
    ranges: Option<(&[f32], &[f32])>,
) -> Result<Quantized> {
    let rows = data.len().checked_div(dim).unwrap_or(0);
    match precision {
        Precision::Float32 => Ok(Quantized::Float32(data.to_vec())),
        Precision::Int8 | Precision::Uint8 => {
            let owned;
            let (lo, hi) = match ranges {
                Some((lo, hi)) => {
                    if lo.len() != dim || hi.len() != dim {
                        return Err(Error::invalid(
                            "ranges",
                            format!("calibration ranges must have {dim} values per bound, got {} and {}", lo.len(), hi.len()),
                        ));
                    }
                    (lo, hi)
                }
                None if rows == 1 => {
                    return Err(Error::invalid(
                        "precision",
                        format!("cannot compute {precision:?} quantization ranges from a single embedding; pass calibration ranges or more inputs").to_lowercase(),
                    ))
                }
                None => {
                    owned = ranges_of(data, dim);
                    (owned.0.as_slice(), owned.1.as_slice())
                }
            };
            let steps: Vec<f32> = lo
                .iter()
                .zip(hi)
                .map(|(l, h)| {
                    let s = (h - l) / 255.0;
                    if s == 0.0 {
                        1.0
                    } else {
                        s
                    }
                })
                .collect();
            let buckets = data.chunks_exact(dim.max(1)).flat_map(|row| {
                row.iter()
                    .zip(lo.iter().zip(&steps))
                    .map(|(v, (l, s))| ((v - l) / s).floor().clamp(0.0, 255.0))
            });
            Ok(if precision == Precision::Uint8 {
                Quantized::Uint8(buckets.map(|b| b as u8).collect())
            } else {
                Quantized::Int8(buckets.map(|b| (b - 128.0) as i8).collect())
            })
        }
        Precision::Binary | Precision::Ubinary => {
            let width = precision.width(dim);
            let mut packed = vec![0u8; rows * width];
            for (r, row) in data.chunks_exact(dim.max(1)).enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    if v > 0.0 {
                        packed[r * width + j / 8] |= 0x80 >> (j % 8);
                    }
                }
            }
            Ok(if precision == Precision::Ubinary {
                Quantized::Uint8(packed)
            } else {
                Quantized::Int8(packed.into_iter().map(|b| (b as i16 - 128) as i8).collect())
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_packs_most_significant_bit_first() {
        let v = [1.0, -1.0, 0.0, 2.0, -3.0, 0.5, 0.1, -0.1, 4.0];
        let Quantized::Uint8(b) = quantize(&v, 9, Precision::Ubinary, None).unwrap() else {
            panic!()
        };
        assert_eq!(b, vec![0b1001_0110, 0b1000_0000]);
        let Quantized::Int8(s) = quantize(&v, 9, Precision::Binary, None).unwrap() else {
            panic!()
        };
        assert_eq!(s, vec![(0b1001_0110_i16 - 128) as i8, 0]);
    }

    #[test]
    fn int8_needs_calibration_for_one_vector() {
        let err = quantize(&[0.1, 0.2], 2, Precision::Int8, None).unwrap_err();
        assert!(err.to_string().contains("single embedding"), "{err}");
    }
}
