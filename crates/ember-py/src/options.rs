//! Python arguments that the core takes as typed values: weight `dtype`, `keep_alive`, a memory
//! size (`2GB`), an output `precision`, and the process-wide thread count.

use std::ffi::CString;

use ember_core::precision::Precision;
use ember_core::{DType, Error, KeepAlive};
use pyo3::exceptions::PyUserWarning;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyFloat, PyInt, PyString};

use crate::errors::{invalid_input, IntoPyException};

/// `"fp32"`, `"float16"`, … as a [`DType`]; `None` stays `None` (the model's default).
pub(crate) fn dtype(value: Option<&str>) -> PyResult<Option<DType>> {
    value
        .map(|s| s.parse::<DType>().map_err(IntoPyException::into_exception))
        .transpose()
}

/// An output precision name.
pub(crate) fn precision(value: &str) -> PyResult<Precision> {
    value.parse().map_err(IntoPyException::into_exception)
}

/// A keep-alive as Ollama takes it: a duration string (`"5m"`, `"-1"`), a number of seconds
/// (negative: forever), or a `datetime.timedelta`.
pub(crate) fn keep_alive(value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<KeepAlive>> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(None);
    };
    let parsed = if let Ok(s) = value.cast::<PyString>() {
        s.to_cow()?.parse::<KeepAlive>()
    } else if value.is_instance_of::<PyBool>() {
        return Err(bad_keep_alive(value));
    } else if value.is_instance_of::<PyInt>() || value.is_instance_of::<PyFloat>() {
        KeepAlive::from_secs_f64(value.extract::<f64>()?)
    } else if let Ok(secs) = value.call_method0("total_seconds") {
        KeepAlive::from_secs_f64(secs.extract::<f64>()?)
    } else {
        return Err(bad_keep_alive(value));
    };
    parsed.map(Some).map_err(IntoPyException::into_exception)
}

fn bad_keep_alive(value: &Bound<'_, PyAny>) -> PyErr {
    Error::invalid(
        "keep_alive",
        format!(
            "must be seconds, a duration like \"5m\" or \"-1\", or a timedelta (got {})",
            value
                .get_type()
                .name()
                .map_or_else(|_| "?".into(), |n| n.to_string())
        ),
    )
    .into_exception()
}

/// A size in bytes: an int, or a string such as `"2GB"`, `"512 MiB"`, `"1.5g"` (decimal units
/// are powers of 1000, `KiB`/`MiB`/`GiB`/`TiB` powers of 1024).
pub(crate) fn bytes(value: Option<&Bound<'_, PyAny>>, field: &str) -> PyResult<Option<usize>> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(None);
    };
    if value.is_instance_of::<PyBool>() {
        return Err(invalid_input(format!(
            "`{field}` must be a number of bytes or a size like \"2GB\""
        )));
    }
    if let Ok(n) = value.extract::<i64>() {
        return usize::try_from(n)
            .map(Some)
            .map_err(|_| invalid_input(format!("`{field}` must not be negative, got {n}")));
    }
    let Ok(text) = value.extract::<String>() else {
        return Err(invalid_input(format!(
            "`{field}` must be a number of bytes or a size like \"2GB\""
        )));
    };
    parse_size(&text).map(Some).ok_or_else(|| {
        invalid_input(format!(
            "`{field}` = {text:?} is not a size; use bytes or forms like \"2GB\", \"512MiB\""
        ))
    })
}

/// `"2GB"` → 2_000_000_000; `None` when the text is not a size.
fn parse_size(text: &str) -> Option<usize> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let number: f64 = t[..split].parse().ok()?;
    let factor: f64 = match t[split..].trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024f64.powi(2),
        "gib" => 1024f64.powi(3),
        "tib" => 1024f64.powi(4),
        _ => return None,
    };
    let bytes = (number * factor).round();
    (bytes.is_finite() && bytes >= 0.0 && bytes < usize::MAX as f64).then_some(bytes as usize)
}

/// Sizes the process-wide compute thread pool (rayon's global pool, which the matrix products,
/// attention and tokenizer share). It can be sized once, before the first model runs; a later
/// different request only warns, since the pool already runs.
pub(crate) fn set_threads(py: Python<'_>, threads: i64) -> PyResult<()> {
    let n = usize::try_from(threads)
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| invalid_input(format!("`threads` must be at least 1, got {threads}")))?;
    if rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .is_ok()
    {
        return Ok(());
    }
    let running = rayon::current_num_threads();
    if running == n {
        return Ok(());
    }
    let message = format!(
        "threads={n} ignored: Ember's thread pool already runs {running} thread(s), sized at \
         first use; pass threads to the first Embedder of the process or set EMBER_NUM_THREADS \
         before importing ember"
    );
    let message = CString::new(message).unwrap_or_default();
    PyErr::warn(py, &py.get_type::<PyUserWarning>(), &message, 1)
}
