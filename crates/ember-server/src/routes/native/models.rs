//! The native model routes: `GET /api/v1/models` (the catalog with each model's kind, load
//! state and counters), `GET /api/v1/models/{id}`, and behind the admin key `POST /api/v1/models/{id}/load`
//! and `DELETE /api/v1/models/{id}`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use ember_core::ModelStatus;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{no_route, Error, Native};
use crate::error::{ApiError, ApiErrorKind};
use crate::json::Path;
use crate::routes::shared;
use crate::AppState;

/// Body of `POST /api/v1/models/{id}/load` (optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadRequest {
    /// Weight dtype to load (the model's default when absent).
    #[serde(default)]
    #[schema(value_type = Option<shared::DTypeName>, inline)]
    pub dtype: Option<String>,
    /// How long the model stays loaded when idle: `"5m"`, `"-1"` (forever) or seconds.
    #[serde(default)]
    #[schema(value_type = Option<shared::KeepAliveValue>, inline)]
    pub keep_alive: Option<Value>,
}

/// The catalog with each model's load state, dtype, bytes held, last use, keep-alive, and its
/// counters since the server started (hits, misses, loads, load failures, evictions by reason).
#[utoipa::path(get, operation_id = "native_list_models", path = "/api/v1/models", tag = "native",
    responses((status = 200, description = "`{default_model, models: [...]}`; each model's \
        `counters` is `{hits, misses, loads, load_failures, evictions: {lru, memory, keep_alive, \
        unload, replaced}}` over all its dtypes, kept across evictions and reloads, and each \
        loaded instance's `counters` the same for its dtype")))]
pub async fn list_models(State(state): State<AppState>) -> Result<axum::Json<Value>, Error> {
    let c = catalog(&state)?;
    Ok(axum::Json(
        serde_json::json!({"default_model": c.default_model, "models": c.models}),
    ))
}

/// The catalog as callers see it: every model's status, and the default model's id.
#[derive(Debug)]
pub struct Catalog {
    pub default_model: String,
    pub models: Vec<ModelStatus>,
}

/// The catalog with load states, as `GET /api/v1/models` answers it (the web page's stats too).
pub fn catalog(state: &AppState) -> Result<Catalog, ApiError> {
    Ok(Catalog {
        models: state.manager.status()?.into_iter().map(public).collect(),
        default_model: state.manager.spec(None)?.id,
    })
}

/// `status` as callers see it: a load failure's message without file-system paths.
fn public(mut status: ModelStatus) -> ModelStatus {
    status.error = status.error.map(|e| crate::error::redact_paths(&e));
    status
}

fn status_json(status: ModelStatus) -> Result<axum::Json<Value>, Error> {
    serde_json::to_value(public(status))
        .map(axum::Json)
        .map_err(|e| {
            Error::from(ApiError::internal(format!(
                "cannot serialize model status: {e}"
            )))
        })
}

/// One model's catalog entry, load state and counters (as in `GET /api/v1/models`), with the
/// identity its vectors carry: `revision` and `weights_sha256`, the SHA-256 of its safetensors
/// weights as in-process Ember computes it.
#[utoipa::path(get, operation_id = "native_get_model", path = "/api/v1/models/{id}", tag = "native",
    params(("id" = String, Path, description = "Model id or alias (may contain `/`)")),
    responses((status = 200, description = "The model's status and `weights_sha256`: the loaded copy's, else its files' on this machine (hashed once until they change); `null` when the files are not here yet (the first load downloads them) or changed on disk since the loaded copy read them (unload it to reload)"), (status = 404)))]
pub async fn get_model(
    State(state): State<AppState>,
    Path(id, _): Path<String, Native>,
) -> Result<axum::Json<Value>, Error> {
    let manager = state.manager.clone();
    // Hashing reads the weight files (once per version of them): not on the async runtime.
    let (status, sha) = tokio::task::spawn_blocking(move || {
        let status = manager.model_status(&id)?;
        let sha = manager.weights_sha256(&id).unwrap_or_else(|e| {
            // The status still answers: it is how a caller finds out that the model is broken.
            tracing::warn!(model = %status.spec.id, error = %e, "cannot hash the model's weights");
            None
        });
        Ok::<_, ember_core::Error>((status, sha))
    })
    .await
    .map_err(|e| ApiError::internal(format!("model status task failed: {e}")))??;
    let axum::Json(mut body) = status_json(status)?;
    if let Value::Object(fields) = &mut body {
        fields.insert("weights_sha256".into(), sha.into());
    }
    Ok(axum::Json(body))
}

/// Loads a model now (body: `dtype`, `keep_alive`, both optional) and returns its status.
#[utoipa::path(post, operation_id = "native_load_model", path = "/api/v1/models/{id}/load", tag = "native",
    params(("id" = String, Path, description = "Model id or alias")),
    request_body(content = LoadRequest, description = "Optional"),
    responses((status = 200, description = "The model's status after loading"), (status = 403), (status = 404)))]
pub async fn load_model(
    State(state): State<AppState>,
    Path(path, _): Path<String, Native>,
    body: Bytes,
) -> Result<axum::Json<Value>, Error> {
    // Ids may contain `/`, so the route is a wildcard and the action its last segment.
    let Some(id) = path.strip_suffix("/load") else {
        return Err(no_route(&format!("/api/v1/models/{path}")).into());
    };
    let req: LoadRequest = if body.iter().all(u8::is_ascii_whitespace) {
        LoadRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                ApiErrorKind::InvalidJson,
                format!("invalid load request body: {e}"),
            )
        })?
    };
    let dtype = shared::parse_dtype(req.dtype.as_deref())?;
    let keep_alive = shared::parse_keep_alive(req.keep_alive.as_ref())?;
    let manager = state.manager.clone();
    let id = id.to_string();
    let status = tokio::task::spawn_blocking(move || manager.load(&id, dtype, keep_alive))
        .await
        .map_err(|e| ApiError::internal(format!("model load task failed: {e}")))??;
    status_json(status)
}

/// Unloads a model (`?dtype=` for one dtype, else all); pinned models cannot be unloaded.
#[utoipa::path(delete, operation_id = "native_unload_model", path = "/api/v1/models/{id}", tag = "native",
    params(("id" = String, Path, description = "Model id or alias"),
        ("dtype" = inline(Option<shared::DTypeName>), Query, description = "Only this dtype")),
    responses((status = 200, description = "`{id, unloaded}`: instances removed"),
        (status = 400, description = "Pinned model"), (status = 403), (status = 404)))]
pub async fn unload_model(
    State(state): State<AppState>,
    Path(id, _): Path<String, Native>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<(StatusCode, axum::Json<Value>), Error> {
    let dtype = shared::parse_dtype(query.get("dtype").map(String::as_str))?;
    let spec = state.manager.spec(Some(&id))?;
    let n = state.manager.unload(&id, dtype)?;
    Ok((
        StatusCode::OK,
        axum::Json(serde_json::json!({"id": spec.id, "unloaded": n})),
    ))
}
