//! What the manager reports about each model: its load state, its counters (hits, misses, loads,
//! load failures, evictions by reason) since the manager started, and every loaded (dtype)
//! instance with its bytes, use, keep-alive and the counters of its dtype.

use std::time::{Instant, SystemTime};

use serde::Serialize;

use super::counters::ModelCounters;
use super::state::State;
use super::{poisoned, KeepAlive, Key, ModelManager};
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::registry::ModelSpec;

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Lifecycle of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadState {
    Unloaded,
    Loading,
    Loaded,
    Failed,
}

/// One loaded (id, dtype) instance.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceStatus {
    pub dtype: DType,
    pub state: LoadState,
    /// Bytes held (weights and tokenizer).
    pub bytes: usize,
    /// How long the load took.
    pub load_ms: f64,
    /// When it was loaded (ms since the Unix epoch).
    pub loaded_at_ms: u64,
    /// Last use (ms since the Unix epoch).
    pub last_used_ms: u64,
    /// Hits since this load (`counters.hits` counts across loads).
    pub hits: u64,
    pub keep_alive: KeepAlive,
    /// When it will be unloaded for idleness (ms since the Unix epoch), if ever.
    pub expires_at_ms: Option<u64>,
    pub pinned: bool,
    /// Requests (or handles) using it now.
    pub in_use: usize,
    /// This dtype's counters since the manager started, across its evictions and reloads.
    pub counters: ModelCounters,
}

/// A catalog entry with its load state.
#[derive(Debug, Clone, Serialize)]
pub struct ModelStatus {
    #[serde(flatten)]
    pub spec: ModelSpec,
    /// Loaded if any dtype is loaded, else loading, failed or unloaded.
    pub state: LoadState,
    pub loaded: bool,
    /// Bytes held by all loaded dtypes.
    pub bytes: usize,
    /// The dtype a request that names none gets.
    pub dtype: DType,
    pub instances: Vec<InstanceStatus>,
    /// The last load failure, if the last attempt failed.
    pub error: Option<String>,
    /// Every dtype's counters summed, since the manager started: they survive evictions and
    /// reloads (zeros for a model never asked for).
    pub counters: ModelCounters,
}

impl ModelManager {
    /// Every catalog entry with its load state (and models loaded from directories).
    pub fn status(&self) -> Result<Vec<ModelStatus>> {
        let specs = self
            .inner
            .registry
            .read()
            .map_err(poisoned)?
            .models()
            .to_vec();
        let st = self.inner.state.lock().map_err(poisoned)?;
        let mut out: Vec<ModelStatus> = specs.into_iter().map(|s| self.status_of(&st, s)).collect();
        // Directories used as ids are not in the catalog but may be loaded.
        for id in st.loaded_ids() {
            if !out.iter().any(|m| m.spec.id == id) {
                if let Ok(spec) = self.spec(Some(&id)) {
                    out.push(self.status_of(&st, spec));
                }
            }
        }
        Ok(out)
    }

    /// The status of one model.
    pub fn model_status(&self, id: &str) -> Result<ModelStatus> {
        let spec = self.spec(Some(id))?;
        let st = self.inner.state.lock().map_err(poisoned)?;
        Ok(self.status_of(&st, spec))
    }

    /// SHA-256 of the weights `id`'s vectors come from (see [`crate::identity::weights_sha256`]),
    /// without loading the model: a loaded copy's own hash, else the hash of the files a load
    /// would read, found on this machine without downloading. Each directory is read once until
    /// its files change ([`crate::identity::WeightsHashes`]), so asking again costs a `stat`.
    ///
    /// `None` when the files are not on this machine yet (a first load downloads them), or when
    /// they changed on disk since the loaded copy read them (unloading it makes the next request
    /// load, and this report hash, the new files). A failure to read them is an error.
    pub fn weights_sha256(&self, id: &str) -> Result<Option<String>> {
        let spec = self.spec(Some(id))?;
        // The cache lock is held for this statement only.
        let loaded = self
            .inner
            .state
            .lock()
            .map_err(poisoned)?
            .entries_of(&spec.id)
            .next()
            .map(|(_, e)| e.model.clone());
        if let Some(model) = loaded {
            if let Some(h) = model.known_weights_sha256() {
                return Ok(Some(h.to_string()));
            }
            if model.weights_changed_on_disk() {
                return Ok(None);
            }
            return self.inner.hashes.get(&model.info().path).map(Some);
        }
        // Where a load would find the files, but never a download: a status request stays cheap.
        let mut local = self.inner.resolver.clone();
        local.offline = true;
        local.progress = false;
        match local.resolve(&spec) {
            Ok(dir) => self.inner.hashes.get(&dir).map(Some),
            Err(Error::FilesNotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn status_of(&self, st: &State, spec: ModelSpec) -> ModelStatus {
        // A directory's facts are known once a copy is loaded (any dtype: they do not vary).
        let loaded = st.entries_of(&spec.id).next().map(|(_, e)| e.model.clone());
        let spec = match loaded {
            Some(model) => spec.with_loaded_facts(model.info()),
            None => spec,
        };
        let now = Instant::now();
        let wall = SystemTime::now();
        let mut instances: Vec<InstanceStatus> = st
            .entries_of(&spec.id)
            .map(|(dtype, e)| InstanceStatus {
                dtype,
                state: LoadState::Loaded,
                bytes: e.bytes,
                load_ms: e.load_time.as_secs_f64() * 1000.0,
                loaded_at_ms: unix_ms(e.loaded_at),
                last_used_ms: unix_ms(wall - now.saturating_duration_since(e.last_used)),
                hits: e.hits,
                keep_alive: e.keep_alive,
                expires_at_ms: (!e.pinned)
                    .then(|| e.keep_alive.duration())
                    .flatten()
                    .map(|d| unix_ms(wall + (e.last_used + d).saturating_duration_since(now))),
                pinned: e.pinned,
                in_use: e.in_use(),
                counters: st.counters.of(&Key::new(&spec.id, dtype)),
            })
            .collect();
        instances.sort_by_key(|i| i.dtype);
        let loading = st.inflight.keys().any(|k| k.model == spec.id);
        let error = st
            .failed
            .iter()
            .find(|(k, _)| k.model == spec.id)
            .map(|(_, e)| e.clone());
        let state = if !instances.is_empty() {
            LoadState::Loaded
        } else if loading {
            LoadState::Loading
        } else if error.is_some() {
            LoadState::Failed
        } else {
            LoadState::Unloaded
        };
        ModelStatus {
            state,
            loaded: !instances.is_empty(),
            bytes: instances.iter().map(|i| i.bytes).sum(),
            dtype: self.default_dtype(&spec),
            instances,
            error,
            counters: st.counters.of_model(&spec.id),
            spec,
        }
    }
}
