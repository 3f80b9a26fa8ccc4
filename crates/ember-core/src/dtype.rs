//! Weight dtypes a model can be loaded in, and their names (`fp32`, `float16`, `int8`, …).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// How a model's weights are stored. Layer norms and biases always stay f32; arithmetic runs in
/// f32 (half and int8 weights are widened on the fly).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// 32-bit float, the reference.
    Fp32,
    /// IEEE half precision: half the bytes.
    Fp16,
    /// bfloat16: half the bytes, f32's range.
    Bf16,
    /// Symmetric int8 with f32 scales per output channel and group of 128 inputs (see
    /// `models::quant::INT8_GROUP`).
    Int8,
}

impl DType {
    /// Every dtype, in order of size.
    pub const ALL: [DType; 4] = [DType::Fp32, DType::Fp16, DType::Bf16, DType::Int8];

    /// The canonical name.
    pub fn as_str(self) -> &'static str {
        match self {
            DType::Fp32 => "fp32",
            DType::Fp16 => "fp16",
            DType::Bf16 => "bf16",
            DType::Int8 => "int8",
        }
    }

    /// Bytes per stored weight, ignoring scales (used to estimate a model's size before loading).
    pub fn weight_fraction(self) -> f64 {
        match self {
            DType::Fp32 => 1.0,
            DType::Fp16 | DType::Bf16 => 0.5,
            DType::Int8 => 0.27,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fp32" | "float32" | "f32" => Ok(DType::Fp32),
            "fp16" | "float16" | "f16" | "half" => Ok(DType::Fp16),
            "bf16" | "bfloat16" => Ok(DType::Bf16),
            "int8" | "i8" | "qint8" => Ok(DType::Int8),
            other => Err(Error::invalid(
                "dtype",
                format!("unknown dtype `{other}`; use one of fp32, fp16, bf16, int8 (or float32, float16, bfloat16)"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases_parse() {
        for (s, d) in [
            ("fp32", DType::Fp32),
            ("float32", DType::Fp32),
            ("FP16", DType::Fp16),
            ("float16", DType::Fp16),
            ("bfloat16", DType::Bf16),
            ("int8", DType::Int8),
        ] {
            assert_eq!(s.parse::<DType>().unwrap(), d);
        }
        let err = "fp8".parse::<DType>().unwrap_err().to_string();
        assert!(err.contains("dtype") && err.contains("fp8"), "{err}");
    }
}
