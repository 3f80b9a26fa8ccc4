//! Start-up: load the models the configuration names, run one dummy batch per configured batch
//! shape so the first real request pays no first-use costs, and keep a per-model report that
//! readiness shows. A model that fails to load or warm up is reported and logged; the others
//! still serve.

use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Instant;

use axum::http::StatusCode;
use ember_core::{EmbedOptions, ModelManager};
use serde::Serialize;
use serde_json::{json, Value};

use crate::settings::{Preload, Settings};
use crate::AppState;

/// Where one start-up model stands.
#[derive(Debug, Clone, Serialize)]
pub struct StartupModel {
    /// The id or alias as configured.
    pub model: String,
    /// `pending`, `ready` or `failed`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
    /// Whether the warm-up batches ran.
    pub warmed_up: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The start-up report readiness shows.
#[derive(Debug, Default)]
pub struct Startup {
    models: Mutex<Vec<StartupModel>>,
}

impl Startup {
    /// A snapshot of every start-up model.
    pub fn models(&self) -> Vec<StartupModel> {
        self.models.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn set(&self, i: usize, m: StartupModel) {
        if let Ok(mut all) = self.models.lock() {
            if let Some(slot) = all.get_mut(i) {
                *slot = m;
            }
        }
    }
}

impl AppState {
    /// Readiness: 503 until start-up loading and warm-up end, then 200; the body lists each
    /// start-up model and names those that failed.
    pub fn readiness(&self) -> (StatusCode, Value) {
        let ready = self.ready.load(Ordering::Acquire);
        // Public: failures without file-system paths (the log has them whole).
        let mut models = self.startup.models();
        for m in &mut models {
            m.error = m.error.as_deref().map(crate::error::redact_paths);
        }
        let failed: Vec<&str> = models
            .iter()
            .filter(|m| m.state == "failed")
            .map(|m| m.model.as_str())
            .collect();
        let body = json!({
            "status": if ready { "ready" } else { "loading" },
            "models": models,
            "failed": failed,
        });
        let status = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (status, body)
    }
}

/// What start-up does.
#[derive(Debug, Clone)]
pub struct WarmupPlan {
    /// Models in order; `None` is the default model.
    pub models: Vec<(Option<String>, Preload)>,
    /// Run dummy batches at all.
    pub enabled: bool,
    /// One dummy batch of each size.
    pub batch_sizes: Vec<usize>,
    /// Sequences per forward pass, as the batch workers use.
    pub max_batch_size: usize,
}

impl WarmupPlan {
    /// The plan for `settings`: the default model first (unless `--lazy`; its configured entry
    /// when it has one, else pinned and warmed up), then the other start-up models.
    pub fn for_settings(settings: &Settings, manager: &ModelManager) -> Self {
        let mut models: Vec<(Option<String>, Preload)> = Vec::new();
        if !settings.server.lazy {
            let id = manager
                .spec(None)
                .map_or_else(|_| "default".into(), |s| s.id);
            let entry = settings.preload.iter().find(|p| p.id == id).cloned();
            models.push((
                None,
                entry.unwrap_or(Preload {
                    pinned: true,
                    ..Preload::named(&id)
                }),
            ));
        }
        for p in &settings.preload {
            if !models.iter().any(|(_, m)| m.id == p.id) {
                models.push((Some(p.id.clone()), p.clone()));
            }
        }
        Self {
            models,
            enabled: settings.warmup.enabled,
            batch_sizes: settings.warmup.batch_sizes.clone(),
            max_batch_size: settings.batching.max_batch_size,
        }
    }
}

/// Loads and warms up every planned model (blocking; run it on a blocking thread), then marks
/// the state ready.
pub fn run(state: &AppState, plan: &WarmupPlan) {
    let manager = &state.manager;
    if let Ok(mut m) = state.startup.models.lock() {
        *m = plan
            .models
            .iter()
            .map(|(_, p)| StartupModel {
                model: p.id.clone(),
                state: "pending",
                dtype: p.dtype.map(|d| d.to_string()),
                warmed_up: false,
                load_ms: None,
                warmup_ms: None,
                error: None,
            })
            .collect();
    }
    for (i, (id, p)) in plan.models.iter().enumerate() {
        let report = one(manager, id.as_deref(), p, plan);
        match &report.error {
            None => tracing::info!(
                model = %report.model,
                dtype = ?report.dtype,
                load_ms = ?report.load_ms,
                warmup_ms = ?report.warmup_ms,
                "ready to serve"
            ),
            Some(e) => {
                tracing::error!(model = %report.model, error = %e, "start-up model failed; the others still serve")
            }
        }
        state.startup.set(i, report);
    }
    state.ready.store(true, Ordering::Release);
    tracing::info!("start-up finished: ready");
}

fn one(manager: &ModelManager, id: Option<&str>, p: &Preload, plan: &WarmupPlan) -> StartupModel {
    let mut report = StartupModel {
        model: p.id.clone(),
        state: "failed",
        dtype: p.dtype.map(|d| d.to_string()),
        warmed_up: false,
        load_ms: None,
        warmup_ms: None,
        error: None,
    };
    let started = Instant::now();
    let model = match manager.lease(id, p.dtype) {
        Ok(m) => m,
        Err(e) => {
            report.error = Some(e.to_string());
            return report;
        }
    };
    report.load_ms = Some(started.elapsed().as_secs_f64() * 1e3);
    report.dtype = Some(model.key().dtype.to_string());
    if let Some(k) = p.keep_alive {
        model.set_keep_alive(k);
    }
    let mut result = Ok(());
    if plan.enabled && p.warmup {
        let started = Instant::now();
        let opts = EmbedOptions {
            batch_size: plan.max_batch_size.max(1),
            ..EmbedOptions::default()
        };
        for &n in &plan.batch_sizes {
            let texts = vec!["Ember warm-up: a short sentence to embed.".to_string(); n];
            if let Err(e) = model.embed(&texts, &opts) {
                result = Err(format!("warm-up batch of {n} failed: {e}"));
                break;
            }
        }
        report.warmup_ms = Some(started.elapsed().as_secs_f64() * 1e3);
        report.warmed_up = result.is_ok();
    }
    // The lease ends here: last use refreshed, the keep-alive counts from now.
    drop(model);
    match result {
        Ok(()) => report.state = "ready",
        Err(e) => report.error = Some(e),
    }
    report
}
