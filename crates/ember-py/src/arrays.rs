//! Conversions between Python values and the core's buffers: input texts, NumPy outputs in every
//! output precision, array-like arguments, and the chunked GIL-free embedding loop both
//! `Embedder` and `ModelManager` run.

use ember_core::precision::{quantize, Precision, Quantized};
use ember_core::{EmbedOptions, Embedder, Error};
use numpy::ndarray::{Array2, ArrayView2, Axis};
use numpy::{AllowTypeChange, IntoPyArray, PyArrayLikeDyn, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::errors::{detached, invalid_input, EmberError, IntoPyException};

/// Forward-pass batches per GIL-free call: between calls the GIL is taken back to notice Ctrl-C.
const BATCHES_PER_CALL: usize = 8;

/// Texts from `str` or a sequence of `str`; `true` when a single string was given.
pub(crate) fn texts_of(inputs: &Bound<'_, PyAny>) -> PyResult<(Vec<String>, bool)> {
    if let Ok(s) = inputs.cast::<PyString>() {
        return Ok((vec![s.to_cow()?.into_owned()], true));
    }
    let type_name = |o: &Bound<'_, PyAny>| -> String {
        o.get_type()
            .name()
            .map_or_else(|_| "?".into(), |n| n.to_string())
    };
    let not_texts = || {
        invalid_input(format!(
            "inputs must be a string or a sequence of strings (got {})",
            type_name(inputs)
        ))
    };
    if inputs.is_instance_of::<PyBytes>() {
        return Err(not_texts());
    }
    let iter = inputs.try_iter().map_err(|_| not_texts())?;
    let mut texts = Vec::with_capacity(inputs.len().unwrap_or(0));
    for (i, item) in iter.enumerate() {
        let item = item?;
        let s = item.cast::<PyString>().map_err(|_| {
            invalid_input(format!(
                "input[{i}] is not a string (got {})",
                type_name(&item)
            ))
        })?;
        let text = s
            .to_cow()
            .map_err(|e| invalid_input(format!("input[{i}] is not valid Unicode: {e}")))?;
        texts.push(text.into_owned());
    }
    Ok((texts, false))
}

/// A count argument (`dimensions`, `batch_size`) that must not be negative.
pub(crate) fn count(field: &str, value: i64) -> PyResult<usize> {
    usize::try_from(value).map_err(|_| {
        Error::invalid(field, format!("must not be negative, got {value}")).into_exception()
    })
}

/// `InputTooLong` names the input by its index in the call, not in the chunk.
fn shift_index(err: Error, offset: usize) -> Error {
    match err {
        Error::InputTooLong {
            model,
            index,
            tokens,
            limit,
        } => Error::InputTooLong {
            model,
            index: index + offset,
            tokens,
            limit,
        },
        other => other,
    }
}

/// Texts or pairs per GIL-free call: `batch_size` forward-pass batches, so Ctrl-C is noticed
/// between calls.
pub(crate) fn call_step(batch_size: usize) -> usize {
    batch_size.max(1).saturating_mul(BATCHES_PER_CALL)
}

/// Runs `call` over `items` in chunks of `step`, each with the GIL released, checking for Ctrl-C
/// in between, and hands each chunk's result to `keep`; an `InputTooLong` names the input by its
/// index in the whole call. The one loop behind `encode`, `predict` and `encode_sparse`.
pub(crate) fn in_chunks<T: Sync, R: Send>(
    py: Python<'_>,
    items: &[T],
    step: usize,
    call: impl Fn(&[T]) -> ember_core::Result<R> + Sync,
    mut keep: impl FnMut(R),
) -> PyResult<()> {
    let step = step.max(1);
    for (n, part) in items.chunks(step).enumerate() {
        let r = detached(py, || call(part).map_err(|e| shift_index(e, n * step)))?;
        keep(r);
        py.check_signals()?;
    }
    Ok(())
}

/// Embeds `texts` with `model` in GIL-free chunks; returns the row-major vectors and their
/// dimension.
pub(crate) fn embed_chunked(
    py: Python<'_>,
    model: &Embedder,
    texts: &[String],
    opts: &EmbedOptions,
) -> PyResult<(Vec<f32>, usize)> {
    if texts.is_empty() {
        // Still validates the options and reports the output dimension.
        let e = detached(py, || model.embed(texts, opts))?;
        return Ok((e.data, e.dimension));
    }
    let mut data = Vec::new();
    let mut dim = 0;
    let step = call_step(opts.batch_size);
    in_chunks(
        py,
        texts,
        step,
        |part| model.embed(part, opts),
        |e| {
            if data.is_empty() {
                data.reserve_exact(texts.len() * e.dimension);
            }
            dim = e.dimension;
            data.extend_from_slice(&e.data);
        },
    )?;
    Ok((data, dim))
}

/// A flat row-major buffer as a `(rows, width)` array, or `(width,)` for a single input.
fn shaped<'py, T: numpy::Element>(
    py: Python<'py>,
    data: Vec<T>,
    width: usize,
    single: bool,
) -> PyResult<Bound<'py, PyAny>> {
    if single {
        return Ok(data.into_pyarray(py).into_any());
    }
    let rows = data.len().checked_div(width).unwrap_or(0);
    let array = Array2::from_shape_vec((rows, width), data)
        .map_err(|e| EmberError::new_err(format!("internal error: output shape: {e}")))?;
    Ok(array.into_pyarray(py).into_any())
}

/// Float32 vectors as a NumPy array (see [`shaped`]).
pub(crate) fn to_array(
    py: Python<'_>,
    data: Vec<f32>,
    dim: usize,
    single: bool,
) -> PyResult<Bound<'_, PyAny>> {
    shaped(py, data, dim, single)
}

/// Calibration ranges for int8/uint8 output: a `(2, dim)` array of per-dimension minimums and
/// maximums, as sentence-transformers' `quantize_embeddings(ranges=...)` takes them.
pub(crate) fn ranges_arg(
    ranges: &PyArrayLikeDyn<'_, f32, AllowTypeChange>,
) -> PyResult<(Vec<f32>, Vec<f32>)> {
    let view = ranges.as_array();
    if view.ndim() != 2 || view.shape()[0] != 2 {
        return Err(invalid_input(format!(
            "`ranges` must have shape (2, dimension): row 0 the minimums, row 1 the maximums (got shape {:?})",
            ranges.shape()
        )));
    }
    let row = |i: usize| view.index_axis(Axis(0), i).iter().copied().collect();
    Ok((row(0), row(1)))
}

/// Vectors in an output `precision` (sentence-transformers' `quantize_embeddings`), as a NumPy
/// array of float32, int8 or uint8; binary precisions pack `dim / 8` bytes per vector.
pub(crate) fn to_precision(
    py: Python<'_>,
    data: Vec<f32>,
    dim: usize,
    single: bool,
    precision: Precision,
    ranges: Option<(Vec<f32>, Vec<f32>)>,
) -> PyResult<Bound<'_, PyAny>> {
    if precision == Precision::Float32 {
        return to_array(py, data, dim, single);
    }
    let width = precision.width(dim);
    let quantized = detached(py, || {
        let ranges = ranges
            .as_ref()
            .map(|(lo, hi)| (lo.as_slice(), hi.as_slice()));
        quantize(&data, dim, precision, ranges)
    })?;
    match quantized {
        Quantized::Float32(v) => shaped(py, v, width, single),
        Quantized::Int8(v) => shaped(py, v, width, single),
        Quantized::Uint8(v) => shaped(py, v, width, single),
    }
}

/// A 1-D or 2-D array-like as owned rows.
pub(crate) fn rows_of(
    a: &PyArrayLikeDyn<'_, f32, AllowTypeChange>,
    name: &str,
) -> PyResult<Array2<f32>> {
    let view = a.as_array();
    let shape_err = |e: numpy::ndarray::ShapeError| invalid_input(format!("`{name}`: {e}"));
    match view.ndim() {
        1 => Ok(view
            .insert_axis(Axis(0))
            .into_dimensionality()
            .map_err(shape_err)?
            .to_owned()),
        2 => Ok(view.into_dimensionality().map_err(shape_err)?.to_owned()),
        n => Err(invalid_input(format!(
            "`{name}` must be one vector or a 2-D array of vectors, got {n} dimensions (shape {:?})",
            a.shape()
        ))),
    }
}

/// Cosine similarity of every row of `a` with every row of `b`.
pub(crate) fn cosine_matrix(mut a: Array2<f32>, mut b: Array2<f32>) -> Result<Array2<f32>, Error> {
    if a.ncols() != b.ncols() {
        return Err(Error::invalid(
            "embeddings",
            format!(
                "vectors of different lengths cannot be compared ({} vs {})",
                a.ncols(),
                b.ncols()
            ),
        ));
    }
    for m in [&mut a, &mut b] {
        for mut row in m.rows_mut() {
            let norm = row.dot(&row).sqrt().max(1e-12);
            row.mapv_inplace(|x| x / norm);
        }
    }
    let bt: ArrayView2<'_, f32> = b.t();
    Ok(a.dot(&bt))
}
