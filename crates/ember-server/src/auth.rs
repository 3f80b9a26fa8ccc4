//! Optional API keys as `Authorization: Bearer <key>`, compared in constant time, and a separate
//! admin key for the routes that load and unload models. Health probes are always public;
//! `/metrics` is public unless configured otherwise.

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::error::ApiError;
use crate::AppState;

/// Who may call what.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// Keys accepted on every keyed route; empty: no key asked for.
    pub api_keys: Vec<Secret>,
    /// Key for the admin routes; `None`: admin routes take the API keys.
    pub admin_key: Option<Secret>,
    /// Ask for a key on `/metrics` too.
    pub metrics_require_key: bool,
}

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Public,
    Keyed,
    Admin,
}

fn access(method: &Method, path: &str, cfg: &AuthConfig) -> Access {
    if path.starts_with("/health/") {
        return Access::Public;
    }
    if path == "/metrics" {
        return if cfg.metrics_require_key {
            Access::Keyed
        } else {
            Access::Public
        };
    }
    // `POST /api/v1/models/{id}/load` and `DELETE /api/v1/models/{id}`, and Ollama's model
    // management routes should they be mounted.
    let model_admin = path.starts_with("/api/v1/models/")
        && (*method == Method::POST || *method == Method::DELETE);
    let ollama_admin = matches!(
        path,
        "/api/pull" | "/api/delete" | "/api/create" | "/api/copy" | "/api/push"
    );
    if model_admin || ollama_admin {
        Access::Admin
    } else {
        Access::Keyed
    }
}

/// Constant-time equality of a presented key and a configured one: `subtle` compares every
/// byte whatever the first mismatch, so response timing does not reveal how much of a guess was
/// right. (A length mismatch returns early; key lengths are not the secret.)
fn same(presented: &[u8], key: &Secret) -> bool {
    presented.ct_eq(key.expose().as_bytes()).into()
}

fn any_of(presented: &[u8], keys: &[Secret]) -> bool {
    // No short-circuit: every configured key is compared.
    keys.iter()
        .fold(false, |found, k| same(presented, k) | found)
}

fn bearer(req: &Request) -> Option<&[u8]> {
    let v = req.headers().get(header::AUTHORIZATION)?.as_bytes();
    let scheme = v.get(..7)?;
    if scheme.eq_ignore_ascii_case(b"bearer ") {
        Some(v[7..].trim_ascii())
    } else {
        None
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError {
        status: StatusCode::UNAUTHORIZED,
        kind: "unauthorized",
        message: message.to_string(),
    }
}

/// Decides whether `req` may go on; `Err` is the refusal.
fn check(req: &Request, cfg: &AuthConfig) -> Result<(), ApiError> {
    let need = access(req.method(), req.uri().path(), cfg);
    let key = bearer(req);
    match need {
        Access::Public => Ok(()),
        Access::Keyed | Access::Admin if cfg.api_keys.is_empty() && cfg.admin_key.is_none() => {
            Ok(())
        }
        Access::Keyed => {
            if cfg.api_keys.is_empty() {
                // Only an admin key is configured: ordinary routes stay open.
                return Ok(());
            }
            let Some(k) = key else {
                return Err(unauthorized(
                    "this server needs an API key: send `Authorization: Bearer <key>`",
                ));
            };
            let admin = cfg.admin_key.as_ref().is_some_and(|a| same(k, a));
            if any_of(k, &cfg.api_keys) | admin {
                Ok(())
            } else {
                Err(unauthorized("the API key is not valid"))
            }
        }
        Access::Admin => {
            let Some(admin) = &cfg.admin_key else {
                // No admin key: admin routes are keyed like the others.
                return match key {
                    Some(k) if any_of(k, &cfg.api_keys) => Ok(()),
                    Some(_) => Err(unauthorized("the API key is not valid")),
                    None => Err(unauthorized(
                        "this server needs an API key: send `Authorization: Bearer <key>`",
                    )),
                };
            };
            match key {
                Some(k) if same(k, admin) => Ok(()),
                Some(k) if any_of(k, &cfg.api_keys) => Err(ApiError {
                    status: StatusCode::FORBIDDEN,
                    kind: "forbidden",
                    message: "loading and unloading models needs the admin key (--admin-key)"
                        .into(),
                }),
                Some(_) => Err(unauthorized("the admin key is not valid")),
                None => Err(unauthorized(
                    "this route needs the admin key: send `Authorization: Bearer <admin key>`",
                )),
            }
        }
    }
}

/// Middleware: refuses requests without the key their route needs (401, or 403 for an API key
/// on an admin route), in the error shape of the route's API.
pub async fn require_key(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match check(&req, &state.auth) {
        Ok(()) => next.run(req).await,
        Err(e) => {
            state
                .metrics
                .rejected(if e.status == StatusCode::FORBIDDEN {
                    "forbidden"
                } else {
                    "unauthorized"
                });
            let unauthorized = e.status == StatusCode::UNAUTHORIZED;
            let mut resp = crate::middleware::render(req.uri().path(), e);
            if unauthorized {
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
            }
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn cfg() -> AuthConfig {
        AuthConfig {
            api_keys: vec![Secret::new("k1"), Secret::new("k2")],
            admin_key: Some(Secret::new("adm")),
            metrics_require_key: false,
        }
    }

    fn req(method: Method, path: &str, key: Option<&str>) -> Request {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(k) = key {
            b = b.header("authorization", format!("Bearer {k}"));
        }
        b.body(Body::empty()).unwrap()
    }

    fn status(r: Result<(), ApiError>) -> u16 {
        r.map_or_else(|e| e.status.as_u16(), |_| 200)
    }

    #[test]
    fn keys_and_routes() {
        let c = cfg();
        assert_eq!(
            status(check(&req(Method::GET, "/health/ready", None), &c)),
            200
        );
        assert_eq!(status(check(&req(Method::GET, "/metrics", None), &c)), 200);
        assert_eq!(
            status(check(&req(Method::POST, "/v1/embeddings", None), &c)),
            401
        );
        assert_eq!(
            status(check(
                &req(Method::POST, "/v1/embeddings", Some("nope")),
                &c
            )),
            401
        );
        assert_eq!(
            status(check(&req(Method::POST, "/v1/embeddings", Some("k2")), &c)),
            200
        );
        assert_eq!(
            status(check(&req(Method::POST, "/v1/embeddings", Some("adm")), &c)),
            200
        );
        let load = "/api/v1/models/tiny-bert/load";
        assert_eq!(status(check(&req(Method::POST, load, Some("k1")), &c)), 403);
        assert_eq!(
            status(check(&req(Method::POST, load, Some("adm")), &c)),
            200
        );
        assert_eq!(
            status(check(&req(Method::DELETE, "/api/v1/models/x", None), &c)),
            401
        );
        assert_eq!(
            status(check(&req(Method::GET, "/api/v1/models/x", Some("k1")), &c)),
            200
        );
    }

    #[test]
    fn open_when_no_key_is_configured() {
        let c = AuthConfig::default();
        assert_eq!(
            status(check(&req(Method::DELETE, "/api/v1/models/x", None), &c)),
            200
        );
        assert_eq!(status(check(&req(Method::POST, "/embed", None), &c)), 200);
    }

    #[test]
    fn metrics_can_be_keyed() {
        let c = AuthConfig {
            metrics_require_key: true,
            ..cfg()
        };
        assert_eq!(status(check(&req(Method::GET, "/metrics", None), &c)), 401);
        assert_eq!(
            status(check(&req(Method::GET, "/metrics", Some("k1")), &c)),
            200
        );
    }
}
