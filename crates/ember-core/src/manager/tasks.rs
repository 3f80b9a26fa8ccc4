//! The manager's calls for rerankers and sparse encoders, beside `embed`: each checks the
//! catalog's kind before loading anything (an embedder asked to rerank loads nothing), then
//! uses the model as `embed` does (keep-alive refreshed, a keep-alive of 0 unloads it after).

use super::{KeepAlive, ModelManager};
use crate::dtype::DType;
use crate::embedder::Embedder;
use crate::error::{Error, Result};
use crate::heads::ModelKind;
use crate::rerank::{PredictInput, Ranked, RerankOptions, Scores};
use crate::sparse::{SparseEmbeddings, SparseOptions};

impl ModelManager {
    /// An error naming the model's kind unless the catalog lists (`id`, or the default model) as
    /// `want`; `task` names the call.
    pub fn check_kind(&self, id: Option<&str>, want: ModelKind, task: &'static str) -> Result<()> {
        let spec = self.spec(id)?;
        if spec.kind == want {
            return Ok(());
        }
        Err(Error::WrongKind {
            model: spec.id,
            kind: spec.kind,
            task,
            wanted: want,
        })
    }

    /// Runs `f` on (`id`, `dtype`) after checking its kind, for as long as its lease lives.
    fn with_model<T>(
        &self,
        id: Option<&str>,
        dtype: Option<DType>,
        keep_alive: Option<KeepAlive>,
        (want, task): (ModelKind, &'static str),
        f: impl FnOnce(&Embedder) -> Result<T>,
    ) -> Result<T> {
        self.check_kind(id, want, task)?;
        let model = self.lease(id, dtype)?;
        if let Some(k) = keep_alive {
            model.set_keep_alive(k);
        }
        f(&model)
    }

    /// Scores every document against `query` with the reranker (`id`, `dtype`), best first.
    pub fn rerank(
        &self,
        id: Option<&str>,
        dtype: Option<DType>,
        query: &str,
        documents: &[String],
        opts: &RerankOptions,
    ) -> Result<Ranked> {
        self.with_model(id, dtype, None, (ModelKind::Reranker, "rerank"), |m| {
            m.rerank(query, documents, opts)
        })
    }

    /// Scores of texts or pairs with the reranker (`id`, `dtype`), in input order.
    pub fn predict(
        &self,
        id: Option<&str>,
        dtype: Option<DType>,
        inputs: &[PredictInput],
        opts: &RerankOptions,
    ) -> Result<Scores> {
        self.with_model(id, dtype, None, (ModelKind::Reranker, "predict"), |m| {
            m.predict(inputs, opts)
        })
    }

    /// Sparse vectors of `texts` with the sparse encoder (`id`, `dtype`), in input order.
    pub fn embed_sparse(
        &self,
        id: Option<&str>,
        dtype: Option<DType>,
        texts: &[String],
        opts: &SparseOptions,
    ) -> Result<SparseEmbeddings> {
        self.with_model(
            id,
            dtype,
            None,
            (ModelKind::Sparse, "sparse embedding"),
            |m| m.embed_sparse(texts, opts),
        )
    }

    /// Per-token vectors of `texts` with the embedder (`id`, `dtype`) (see
    /// [`Embedder::token_embeddings`]).
    pub fn token_embeddings(
        &self,
        id: Option<&str>,
        dtype: Option<DType>,
        texts: &[String],
        truncate: bool,
    ) -> Result<Vec<Vec<f32>>> {
        self.with_model(
            id,
            dtype,
            None,
            (ModelKind::Embedder, "token embeddings"),
            |m| m.token_embeddings(texts, truncate),
        )
    }
}
