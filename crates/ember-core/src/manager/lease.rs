//! A model in use: [`Lease`] holds a loaded model for as long as it lives, so eviction never
//! drops a model mid-request, and its drop marks the use finished (the model's last use is
//! refreshed, and keep-alive 0 unloads it). Nobody has to remember to say "finished".

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use super::{Inner, KeepAlive};
use crate::dtype::DType;
use crate::embedder::Embedder;
use crate::registry::ModelSpec;

/// A loaded model's key: one model in one dtype.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// The catalog id.
    pub model: String,
    pub dtype: DType,
}

impl Key {
    pub fn new(model: &str, dtype: DType) -> Self {
        Self {
            model: model.to_string(),
            dtype,
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` ({})", self.model, self.dtype)
    }
}

/// What a request will use, resolved from the catalog without loading anything.
#[derive(Debug, Clone)]
pub struct Target {
    /// The catalog entry.
    pub spec: ModelSpec,
    /// The (model, dtype) that serves it.
    pub key: Key,
}

/// A model held for one use (a request's batch, a warm-up, a Python handle). Derefs to the
/// model; dropping it ends the use. `M` is the kind of model the manager holds.
pub struct Lease<M = Embedder> {
    /// `Some` until dropped (the drop lets go of the model before ending the use).
    model: Option<Arc<M>>,
    key: Key,
    inner: Arc<Inner>,
}

impl<M> Lease<M> {
    pub(super) fn new(model: Arc<M>, key: Key, inner: Arc<Inner>) -> Self {
        Self {
            model: Some(model),
            key,
            inner,
        }
    }

    /// The (model, dtype) this lease holds.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// Sets the model's keep-alive (a request's `keep_alive`, as Ollama does); it counts from
    /// the end of this use.
    pub fn set_keep_alive(&self, keep_alive: KeepAlive) {
        if let Ok(mut st) = self.inner.state.lock() {
            st.set_keep_alive(&self.key, keep_alive);
        }
    }
}

impl<M> Deref for Lease<M> {
    type Target = M;

    fn deref(&self) -> &M {
        match &self.model {
            Some(m) => m,
            None => unreachable!("a lease's model is taken only by its drop"),
        }
    }
}

impl<M> fmt::Debug for Lease<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease").field("key", &self.key).finish()
    }
}

impl<M> Drop for Lease<M> {
    fn drop(&mut self) {
        // The model is let go first, so keep-alive 0 finds it unused and unloads it now.
        drop(self.model.take());
        self.inner.finished(&self.key);
    }
}
