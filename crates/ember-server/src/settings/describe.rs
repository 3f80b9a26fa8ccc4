//! The effective configuration as readable lines (`section: key=value ...`), logged at start:
//! every value of every section, keys shown as `<redacted>`, and where the given ones came from.

use serde::Serialize;
use serde_json::Value;

use super::Settings;
use crate::config::{Flags, Source};

/// `value` as it reads in a `key=value` pair.
fn shown(value: &Value) -> String {
    match value {
        Value::Null => "none".into(),
        Value::String(s) if s.is_empty() || s.contains(char::is_whitespace) => format!("{s:?}"),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "none".into(),
        Value::Array(items) => items.iter().map(shown).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// `name: key=value ...` for a section that serializes to an object.
fn line(name: &str, section: &impl Serialize) -> String {
    let pairs = match serde_json::to_value(section) {
        Ok(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", shown(v)))
            .collect::<Vec<_>>()
            .join(" "),
        Ok(other) => shown(&other),
        Err(e) => format!("(cannot show: {e})"),
    };
    format!("{name}: {pairs}")
}

impl Settings {
    /// One line per section, then the catalog settings, the start-up models and the sources of
    /// the given flags.
    pub fn describe(&self, flags: &Flags) -> Vec<String> {
        let mut out = vec![
            line("server", &self.server),
            line("limits", &self.limits),
            line("batching", &self.batching),
            line("budget", &self.budget),
            line("auth", &self.auth),
            line("warmup", &self.warmup),
            line("openai", &self.openai),
            line(
                "catalog",
                &serde_json::json!({
                    "default_model": self.default_model,
                    "models_file": self.models_file,
                    "model_roots": self.model_roots,
                }),
            ),
        ];
        for p in &self.preload {
            out.push(line("start-up model", p));
        }
        let given: Vec<String> = flags
            .sources()
            .map(|(id, source)| {
                let from = match source {
                    Source::Flag => "flag",
                    Source::Env => "env",
                };
                format!("{id}={from}")
            })
            .collect();
        let file = self
            .config_file
            .as_ref()
            .map_or_else(|| "none".to_string(), |p| p.display().to_string());
        out.push(format!(
            "sources: config_file={file} given={}",
            if given.is_empty() {
                "none".to_string()
            } else {
                given.join(",")
            }
        ));
        out
    }
}
