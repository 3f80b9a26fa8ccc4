//! Loaded models, keyed by id: lazy loading on first use, one load per model at a time, and the
//! catalog view with load state. (The LRU budget, dtypes and keep-alive build on this.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use serde::Serialize;

use crate::embedder::{EmbedOptions, Embedder, Embeddings};
use crate::error::{Error, Result};
use crate::registry::{ModelSpec, Registry};
use crate::resolve::Resolver;

type Slot = Arc<Mutex<Option<Arc<Embedder>>>>;

/// A catalog entry with its load state.
#[derive(Debug, Clone, Serialize)]
pub struct ModelStatus {
    #[serde(flatten)]
    pub spec: ModelSpec,
    pub loaded: bool,
    /// Bytes held by the loaded weights.
    pub bytes: Option<usize>,
}

/// Holds the registry, the resolver and the loaded models. `Send + Sync`.
#[derive(Debug)]
pub struct ModelManager {
    registry: RwLock<Registry>,
    resolver: Resolver,
    slots: Mutex<HashMap<String, Slot>>,
}

fn poisoned<T>(_: T) -> Error {
    Error::Internal("a model lock was poisoned by an earlier panic".into())
}

impl ModelManager {
    /// A manager over `registry`, finding files with `resolver`.
    pub fn new(registry: Registry, resolver: Resolver) -> Self {
        Self {
            registry: RwLock::new(registry),
            resolver,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// A copy of the catalog.
    pub fn registry(&self) -> Result<Registry> {
        Ok(self.registry.read().map_err(poisoned)?.clone())
    }

    /// Changes the catalog (register models, set the default).
    pub fn update_registry<T>(&self, f: impl FnOnce(&mut Registry) -> Result<T>) -> Result<T> {
        f(&mut *self.registry.write().map_err(poisoned)?)
    }

    /// The catalog entry for `id` (or the default model when `None`).
    pub fn spec(&self, id: Option<&str>) -> Result<ModelSpec> {
        let reg = self.registry.read().map_err(poisoned)?;
        match id {
            Some(id) => reg.lookup(id),
            None => Ok(reg.default_model().clone()),
        }
    }

    /// The loaded model for `id`, loading it first if needed. Concurrent callers for one cold
    /// model share a single load; other models are not blocked; a failed load is not cached.
    pub fn get(&self, id: Option<&str>) -> Result<Arc<Embedder>> {
        let spec = self.spec(id)?;
        if !spec.supported {
            return Err(Error::Unsupported {
                id: spec.id,
                architecture: spec.architecture,
            });
        }
        let slot = self
            .slots
            .lock()
            .map_err(poisoned)?
            .entry(spec.id.clone())
            .or_default()
            .clone();
        let mut guard = slot.lock().map_err(poisoned)?;
        if let Some(m) = guard.as_ref() {
            return Ok(m.clone());
        }
        let dir = self.resolver.resolve(&spec)?;
        let model = Arc::new(Embedder::load(&spec.id, &dir)?.with_catalog_prompts(&spec.prompts));
        *guard = Some(model.clone());
        Ok(model)
    }

    /// Embeds `texts` with model `id` (default model when `None`).
    pub fn embed(
        &self,
        id: Option<&str>,
        texts: &[String],
        opts: &EmbedOptions,
    ) -> Result<Embeddings> {
        self.get(id)?.embed(texts, opts)
    }

    /// The loaded model for `id`, without loading it.
    pub fn loaded(&self, id: &str) -> Option<Arc<Embedder>> {
        let slot = self.slots.lock().ok()?.get(id)?.clone();
        let guard = slot.try_lock().ok()?;
        guard.clone()
    }

    /// Every catalog entry with its load state.
    pub fn status(&self) -> Result<Vec<ModelStatus>> {
        let reg = self.registry.read().map_err(poisoned)?;
        Ok(reg
            .models()
            .iter()
            .map(|spec| {
                let m = self.loaded(&spec.id);
                ModelStatus {
                    spec: spec.clone(),
                    loaded: m.is_some(),
                    bytes: m.map(|m| m.info().bytes),
                }
            })
            .collect())
    }

    /// The status of one model.
    pub fn model_status(&self, id: &str) -> Result<ModelStatus> {
        let spec = self.spec(Some(id))?;
        let m = self.loaded(&spec.id);
        Ok(ModelStatus {
            loaded: m.is_some(),
            bytes: m.map(|m| m.info().bytes),
            spec,
        })
    }
}
