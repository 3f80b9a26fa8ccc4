//! The manager's bookkeeping under one lock: the LRU of loaded models, loads in flight, evicted
//! models still in use, reservations, and the per-model counters (`counters.rs`).

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use lru::LruCache;
use serde::Serialize;

use super::counters::{Counters, Evictions, Reason};
use super::{KeepAlive, Key};
use crate::dtype::DType;
use crate::embedder::Embedder;
use crate::error::{Error, Result};

/// A loaded model in the cache.
#[derive(Debug)]
pub(super) struct Entry {
    pub model: Arc<Embedder>,
    pub bytes: usize,
    pub load_time: Duration,
    pub loaded_at: SystemTime,
    pub last_used: Instant,
    pub hits: u64,
    pub keep_alive: KeepAlive,
    pub pinned: bool,
}

impl Entry {
    pub fn new(
        model: Arc<Embedder>,
        bytes: usize,
        load_time: Duration,
        keep_alive: KeepAlive,
        pinned: bool,
    ) -> Self {
        Self {
            model,
            bytes,
            load_time,
            loaded_at: SystemTime::now(),
            last_used: Instant::now(),
            hits: 0,
            keep_alive,
            pinned,
        }
    }

    /// Users other than the cache.
    pub fn in_use(&self) -> usize {
        Arc::strong_count(&self.model) - 1
    }
}

/// One load in flight; waiters block until it finishes.
#[derive(Debug, Default)]
pub(super) struct Inflight {
    result: Mutex<Option<std::result::Result<Arc<Embedder>, Arc<Error>>>>,
    done: Condvar,
}

impl Inflight {
    pub fn finish(&self, result: std::result::Result<Arc<Embedder>, Arc<Error>>) {
        if let Ok(mut slot) = self.result.lock() {
            *slot = Some(result);
        }
        self.done.notify_all();
    }

    pub fn wait(&self) -> Result<Arc<Embedder>> {
        let mut slot = self
            .result
            .lock()
            .map_err(|_| Error::Internal("a model load's lock was poisoned".into()))?;
        loop {
            if let Some(r) = slot.as_ref() {
                return r.clone().map_err(Error::Shared);
            }
            slot = self
                .done
                .wait(slot)
                .map_err(|_| Error::Internal("a model load's lock was poisoned".into()))?;
        }
    }
}

/// Counters and memory use of a manager. The counters are every model's
/// ([`ModelStatus::counters`](super::ModelStatus::counters)) summed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ManagerStats {
    pub hits: u64,
    pub misses: u64,
    pub loads: u64,
    pub load_failures: u64,
    pub evictions: Evictions,
    /// Bytes of cached models plus evicted ones still in use plus loads in progress.
    pub bytes_in_use: usize,
    /// The memory budget, if any.
    pub bytes_budget: Option<usize>,
    /// Bytes of evicted models still held by requests.
    pub bytes_draining: usize,
    pub models_loaded: usize,
    pub max_models: usize,
    /// Times freed model memory was handed back to the operating system (see `release.rs`).
    pub memory_releases: u64,
    /// Loads waiting for room under the budget.
    pub loads_waiting: usize,
}

/// The outcome of asking for room.
pub(super) enum Room {
    Reserved,
    /// Could fit once in-use evicted models are released.
    Wait(String),
    /// Can never fit.
    Never(String),
}

#[derive(Debug)]
pub(super) struct State {
    lru: LruCache<Key, Entry>,
    pub inflight: HashMap<Key, Arc<Inflight>>,
    pub failed: HashMap<Key, String>,
    draining: Vec<(Key, Weak<Embedder>, usize)>,
    /// Bytes and model slots promised to loads that passed `try_reserve`.
    reserved: usize,
    reserved_models: usize,
    budget: Option<usize>,
    /// Model memory was freed (a model dropped, or a load's scratch copies) since the timer
    /// thread last gave free memory back to the operating system.
    freed: bool,
    /// Loads waiting for room, in arrival order; only the first may reserve.
    waiting: VecDeque<u64>,
    next_ticket: u64,
    /// Per (model, dtype), across evictions and reloads.
    pub counters: Counters,
    /// Times freed model memory was handed back to the operating system.
    memory_releases: u64,
}

fn mb(bytes: usize) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// Bytes a model will hold in `dtype`, from its files (used to make room before loading).
pub(super) fn estimate_bytes(dir: &Path, dtype: DType) -> usize {
    let weights: u64 = crate::weights::weight_files(dir)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let tokenizer = std::fs::metadata(dir.join("tokenizer.json")).map_or(0, |m| m.len());
    (weights as f64 * dtype.weight_fraction()) as usize + tokenizer as usize
}

impl State {
    pub fn new(budget: Option<usize>) -> Self {
        Self {
            lru: LruCache::unbounded(),
            inflight: HashMap::new(),
            failed: HashMap::new(),
            draining: Vec::new(),
            reserved: 0,
            reserved_models: 0,
            budget,
            freed: false,
            waiting: VecDeque::new(),
            next_ticket: 0,
            counters: Counters::default(),
            memory_releases: 0,
        }
    }

    /// A cache hit: the model, now most recently used.
    pub fn hit(&mut self, key: &Key) -> Option<Arc<Embedder>> {
        let e = self.lru.get_mut(key)?;
        e.hits += 1;
        e.last_used = Instant::now();
        let model = e.model.clone();
        self.counters.hit(key);
        Some(model)
    }

    pub fn touch(&mut self, key: &Key) {
        if let Some(e) = self.lru.peek_mut(key) {
            e.last_used = Instant::now();
        }
    }

    pub fn set_keep_alive(&mut self, key: &Key, keep_alive: KeepAlive) {
        if let Some(e) = self.lru.peek_mut(key) {
            e.keep_alive = keep_alive;
        }
    }

    pub fn insert(&mut self, key: Key, entry: Entry) {
        if let Some(old) = self.lru.put(key.clone(), entry) {
            self.retire(key, old);
        }
    }

    pub fn entries_of<'a>(&'a self, id: &'a str) -> impl Iterator<Item = (DType, &'a Entry)> + 'a {
        self.lru
            .iter()
            .filter(move |(k, _)| k.model == id)
            .map(|(k, e)| (k.dtype, e))
    }

    pub fn loaded_ids(&self) -> Vec<String> {
        self.lru.iter().map(|(k, _)| k.model.clone()).collect()
    }

    /// Takes an entry out; if requests still use it, its bytes stay counted until they finish.
    fn retire(&mut self, key: Key, entry: Entry) {
        tracing::info!(model = %key.model, dtype = %key.dtype, bytes = entry.bytes, "model unloaded");
        if entry.in_use() > 0 {
            self.draining
                .push((key, Arc::downgrade(&entry.model), entry.bytes));
        } else {
            // The entry, the model's last owner, is dropped on return.
            self.freed = true;
        }
    }

    pub fn remove(&mut self, key: &Key, reason: Reason) -> bool {
        match self.lru.pop(key) {
            Some(e) => {
                self.counters.evicted(key, reason);
                self.retire(key.clone(), e);
                true
            }
            None => false,
        }
    }

    pub fn remove_id(&mut self, id: &str, reason: Reason) -> usize {
        let keys: Vec<Key> = self
            .lru
            .iter()
            .filter(|(k, _)| k.model == id)
            .map(|(k, _)| k.clone())
            .collect();
        keys.iter().filter(|k| self.remove(k, reason)).count()
    }

    /// Unloads idle unpinned models past their keep-alive; returns how many.
    pub fn expire_idle(&mut self, now: Instant) -> usize {
        let expired: Vec<Key> = self
            .lru
            .iter()
            .filter(|(_, e)| {
                !e.pinned
                    && e.in_use() == 0
                    && e.keep_alive
                        .duration()
                        .is_some_and(|d| now.saturating_duration_since(e.last_used) >= d)
            })
            .map(|(k, _)| k.clone())
            .collect();
        expired
            .iter()
            .filter(|k| self.remove(k, Reason::KeepAlive))
            .count()
    }

    fn draining_bytes(&mut self) -> usize {
        let before = self.draining.len();
        self.draining.retain(|(_, w, _)| w.strong_count() > 0);
        // An evicted model's last request has let go: its memory is free.
        self.freed |= self.draining.len() < before;
        self.draining.iter().map(|(_, _, b)| b).sum()
    }

    /// Notes memory freed outside the cache's own drops (a load's scratch copies).
    pub fn note_freed(&mut self) {
        self.freed = true;
    }

    /// Whether to hand free memory back now: model memory was freed since the last call, or a
    /// periodic release is `due`. Counts the release the caller will make.
    pub fn take_freed(&mut self, due: bool) -> bool {
        self.draining_bytes();
        let release = std::mem::take(&mut self.freed) || due;
        if release {
            self.memory_releases += 1;
        }
        release
    }

    /// Takes a place in the line of loads waiting for room.
    pub fn enqueue(&mut self) -> u64 {
        let t = self.next_ticket;
        self.next_ticket += 1;
        self.waiting.push_back(t);
        t
    }

    /// Whether `ticket` is first in line.
    pub fn is_first(&self, ticket: u64) -> bool {
        self.waiting.front() == Some(&ticket)
    }

    /// Leaves the line (room found, or given up).
    pub fn dequeue(&mut self, ticket: u64) {
        self.waiting.retain(|&t| t != ticket);
    }

    /// Why a load behind others in line has no room yet.
    pub fn behind_message(&self, key: &Key, bytes: usize) -> String {
        let ahead = self.waiting.len().saturating_sub(1);
        format!(
            "no room for model `{}` ({}, {}): {ahead} earlier loads are still waiting for room in the {} budget",
            key.model,
            key.dtype,
            mb(bytes),
            self.budget.map_or("unbounded".to_string(), mb),
        )
    }

    /// Returns a reservation made by `try_reserve`.
    pub fn unreserve(&mut self, bytes: usize) {
        self.reserved = self.reserved.saturating_sub(bytes);
        self.reserved_models = self.reserved_models.saturating_sub(1);
    }

    pub fn bytes_in_use(&mut self) -> usize {
        self.lru.iter().map(|(_, e)| e.bytes).sum::<usize>() + self.draining_bytes() + self.reserved
    }

    /// Reserves `bytes` for `key`, evicting least recently used unpinned models as needed.
    pub fn try_reserve(&mut self, key: &Key, bytes: usize, max_models: usize) -> Room {
        if let Some(budget) = self.budget {
            if bytes > budget {
                return Room::Never(format!(
                    "model `{}` ({}) needs {}, more than the whole memory budget of {}; other models stay loaded",
                    key.model, key.dtype, mb(bytes), mb(budget)
                ));
            }
        }
        loop {
            let used = self.bytes_in_use();
            let fits_memory = self.budget.is_none_or(|b| used + bytes <= b);
            let fits_count = self.lru.len() + self.reserved_models < max_models;
            if fits_memory && fits_count {
                self.reserved += bytes;
                self.reserved_models += 1;
                return Room::Reserved;
            }
            let victim = self
                .lru
                .iter()
                .rev()
                .find(|(k, e)| !e.pinned && *k != key)
                .map(|(k, _)| k.clone());
            match victim {
                Some(v) => {
                    let reason = if fits_memory {
                        Reason::Lru
                    } else {
                        Reason::Memory
                    };
                    tracing::info!(model = %v.model, dtype = %v.dtype, ?reason, "evicting to make room for {}", key.model);
                    self.remove(&v, reason);
                }
                None if !self.draining.is_empty() || self.reserved_models > 0 => {
                    return Room::Wait(self.full_message(key, bytes, used));
                }
                None => return Room::Never(self.full_message(key, bytes, used)),
            }
        }
    }

    fn full_message(&self, key: &Key, bytes: usize, used: usize) -> String {
        let pinned: Vec<String> = self
            .lru
            .iter()
            .filter(|(_, e)| e.pinned)
            .map(|(k, e)| format!("{} ({}, {})", k.model, k.dtype, mb(e.bytes)))
            .collect();
        format!(
            "no room for model `{}` ({}, {}): {} of the {} budget is held by pinned models [{}] and models still serving requests",
            key.model,
            key.dtype,
            mb(bytes),
            mb(used),
            self.budget.map_or("unbounded".to_string(), mb),
            pinned.join(", ")
        )
    }

    pub fn stats_snapshot(&mut self, max_models: usize) -> ManagerStats {
        let c = self.counters.total();
        ManagerStats {
            hits: c.hits,
            misses: c.misses,
            loads: c.loads,
            load_failures: c.load_failures,
            evictions: c.evictions,
            bytes_in_use: self.bytes_in_use(),
            bytes_budget: self.budget,
            bytes_draining: self.draining_bytes(),
            models_loaded: self.lru.len(),
            max_models,
            memory_releases: self.memory_releases,
            loads_waiting: self.waiting.len(),
        }
    }
}
