//! Sparse (SPLADE) vectors and per-token vectors as NumPy arrays, for `Embedder.encode_sparse`
//! and `Embedder.encode(output_value="token_embeddings")`.

use ember_core::{Embedder, SparseOptions, SparseVector};
use numpy::ndarray::Array2;
use numpy::IntoPyArray;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use crate::arrays::in_chunks;
use crate::errors::{detached, invalid_input};

/// Texts per GIL-free call: Ctrl-C is noticed in between.
const TEXTS_PER_CALL: usize = 256;

/// Sparse vectors of `texts`, in GIL-free chunks.
fn vectors(
    py: Python<'_>,
    model: &Embedder,
    texts: &[String],
    opts: &SparseOptions,
) -> PyResult<Vec<SparseVector>> {
    let mut out = Vec::with_capacity(texts.len());
    in_chunks(
        py,
        texts,
        TEXTS_PER_CALL,
        |part| model.embed_sparse(part, opts),
        |e| out.extend(e.vectors),
    )?;
    if texts.is_empty() {
        // Still checks the model's kind and the options.
        detached(py, || model.embed_sparse(texts, opts))?;
    }
    Ok(out)
}

/// `encode_sparse`: a `(indices, values)` pair of arrays per text (int64 vocabulary ids by
/// increasing id, float32 weights), or one pair for a single string; with `csr`, the arguments
/// of `scipy.sparse.csr_matrix`: `((data, indices, indptr), (rows, vocabulary size))`.
pub(crate) fn encode_sparse<'py>(
    py: Python<'py>,
    model: &Embedder,
    texts: &[String],
    single: bool,
    opts: &SparseOptions,
    csr: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let vectors = vectors(py, model, texts, opts)?;
    let pair = |v: SparseVector| -> PyResult<Bound<'py, PyTuple>> {
        let indices: Vec<i64> = v.indices.iter().map(|&i| i64::from(i)).collect();
        PyTuple::new(
            py,
            [
                indices.into_pyarray(py).into_any(),
                v.values.into_pyarray(py).into_any(),
            ],
        )
    };
    if csr {
        let mut indptr = vec![0i64];
        let (mut data, mut indices) = (Vec::new(), Vec::new());
        for v in &vectors {
            data.extend_from_slice(&v.values);
            indices.extend(v.indices.iter().map(|&i| i64::from(i)));
            indptr.push(indices.len() as i64);
        }
        let arrays = PyTuple::new(
            py,
            [
                data.into_pyarray(py).into_any(),
                indices.into_pyarray(py).into_any(),
                indptr.into_pyarray(py).into_any(),
            ],
        )?;
        let shape = (vectors.len(), model.dimension()).into_pyobject(py)?;
        return Ok(PyTuple::new(py, [arrays.into_any(), shape.into_any()])?.into_any());
    }
    if single {
        let v = vectors.into_iter().next().unwrap_or_default();
        return Ok(pair(v)?.into_any());
    }
    let list = PyList::empty(py);
    for v in vectors {
        list.append(pair(v)?)?;
    }
    Ok(list.into_any())
}

/// `encode(output_value="token_embeddings")`: one float32 array `(tokens, dimension)` per text
/// (special tokens included, not normalized), or one array for a single string.
pub(crate) fn token_embeddings<'py>(
    py: Python<'py>,
    model: &Embedder,
    texts: &[String],
    single: bool,
    max_length: usize,
    batch_size: usize,
) -> PyResult<Bound<'py, PyAny>> {
    model
        .require_kind(ember_core::ModelKind::Embedder, "token embeddings")
        .map_err(crate::errors::IntoPyException::into_exception)?;
    let dim = model.hidden_size();
    let mut arrays = Vec::with_capacity(texts.len());
    for part in texts.chunks(TEXTS_PER_CALL) {
        let rows = detached(py, || {
            model.token_embeddings_with(part, max_length, true, batch_size)
        })?;
        for r in rows {
            let n = r.len() / dim.max(1);
            let a = Array2::from_shape_vec((n, dim), r)
                .map_err(|e| invalid_input(format!("internal error: {e}")))?;
            arrays.push(a.into_pyarray(py).into_any());
        }
        py.check_signals()?;
    }
    if single {
        return arrays
            .into_iter()
            .next()
            .ok_or_else(|| invalid_input("no input"));
    }
    Ok(PyList::new(py, arrays)?.into_any())
}
