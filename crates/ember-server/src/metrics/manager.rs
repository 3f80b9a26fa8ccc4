//! The model manager's series at `GET /metrics`, read at scrape time: its cache counters (in
//! total, and per catalog model: hits, misses, loads, load failures, evictions by reason), the
//! memory held against the budget, and the bytes of each loaded model.

use std::collections::HashSet;

use ember_core::{ModelManager, ModelStatus};

use super::{counter, gauge, labels};

/// The manager's series, read at scrape time.
pub(super) fn render(out: &mut String, manager: &ModelManager) {
    if let Ok(s) = manager.stats() {
        counter(out, "ember_model_cache_hits_total", &[("", s.hits)]);
        counter(out, "ember_model_cache_misses_total", &[("", s.misses)]);
        counter(out, "ember_model_loads_total", &[("", s.loads)]);
        counter(
            out,
            "ember_model_load_failures_total",
            &[("", s.load_failures)],
        );
        let evictions: Vec<(String, u64)> = s
            .evictions
            .by_reason()
            .into_iter()
            .map(|(reason, n)| (labels(&[("reason", reason)]), n))
            .collect();
        let evictions: Vec<(&str, u64)> = evictions.iter().map(|(l, n)| (l.as_str(), *n)).collect();
        counter(out, "ember_model_evictions_total", &evictions);
        gauge(
            out,
            "ember_memory_bytes_in_use",
            &[("", s.bytes_in_use as f64)],
        );
        gauge(
            out,
            "ember_memory_bytes_draining",
            &[("", s.bytes_draining as f64)],
        );
        if let Some(b) = s.bytes_budget {
            gauge(out, "ember_memory_bytes_budget", &[("", b as f64)]);
        }
        gauge(out, "ember_models_loaded", &[("", s.models_loaded as f64)]);
        counter(
            out,
            "ember_memory_releases_total",
            &[("", s.memory_releases)],
        );
        gauge(
            out,
            "ember_model_loads_waiting",
            &[("", s.loads_waiting as f64)],
        );
    }
    if let Ok(models) = manager.status() {
        per_model(out, manager, &models);
        let held: Vec<(String, f64)> = models
            .iter()
            .flat_map(|m| {
                m.instances.iter().map(|i| {
                    (
                        labels(&[("model", &m.spec.id), ("dtype", i.dtype.as_str())]),
                        i.bytes as f64,
                    )
                })
            })
            .collect();
        let held: Vec<(&str, f64)> = held.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        gauge(out, "ember_model_bytes", &held);
    }
}

/// One number of a model's status.
type Field = fn(&ModelStatus) -> u64;

/// The per-model counters with one value per model, in the order they are rendered.
const BY_MODEL: [(&str, Field); 4] = [
    ("ember_model_cache_hits_by_model_total", |m| m.counters.hits),
    ("ember_model_cache_misses_by_model_total", |m| {
        m.counters.misses
    }),
    ("ember_model_loads_by_model_total", |m| m.counters.loads),
    ("ember_model_load_failures_by_model_total", |m| {
        m.counters.load_failures
    }),
];

/// Each catalog model's counters, for the models asked for at least once: the label set stays
/// within the catalog (a model directory named by a request is counted in the totals only).
fn per_model(out: &mut String, manager: &ModelManager, models: &[ModelStatus]) {
    let Ok(registry) = manager.registry() else {
        return;
    };
    let catalog: HashSet<&str> = registry.models().iter().map(|m| m.id.as_str()).collect();
    let used: Vec<&ModelStatus> = models
        .iter()
        .filter(|m| catalog.contains(m.spec.id.as_str()))
        .filter(|m| m.counters.hits + m.counters.misses > 0)
        .collect();
    if used.is_empty() {
        return;
    }
    let model_labels: Vec<String> = used
        .iter()
        .map(|m| labels(&[("model", &m.spec.id)]))
        .collect();
    let series = |f: Field| -> Vec<(&str, u64)> {
        model_labels
            .iter()
            .zip(&used)
            .map(|(l, m)| (l.as_str(), f(m)))
            .collect()
    };
    for (name, value) in BY_MODEL {
        counter(out, name, &series(value));
    }
    let evictions: Vec<(String, u64)> = used
        .iter()
        .flat_map(|m| {
            m.counters
                .evictions
                .by_reason()
                .map(|(reason, n)| (labels(&[("model", &m.spec.id), ("reason", reason)]), n))
        })
        .collect();
    let evictions: Vec<(&str, u64)> = evictions.iter().map(|(l, n)| (l.as_str(), *n)).collect();
    counter(out, "ember_model_evictions_by_model_total", &evictions);
}

/// The help line of the manager's series.
pub(super) fn help(name: &str) -> Option<&'static str> {
    Some(match name {
        "ember_model_cache_hits_total" => "Model lookups served from the cache.",
        "ember_model_cache_misses_total" => "Model lookups that had to load or wait for a load.",
        "ember_model_loads_total" => "Model loads completed.",
        "ember_model_load_failures_total" => "Model loads that failed.",
        "ember_model_evictions_total" => "Models removed from the cache, by reason.",
        "ember_memory_bytes_in_use" => "Bytes held by loaded, draining and loading models.",
        "ember_memory_bytes_draining" => "Bytes of evicted models still held by requests.",
        "ember_memory_bytes_budget" => "The memory budget for models.",
        "ember_models_loaded" => "Models (id x dtype) in the cache.",
        "ember_model_bytes" => "Bytes held by each loaded model.",
        "ember_model_loads_waiting" => "Model loads waiting for room in the memory budget.",
        "ember_memory_releases_total" => {
            "Times memory freed by unloaded models was handed back to the operating system."
        }
        "ember_model_cache_hits_by_model_total" => "Model lookups served from the cache, by model.",
        "ember_model_cache_misses_by_model_total" => {
            "Model lookups that had to load or wait for a load, by model."
        }
        "ember_model_loads_by_model_total" => "Model loads completed, by model.",
        "ember_model_load_failures_by_model_total" => "Model loads that failed, by model.",
        "ember_model_evictions_by_model_total" => {
            "Times each model was removed from the cache, by model and reason."
        }
        _ => return None,
    })
}
