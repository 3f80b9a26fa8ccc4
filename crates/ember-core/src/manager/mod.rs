//! The multi-model manager: models keyed by (model id, dtype), loaded lazily on first use, held in
//! an LRU order bounded by a model count and a memory budget in bytes measured from each loaded
//! model's tensors and tokenizer.
//!
//! - Single-flight: concurrent requests for one cold model cause one load; a failure reaches
//!   every waiter and is not cached.
//! - A model in use is never dropped mid-request: eviction takes it out of the cache, and its bytes
//!   stay counted against the budget until its last user lets go.
//! - Loading never holds the cache lock, so other models keep serving.
//! - Pinned models (the default, and any configured) are never evicted.
//! - Keep-alive with Ollama's meaning; idle models expire on a timer thread, which also hands the
//!   memory of freed models back to the operating system (`release.rs`).
//! - Every use goes through a [`Lease`] (`lease.rs`): a guard that derefs to the model, sets its
//!   keep-alive, and on drop marks the use finished (last use refreshed, keep-alive 0 applied).
//! - Hits, misses, loads, load failures and evictions are counted per (model, dtype) and kept
//!   across evictions (`counters.rs`); each model's status carries them.

mod counters;
mod keep_alive;
mod lease;
mod release;
mod state;
mod status;
mod tasks;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

pub use counters::{Evictions, ModelCounters};
pub use keep_alive::KeepAlive;
pub use lease::{Key, Lease, Target};
pub use release::limit_allocator_arenas;
pub use state::ManagerStats;
use state::{Entry, Inflight, State};
pub use status::{InstanceStatus, LoadState, ModelStatus};

use crate::dtype::DType;
use crate::embedder::{EmbedOptions, Embedder, Embeddings};
use crate::error::{Error, Result};
use crate::loading::{LoadOptions, DEFAULT_MAX_INPUT_TOKENS};
use crate::registry::{ModelSpec, Registry};
use crate::resolve::Resolver;

/// Limits and policies of a [`ModelManager`].
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Most models (id × dtype) held at once.
    pub max_models: usize,
    /// Memory budget in bytes for all loaded models (`None`: unbounded).
    pub max_memory: Option<usize>,
    /// Model ids never evicted (the default model is always pinned too).
    pub pinned: Vec<String>,
    /// Keep-alive of a model loaded without one.
    pub keep_alive: KeepAlive,
    /// Per-model dtype, overriding the registry's recommendation.
    pub dtypes: HashMap<String, DType>,
    /// How often idle models are checked for expiry.
    pub tick: Duration,
    /// How long a load waits for evicted-but-in-use models to be released before giving up.
    pub release_wait: Duration,
    /// The longest input any model takes, whatever its own maximum
    /// ([`LoadOptions::max_input_tokens`]; default 8,192).
    pub max_input_tokens: usize,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            max_models: 16,
            max_memory: None,
            pinned: Vec::new(),
            keep_alive: KeepAlive::Forever,
            dtypes: HashMap::new(),
            tick: Duration::from_millis(250),
            release_wait: Duration::from_secs(30),
            max_input_tokens: DEFAULT_MAX_INPUT_TOKENS,
        }
    }
}

/// Holds the registry, the resolver and the loaded models. `Send + Sync`; cheap to share by
/// reference or `Arc`.
#[derive(Debug)]
pub struct ModelManager {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: RwLock<Registry>,
    resolver: Resolver,
    /// Weights hashes of model directories, kept until their files change.
    hashes: crate::identity::WeightsHashes,
    config: ManagerConfig,
    state: Mutex<State>,
    /// Signalled when a model leaves the cache or a load ends (wakes waits for room).
    changed: Condvar,
    stop: AtomicBool,
}

impl Inner {
    /// Marks the end of a use of `key`: refreshes its last use and, with keep-alive 0, unloads it.
    fn finished(&self, key: &Key) {
        if let Ok(mut st) = self.state.lock() {
            st.touch(key);
            st.expire_idle(Instant::now());
        }
        self.changed.notify_all();
    }
}

fn poisoned<T>(_: T) -> Error {
    Error::Internal("the model manager's lock was poisoned by an earlier panic".into())
}

impl ModelManager {
    /// A manager with default limits (16 models, no memory budget, keep loaded forever).
    pub fn new(registry: Registry, resolver: Resolver) -> Self {
        Self::with_config(registry, resolver, ManagerConfig::default())
    }

    /// A manager with `config`'s limits; starts the keep-alive timer thread.
    pub fn with_config(registry: Registry, resolver: Resolver, config: ManagerConfig) -> Self {
        let inner = Arc::new(Inner {
            registry: RwLock::new(registry),
            resolver,
            hashes: Default::default(),
            state: Mutex::new(State::new(config.max_memory)),
            config,
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&inner);
        let tick = inner.config.tick;
        let spawned = std::thread::Builder::new()
            .name("ember-keep-alive".into())
            .spawn(move || keep_alive_loop(weak, tick));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "keep-alive timer thread not started; idle models expire on use");
        }
        Self { inner }
    }

    /// The configuration.
    pub fn config(&self) -> &ManagerConfig {
        &self.inner.config
    }

    /// A copy of the catalog.
    pub fn registry(&self) -> Result<Registry> {
        Ok(self.inner.registry.read().map_err(poisoned)?.clone())
    }

    /// Changes the catalog. Loaded models whose entry changed are dropped from the cache so the
    /// next request loads the new files.
    pub fn update_registry<T>(&self, f: impl FnOnce(&mut Registry) -> Result<T>) -> Result<T> {
        let (out, changed) = {
            let mut reg = self.inner.registry.write().map_err(poisoned)?;
            let before = reg.models().to_vec();
            let out = f(&mut reg)?;
            let changed: Vec<String> = reg
                .models()
                .iter()
                .filter(|m| {
                    before
                        .iter()
                        .find(|b| b.id == m.id)
                        .is_some_and(|b| b.path != m.path || b.hub_repo != m.hub_repo)
                })
                .map(|m| m.id.clone())
                .collect();
            (out, changed)
        };
        if !changed.is_empty() {
            let mut st = self.inner.state.lock().map_err(poisoned)?;
            for id in changed {
                st.remove_id(&id, counters::Reason::Replaced);
            }
            self.inner.changed.notify_all();
        }
        Ok(out)
    }

    /// The catalog entry for `id` (or the default model when `None`).
    pub fn spec(&self, id: Option<&str>) -> Result<ModelSpec> {
        let reg = self.inner.registry.read().map_err(poisoned)?;
        match id {
            Some(id) => reg.lookup(id),
            None => Ok(reg.default_model().clone()),
        }
    }

    /// The dtype a request for `spec` gets when it names none.
    pub fn default_dtype(&self, spec: &ModelSpec) -> DType {
        self.inner
            .config
            .dtypes
            .get(&spec.id)
            .copied()
            .unwrap_or(spec.default_dtype)
    }

    /// Whether `id` is pinned: the default model, or named in the configuration.
    fn is_pinned_id(&self, id: &str) -> bool {
        self.spec(None).is_ok_and(|d| d.id == id)
            || self
                .inner
                .config
                .pinned
                .iter()
                .any(|p| p == id || self.spec(Some(p)).is_ok_and(|s| s.id == id))
    }

    /// Pinning covers a model in its default dtype; other dtypes of it are cached normally.
    fn is_pinned(&self, key: &Key) -> bool {
        self.is_pinned_id(&key.model)
            && self
                .spec(Some(&key.model))
                .is_ok_and(|s| self.default_dtype(&s) == key.dtype)
    }

    /// What a request for (`id`, `dtype`) will use, from one catalog lookup and without loading
    /// anything: the catalog entry and the (model, dtype) key (the model's default dtype when
    /// `dtype` is `None`). A model listed as not supported is refused here.
    pub fn target(&self, id: Option<&str>, dtype: Option<DType>) -> Result<Target> {
        let spec = self.spec(id)?;
        if !spec.supported {
            return Err(Error::Unsupported {
                id: spec.id,
                architecture: spec.architecture,
                reason: spec.description,
            });
        }
        let dtype = dtype.unwrap_or_else(|| self.default_dtype(&spec));
        Ok(Target {
            key: Key::new(&spec.id, dtype),
            spec,
        })
    }

    /// A lease on (`id`, `dtype`): the model loaded (first, if needed) and held until the lease
    /// is dropped. Concurrent callers for one cold model share a single load; other models are
    /// not blocked while it loads.
    pub fn lease(&self, id: Option<&str>, dtype: Option<DType>) -> Result<Lease> {
        let target = self.target(id, dtype)?;
        let model = self.acquire(&target.key, Some(&target.spec))?;
        Ok(Lease::new(model, target.key, self.inner.clone()))
    }

    /// A lease on `key`, as [`ModelManager::target`] gave it: a loaded model is found without
    /// a catalog lookup (the lookup happens only to load it).
    pub fn lease_key(&self, key: &Key) -> Result<Lease> {
        let model = self.acquire(key, None)?;
        Ok(Lease::new(model, key.clone(), self.inner.clone()))
    }

    /// The loaded model for `key`, loading it first if needed (`spec` is its catalog entry when
    /// the caller has it).
    fn acquire(&self, key: &Key, spec: Option<&ModelSpec>) -> Result<Arc<Embedder>> {
        let flight = {
            let mut st = self.inner.state.lock().map_err(poisoned)?;
            st.expire_idle(Instant::now());
            if let Some(model) = st.hit(key) {
                return Ok(model);
            }
            st.counters.miss(key);
            if let Some(f) = st.inflight.get(key) {
                let f = f.clone();
                drop(st);
                return f.wait();
            }
            let f = Arc::new(Inflight::default());
            st.inflight.insert(key.clone(), f.clone());
            f
        };
        let result = match spec {
            Some(spec) => self.load_entry(spec, key),
            None => self
                .target(Some(&key.model), Some(key.dtype))
                .and_then(|t| self.load_entry(&t.spec, key)),
        };
        let mut st = self.inner.state.lock().map_err(poisoned)?;
        st.inflight.remove(key);
        let out = match result {
            Ok(model) => {
                st.failed.remove(key);
                Ok(model)
            }
            Err(e) => {
                st.counters.failed(key);
                st.failed.insert(key.clone(), e.to_string());
                Err(Arc::new(e))
            }
        };
        drop(st);
        self.inner.changed.notify_all();
        flight.finish(out.clone());
        out.map_err(Error::Shared)
    }

    /// Resolves, makes room, loads and inserts one model. Runs without the cache lock held except
    /// for the bookkeeping steps.
    fn load_entry(&self, spec: &ModelSpec, key: &Key) -> Result<Arc<Embedder>> {
        let dtype = key.dtype;
        let dir = self.inner.resolver.resolve(spec)?;
        let estimate = state::estimate_bytes(&dir, dtype);
        self.make_room(key, estimate, None)?;
        let started = Instant::now();
        let loaded = std::panic::catch_unwind(|| {
            let opts = LoadOptions {
                dtype,
                kind: spec.kind,
                max_input_tokens: self.inner.config.max_input_tokens,
            };
            Embedder::load_with(&spec.id, &dir, &candle_core::Device::Cpu, &opts)
        })
        .unwrap_or_else(|_| Err(Error::Internal(format!("loading `{}` panicked", spec.id))));
        if loaded.is_err() {
            self.inner
                .state
                .lock()
                .map_err(poisoned)?
                .unreserve(estimate);
            self.inner.changed.notify_all();
        }
        let loaded = loaded.map_err(|e| match e {
            // These already name the model.
            Error::MissingWeight { .. }
            | Error::ShapeMismatch { .. }
            | Error::Tokenizer { .. }
            | Error::Tensor { .. }
            | Error::Internal(_) => e,
            // A file's error: say whose file it is (a caller may only see the file's name).
            e => Error::Load {
                id: spec.id.clone(),
                dtype,
                source: Box::new(e),
            },
        });
        let model = Arc::new(
            loaded?
                .with_catalog_prompts(&spec.prompts)
                .with_instruction_prompts(spec.prompts_are_instructions),
        );
        let bytes = model.info().bytes;
        // The real size may differ from the estimate: swap the reservation for what the model
        // holds.
        self.make_room(key, bytes, Some(estimate))?;
        let mut st = self.inner.state.lock().map_err(poisoned)?;
        st.unreserve(bytes);
        st.counters.loaded(key);
        // Loading converts and quantizes through full-size scratch copies, now freed.
        st.note_freed();
        st.insert(
            key.clone(),
            Entry::new(
                model.clone(),
                bytes,
                started.elapsed(),
                self.inner.config.keep_alive,
                self.is_pinned(key),
            ),
        );
        Ok(model)
    }

    /// Reserves `bytes` under the budget and the model count, evicting least recently used
    /// unpinned models; waits (bounded) for evicted models still in use to be released.
    ///
    /// Loads get room in arrival order: a large model waiting for room is not starved by smaller
    /// ones that would keep fitting in ahead of it. A load that already holds a reservation
    /// (`held`, its estimate) swaps it for `bytes` in one step and goes first: it has the memory
    /// in hand already.
    fn make_room(&self, key: &Key, bytes: usize, held: Option<usize>) -> Result<()> {
        let deadline = Instant::now() + self.inner.config.release_wait;
        let mut st = self.inner.state.lock().map_err(poisoned)?;
        let ticket = match held {
            Some(h) => {
                st.unreserve(h);
                None
            }
            None => Some(st.enqueue()),
        };
        let out = loop {
            let turn = ticket.is_none_or(|t| st.is_first(t));
            let room = if turn {
                st.try_reserve(key, bytes, self.inner.config.max_models)
            } else {
                state::Room::Wait(st.behind_message(key, bytes))
            };
            match room {
                state::Room::Reserved => break Ok(()),
                state::Room::Never(message) => break Err(Error::Capacity { message }),
                state::Room::Wait(message) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break Err(Error::Capacity { message });
                    }
                    let wait = (deadline - now).min(Duration::from_millis(20));
                    st = self
                        .inner
                        .changed
                        .wait_timeout(st, wait)
                        .map_err(poisoned)?
                        .0;
                }
            }
        };
        if let Some(t) = ticket {
            st.dequeue(t);
            drop(st);
            // The next load in line may go now.
            self.inner.changed.notify_all();
        }
        out
    }

    /// Embeds `texts` with (`id`, `dtype`); the default model and its default dtype when `None`.
    pub fn embed(
        &self,
        id: Option<&str>,
        dtype: Option<DType>,
        texts: &[String],
        opts: &EmbedOptions,
    ) -> Result<Embeddings> {
        self.embed_keep_alive(id, dtype, None, texts, opts)
    }

    /// [`embed`](Self::embed) that also sets the model's keep-alive from this request, as
    /// Ollama's `keep_alive` does (`0` unloads the model right after the request).
    pub fn embed_keep_alive(
        &self,
        id: Option<&str>,
        dtype: Option<DType>,
        keep_alive: Option<KeepAlive>,
        texts: &[String],
        opts: &EmbedOptions,
    ) -> Result<Embeddings> {
        self.check_kind(id, crate::heads::ModelKind::Embedder, "embed")?;
        let model = self.lease(id, dtype)?;
        if let Some(k) = keep_alive {
            model.set_keep_alive(k);
        }
        model.embed(texts, opts)
    }

    /// Loads (`id`, `dtype`) now and sets its keep-alive (the configured one when `None`).
    pub fn load(
        &self,
        id: &str,
        dtype: Option<DType>,
        keep_alive: Option<KeepAlive>,
    ) -> Result<ModelStatus> {
        let model = self.lease(Some(id), dtype)?;
        if let Some(k) = keep_alive {
            model.set_keep_alive(k);
        }
        drop(model);
        self.model_status(id)
    }

    /// Unloads `id` (one dtype, or every dtype); returns how many instances left the cache. The
    /// pinned instance (the default dtype of a pinned model) stays: asking for it alone is an
    /// error, asking for every dtype unloads the others.
    pub fn unload(&self, id: &str, dtype: Option<DType>) -> Result<usize> {
        let spec = self.spec(Some(id))?;
        let pinned_dtype = self.default_dtype(&spec);
        let pinned = self.is_pinned_id(&spec.id);
        if pinned && dtype == Some(pinned_dtype) {
            return Err(Error::invalid(
                "model",
                format!(
                    "model `{}` ({pinned_dtype}) is pinned (the default model or named in the configuration) and cannot be unloaded",
                    spec.id
                ),
            ));
        }
        let mut st = self.inner.state.lock().map_err(poisoned)?;
        let keys: Vec<Key> = match dtype {
            Some(d) => vec![Key::new(&spec.id, d)],
            None => DType::ALL
                .iter()
                .filter(|&&d| !(pinned && d == pinned_dtype))
                .map(|&d| Key::new(&spec.id, d))
                .collect(),
        };
        let n = keys
            .iter()
            .filter(|k| st.remove(k, counters::Reason::Unload))
            .count();
        drop(st);
        self.inner.changed.notify_all();
        if pinned && dtype.is_none() && n == 0 {
            return Err(Error::invalid(
                "model",
                format!(
                    "model `{}` ({pinned_dtype}) is pinned (the default model or named in the configuration) and cannot be unloaded; no other dtype of it is loaded",
                    spec.id
                ),
            ));
        }
        Ok(n)
    }

    /// Unloads models idle past their keep-alive (the timer thread calls this too).
    pub fn expire_idle(&self) -> usize {
        let n = self
            .inner
            .state
            .lock()
            .map(|mut st| st.expire_idle(Instant::now()))
            .unwrap_or(0);
        if n > 0 {
            self.inner.changed.notify_all();
        }
        n
    }

    /// Counters and memory use.
    pub fn stats(&self) -> Result<ManagerStats> {
        Ok(self
            .inner
            .state
            .lock()
            .map_err(poisoned)?
            .stats_snapshot(self.inner.config.max_models))
    }
}

impl Drop for ModelManager {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Release);
    }
}

fn keep_alive_loop(inner: Weak<Inner>, tick: Duration) {
    let mut released = Instant::now();
    loop {
        std::thread::sleep(tick);
        let Some(inner) = inner.upgrade() else { return };
        if inner.stop.load(Ordering::Acquire) {
            return;
        }
        let due = released.elapsed() >= release::EVERY;
        let (n, release) = inner
            .state
            .lock()
            .map(|mut st| {
                let n = st.expire_idle(Instant::now());
                (n, st.take_freed(due))
            })
            .unwrap_or((0, false));
        if n > 0 {
            inner.changed.notify_all();
        }
        if release {
            // Outside the lock: requests and loads go on meanwhile.
            release::release_free_memory();
            released = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests;
