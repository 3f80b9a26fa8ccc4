//! The catalog of embedding models: built-in entries (from `builtin_models.toml`), entries users
//! add in a TOML file of the same shape, aliases, and model directories used as ids.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::pooling::Pooling;

/// How a Python package installed in the environment ships a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Packaged {
    /// A ready model directory inside an importable package: `<site-packages>/<module>/<subdir>`.
    Dir {
        module: String,
        subdir: String,
        /// The pip name to install it with.
        pip: String,
    },
    /// A zip split across several packages' files; joined and unpacked once into Ember's cache.
    SplitZip {
        /// Paths relative to site-packages, in order.
        parts: Vec<String>,
        /// The model's folder inside the archive.
        root: String,
        pip: String,
    },
}

/// One catalog entry: the facts of a model and where its files may come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// The id requests use.
    pub id: String,
    #[serde(default)]
    pub display_name: String,
    /// Hugging Face Hub repository id.
    #[serde(default)]
    pub hub_repo: Option<String>,
    #[serde(default = "default_revision")]
    pub revision: String,
    /// `model_type` of config.json (`bert`, `mpnet`, `xlm-roberta`, …).
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub dimension: usize,
    /// Parameters, in millions.
    #[serde(default)]
    pub parameters_m: f64,
    /// Size of the FP32 weights on disk, in MB.
    #[serde(default)]
    pub size_mb: f64,
    #[serde(default)]
    pub languages: Vec<String>,
    #[serde(default)]
    pub max_seq_length: usize,
    #[serde(default = "default_pooling")]
    pub pooling: Pooling,
    /// Whether the model's pipeline ends in L2 normalization.
    #[serde(default = "default_true")]
    pub normalize: bool,
    #[serde(default)]
    pub prompts: BTreeMap<String, String>,
    #[serde(default)]
    pub default_prompt_name: Option<String>,
    /// Recommended weight dtype.
    #[serde(default = "default_dtype")]
    pub default_dtype: String,
    #[serde(default)]
    pub is_default: bool,
    #[serde(default)]
    pub license: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub use_cases: Vec<String>,
    /// False when Ember has no encoder for the architecture yet.
    #[serde(default = "default_true")]
    pub supported: bool,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// A local model directory (user entries, or a directory used as an id).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// A Python package that ships the model.
    #[serde(default)]
    pub packaged: Option<Packaged>,
}

fn default_revision() -> String {
    "main".into()
}
fn default_pooling() -> Pooling {
    Pooling::Mean
}
fn default_true() -> bool {
    true
}
fn default_dtype() -> String {
    "fp32".into()
}

impl ModelSpec {
    /// A minimal entry for a model directory; facts are read from its files when it loads.
    pub fn for_path(id: &str, path: &Path) -> Self {
        ModelSpec {
            id: id.to_string(),
            display_name: id.to_string(),
            hub_repo: None,
            revision: default_revision(),
            architecture: String::new(),
            dimension: 0,
            parameters_m: 0.0,
            size_mb: 0.0,
            languages: Vec::new(),
            max_seq_length: 0,
            pooling: Pooling::Mean,
            normalize: true,
            prompts: BTreeMap::new(),
            default_prompt_name: None,
            default_dtype: default_dtype(),
            is_default: false,
            license: String::new(),
            description: format!("local model directory {}", path.display()),
            use_cases: Vec::new(),
            supported: true,
            aliases: Vec::new(),
            path: Some(path.to_path_buf()),
            packaged: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default)]
    models: Vec<ModelSpec>,
}

/// The model catalog.
#[derive(Debug, Clone)]
pub struct Registry {
    models: Vec<ModelSpec>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Registry {
    /// The built-in catalog.
    pub fn builtin() -> Self {
        let file: RegistryFile = toml::from_str(include_str!("builtin_models.toml"))
            .unwrap_or_else(|e| panic!("builtin_models.toml is invalid: {e}"));
        Self {
            models: file.models,
        }
    }

    /// Every entry, in catalog order.
    pub fn models(&self) -> &[ModelSpec] {
        &self.models
    }

    /// The default model (the entry marked `is_default`, else the first).
    pub fn default_model(&self) -> &ModelSpec {
        self.models
            .iter()
            .find(|m| m.is_default)
            .unwrap_or(&self.models[0])
    }

    /// Makes `id` the default model.
    pub fn set_default(&mut self, id: &str) -> Result<()> {
        let id = self.lookup(id)?.id;
        for m in &mut self.models {
            m.is_default = m.id == id;
        }
        Ok(())
    }

    /// Adds or replaces an entry. A relative `path` stays as given.
    pub fn register(&mut self, spec: ModelSpec) -> Result<()> {
        if spec.id.trim().is_empty() {
            return Err(Error::invalid("id", "a model id must not be empty"));
        }
        if spec.id.trim() != spec.id || spec.id.chars().any(char::is_control) {
            return Err(Error::invalid(
                "id",
                format!(
                    "model id {:?} has leading/trailing spaces or control characters",
                    spec.id
                ),
            ));
        }
        if spec.path.is_none() && spec.hub_repo.is_none() && spec.packaged.is_none() {
            return Err(Error::invalid(
                "path",
                format!("model `{}` needs a `path` or a `hub_repo`", spec.id),
            ));
        }
        if spec.is_default {
            self.models.iter_mut().for_each(|m| m.is_default = false);
        }
        match self.models.iter_mut().find(|m| m.id == spec.id) {
            Some(slot) => *slot = spec,
            None => self.models.push(spec),
        }
        Ok(())
    }

    /// Reads a user TOML file (`[[models]]` entries); relative paths resolve against its folder.
    pub fn load_toml(&mut self, path: &Path) -> Result<usize> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        self.add_toml_str(&text, path).map(|ids| ids.len())
    }

    /// Adds the `[[models]]` entries of `text`, read from `origin` (named in errors; relative
    /// paths resolve against its folder). Returns the ids added. Nothing is added on error.
    pub fn add_toml_str(&mut self, text: &str, origin: &Path) -> Result<Vec<String>> {
        let registry_err = |message: String| Error::Registry {
            path: origin.to_path_buf(),
            message,
        };
        let file: RegistryFile = toml::from_str(text).map_err(|e| registry_err(e.to_string()))?;
        let base = origin.parent().unwrap_or(Path::new("."));
        let mut staged = self.clone();
        let mut ids = Vec::with_capacity(file.models.len());
        for mut spec in file.models {
            if let Some(p) = &spec.path {
                if p.is_relative() {
                    spec.path = Some(base.join(p));
                }
            }
            if spec.display_name.is_empty() {
                spec.display_name = spec.id.clone();
            }
            ids.push(spec.id.clone());
            staged
                .register(spec)
                .map_err(|e| registry_err(e.to_string()))?;
        }
        *self = staged;
        Ok(ids)
    }

    /// Finds an entry by id or alias (case-insensitive), or treats an existing directory as a
    /// model. Unknown ids give an error listing the known ones.
    pub fn lookup(&self, id: &str) -> Result<ModelSpec> {
        let want = id.trim();
        let lower = want.to_ascii_lowercase();
        if let Some(m) = self.models.iter().find(|m| m.id == want) {
            return Ok(m.clone());
        }
        if let Some(m) = self.models.iter().find(|m| {
            m.id.to_ascii_lowercase() == lower
                || m.aliases.iter().any(|a| a.to_ascii_lowercase() == lower)
        }) {
            return Ok(m.clone());
        }
        let path = Path::new(want);
        if !want.is_empty() && path.is_dir() {
            return Ok(ModelSpec::for_path(want, path));
        }
        Err(Error::ModelNotFound {
            id: id.to_string(),
            known: self
                .models
                .iter()
                .map(|m| m.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_has_the_promised_entries() {
        let r = Registry::builtin();
        for id in [
            "all-MiniLM-L6-v2",
            "bert-base-uncased",
            "e5-small-v2",
            "instructor-base",
            "bge-small-en-v1.5",
            "all-mpnet-base-v2",
            "multilingual-e5-small",
            "bge-m3",
            "nomic-embed-text-v1.5",
            "mxbai-embed-large-v1",
        ] {
            let m = r.lookup(id).unwrap();
            assert!(
                m.dimension > 0 && m.max_seq_length > 0 && m.hub_repo.is_some(),
                "{id}"
            );
        }
        assert_eq!(r.default_model().id, "all-MiniLM-L6-v2");
        assert!(!r.lookup("instructor-base").unwrap().supported);
    }

    #[test]
    fn aliases_follow_ollama_names() {
        let r = Registry::builtin();
        assert_eq!(r.lookup("all-minilm").unwrap().id, "all-MiniLM-L6-v2");
        assert_eq!(
            r.lookup("all-minilm:latest").unwrap().id,
            "all-MiniLM-L6-v2"
        );
    }

    #[test]
    fn unknown_id_lists_known_models() {
        let err = Registry::builtin().lookup("no-such-model").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("no-such-model") && msg.contains("all-MiniLM-L6-v2"),
            "{msg}"
        );
    }

    #[test]
    fn user_toml_adds_entries_with_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("models.toml");
        std::fs::write(
            &file,
            "[[models]]\nid = \"mine\"\npath = \"weights/mine\"\nmax_seq_length = 64\n",
        )
        .unwrap();
        let mut r = Registry::builtin();
        assert_eq!(r.load_toml(&file).unwrap(), 1);
        let m = r.lookup("mine").unwrap();
        assert_eq!(m.path.unwrap(), dir.path().join("weights/mine"));
    }

    #[test]
    fn user_toml_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "[[models]]\nid = \"x\"\nbogus = 1\n").unwrap();
        let msg = Registry::builtin()
            .load_toml(&file)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("bad.toml") && msg.contains("bogus"), "{msg}");
    }
}
