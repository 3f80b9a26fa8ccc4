//! The one place Rust errors become Python exceptions, and [`detached`], the helper every long
//! call goes through: it releases the GIL, catches panics and converts errors, so no call site
//! forgets one of them.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use ember_core::{Error, ErrorKind};
use pyo3::prelude::*;

// The classes are defined in `ember/_errors.py`: `ModelNotFoundError` is also a `KeyError` and
// `InvalidInputError` a `ValueError`, and `create_exception!` takes a single base class.
pyo3::import_exception!(ember._errors, EmberError);
pyo3::import_exception!(ember._errors, ModelNotFoundError);
pyo3::import_exception!(ember._errors, ModelLoadError);
pyo3::import_exception!(ember._errors, InvalidInputError);
pyo3::import_exception!(ember._errors, CapacityError);
pyo3::import_exception!(ember._errors, UnsupportedModelError);

/// The Python exception for an error of `kind`, carrying `message`.
pub(crate) fn exception(kind: ErrorKind, message: String) -> PyErr {
    match kind {
        ErrorKind::ModelNotFound => ModelNotFoundError::new_err(message),
        ErrorKind::InvalidInput => InvalidInputError::new_err(message),
        ErrorKind::ModelLoad => ModelLoadError::new_err(message),
        ErrorKind::Unsupported => UnsupportedModelError::new_err(message),
        ErrorKind::Capacity => CapacityError::new_err(message),
        ErrorKind::Internal => EmberError::new_err(message),
    }
}

/// `InvalidInputError(message)`, for checks the bindings make before calling the core.
pub(crate) fn invalid_input(message: impl Into<String>) -> PyErr {
    exception(ErrorKind::InvalidInput, message.into())
}

/// An error a detached call can return.
pub(crate) trait IntoPyException {
    /// The Python exception to raise.
    fn into_exception(self) -> PyErr;
}

impl IntoPyException for Error {
    fn into_exception(self) -> PyErr {
        exception(self.kind(), self.to_string())
    }
}

impl IntoPyException for anyhow::Error {
    fn into_exception(self) -> PyErr {
        // The server wraps core errors with context: keep the core's class, show the whole chain.
        let kind = self
            .chain()
            .find_map(|e| e.downcast_ref::<Error>())
            .map_or(ErrorKind::Internal, Error::kind);
        exception(kind, format!("{self:#}"))
    }
}

/// Runs `f` with the GIL released, so other Python threads run meanwhile. A panic becomes an
/// `EmberError` instead of aborting the interpreter; an error becomes its exception class.
pub(crate) fn detached<T, E, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    F: FnOnce() -> Result<T, E> + Send,
    T: Send,
    E: IntoPyException + Send,
{
    match py.detach(|| catch_unwind(AssertUnwindSafe(f))) {
        Ok(result) => result.map_err(IntoPyException::into_exception),
        Err(payload) => Err(EmberError::new_err(format!(
            "internal error: Ember panicked ({}); please report this bug",
            panic_message(payload.as_ref())
        ))),
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "no message"
    }
}
