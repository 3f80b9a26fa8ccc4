//! What happened to each model since the manager started: hits, misses, loads, load failures and
//! evictions by reason, kept per (model, dtype) key outside the cache, so they survive the
//! model's eviction and reload. The manager-wide totals are their sums, so the two never
//! disagree.
//!
//! Keys are the catalog ids requests resolved to (and model directories used as ids), so the
//! map grows with the catalog, not with requests: an unknown id fails before any counting.

use std::collections::HashMap;

use serde::Serialize;

use super::Key;

/// Why a model left the cache.
#[derive(Debug, Clone, Copy)]
pub(super) enum Reason {
    /// The model count was full.
    Lru,
    /// The memory budget was full.
    Memory,
    /// Idle past its keep-alive.
    KeepAlive,
    /// Explicitly unloaded.
    Unload,
    /// Its registry entry changed.
    Replaced,
}

/// Evictions, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Evictions {
    /// To make room under the model count (`max_models`).
    pub lru: u64,
    /// To make room under the memory budget.
    pub memory: u64,
    /// Idle past the keep-alive.
    pub keep_alive: u64,
    /// Unloaded on request.
    pub unload: u64,
    /// Its catalog entry changed (new files).
    pub replaced: u64,
}

impl Evictions {
    /// Evictions for every reason together.
    pub fn total(&self) -> u64 {
        self.lru + self.memory + self.keep_alive + self.unload + self.replaced
    }

    /// Each reason's name (as serialized and as metrics label it) with its count.
    pub fn by_reason(&self) -> [(&'static str, u64); 5] {
        [
            ("lru", self.lru),
            ("memory", self.memory),
            ("keep_alive", self.keep_alive),
            ("unload", self.unload),
            ("replaced", self.replaced),
        ]
    }

    fn count(&mut self, reason: Reason) {
        match reason {
            Reason::Lru => self.lru += 1,
            Reason::Memory => self.memory += 1,
            Reason::KeepAlive => self.keep_alive += 1,
            Reason::Unload => self.unload += 1,
            Reason::Replaced => self.replaced += 1,
        }
    }

    fn add(&mut self, other: &Self) {
        self.lru += other.lru;
        self.memory += other.memory;
        self.keep_alive += other.keep_alive;
        self.unload += other.unload;
        self.replaced += other.replaced;
    }
}

/// The counters of one model (one dtype of it, or all its dtypes summed) since the manager
/// started; they survive evictions and reloads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ModelCounters {
    /// Uses that found the model loaded.
    pub hits: u64,
    /// Uses that found it not loaded: each started a load or waited for one in flight.
    pub misses: u64,
    /// Loads completed.
    pub loads: u64,
    /// Loads that failed.
    pub load_failures: u64,
    /// Times it left the cache, by reason.
    pub evictions: Evictions,
}

impl ModelCounters {
    fn add(&mut self, other: &Self) {
        self.hits += other.hits;
        self.misses += other.misses;
        self.loads += other.loads;
        self.load_failures += other.load_failures;
        self.evictions.add(&other.evictions);
    }
}

/// Every key's counters.
#[derive(Debug, Default)]
pub(super) struct Counters {
    by_key: HashMap<Key, ModelCounters>,
}

impl Counters {
    fn at(&mut self, key: &Key) -> &mut ModelCounters {
        self.by_key.entry(key.clone()).or_default()
    }

    pub fn hit(&mut self, key: &Key) {
        self.at(key).hits += 1;
    }

    pub fn miss(&mut self, key: &Key) {
        self.at(key).misses += 1;
    }

    pub fn loaded(&mut self, key: &Key) {
        self.at(key).loads += 1;
    }

    pub fn failed(&mut self, key: &Key) {
        self.at(key).load_failures += 1;
    }

    pub fn evicted(&mut self, key: &Key, reason: Reason) {
        self.at(key).evictions.count(reason);
    }

    /// One (model, dtype)'s counters (zeros if never used).
    pub fn of(&self, key: &Key) -> ModelCounters {
        self.by_key.get(key).copied().unwrap_or_default()
    }

    /// Model `id`'s counters over all its dtypes (zeros if never used).
    pub fn of_model(&self, id: &str) -> ModelCounters {
        let mut out = ModelCounters::default();
        for c in self
            .by_key
            .iter()
            .filter(|(k, _)| k.model == id)
            .map(|e| e.1)
        {
            out.add(c);
        }
        out
    }

    /// Every model's counters summed.
    pub fn total(&self) -> ModelCounters {
        let mut out = ModelCounters::default();
        for c in self.by_key.values() {
            out.add(c);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;

    #[test]
    fn counts_add_up_per_key_per_model_and_in_total() {
        let mut c = Counters::default();
        let (a32, a8, b) = (
            Key::new("a", DType::Fp32),
            Key::new("a", DType::Int8),
            Key::new("b", DType::Fp32),
        );
        c.miss(&a32);
        c.loaded(&a32);
        c.hit(&a32);
        c.hit(&a8);
        c.evicted(&a32, Reason::Lru);
        c.evicted(&a8, Reason::Unload);
        c.failed(&b);
        let a = c.of_model("a");
        assert_eq!((a.hits, a.misses, a.loads, a.load_failures), (2, 1, 1, 0));
        assert_eq!(
            (a.evictions.lru, a.evictions.unload, a.evictions.total()),
            (1, 1, 2)
        );
        assert_eq!(c.of(&a8).hits, 1);
        assert_eq!(c.of(&b).load_failures, 1);
        assert_eq!(c.of_model("never"), ModelCounters::default());
        let t = c.total();
        assert_eq!((t.hits, t.load_failures, t.evictions.total()), (2, 1, 2));
    }
}
