//! Optional API keys as `Authorization: Bearer <key>`, compared in constant time, and a separate
//! admin key for the routes that load and unload models. Health probes are always public;
//! `/metrics` is public unless configured otherwise.

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::error::{ApiError, ApiErrorKind, Dialect};
use crate::AppState;

/// Who may call what.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Keys accepted on every keyed route; empty: no key asked for.
    pub api_keys: Vec<Secret>,
    /// Key for the admin routes; `None`: admin routes take the API keys.
    pub admin_key: Option<Secret>,
    /// Ask for a key on `/metrics` too.
    pub metrics_require_key: bool,
}

/// What a route needs. Each route is mounted behind the check it needs: the dialect's middleware
/// stack asks for a key ([`require_key`]), the routes that load and unload models add
/// [`require_admin`], `/metrics` has [`metrics_key`] and the probes have none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Keyed,
    Admin,
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
    ApiError::new(ApiErrorKind::Unauthorized, message)
}

/// Decides whether `req` may go on to a route needing `need`; `Err` is the refusal.
fn check(req: &Request, need: Access, cfg: &AuthConfig) -> Result<(), ApiError> {
    let key = bearer(req);
    match need {
        _ if cfg.api_keys.is_empty() && cfg.admin_key.is_none() => Ok(()),
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
                return check(req, Access::Keyed, cfg);
            };
            match key {
                Some(k) if same(k, admin) => Ok(()),
                Some(k) if any_of(k, &cfg.api_keys) => Err(ApiError::new(
                    ApiErrorKind::Forbidden,
                    "loading and unloading models needs the admin key (--admin-key)",
                )),
                Some(_) => Err(unauthorized("the admin key is not valid")),
                None => Err(unauthorized(
                    "this route needs the admin key: send `Authorization: Bearer <admin key>`",
                )),
            }
        }
    }
}

/// The refusal `e` in `D`'s shape, counted, with `WWW-Authenticate` on a 401.
fn refuse<D: Dialect>(state: &AppState, e: &ApiError) -> Response {
    let forbidden = e.kind == ApiErrorKind::Forbidden;
    state.metrics.rejected(if forbidden {
        "forbidden"
    } else {
        "unauthorized"
    });
    let mut resp = D::render(e);
    if !forbidden {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    resp
}

async fn guard<D: Dialect>(state: AppState, need: Access, req: Request, next: Next) -> Response {
    match check(&req, need, &state.auth) {
        Ok(()) => next.run(req).await,
        Err(e) => refuse::<D>(&state, &e),
    }
}

/// Middleware: refuses a request without a valid API key (when keys are set) with 401, in `D`'s
/// error shape. The admin key is accepted too.
pub async fn require_key<D: Dialect>(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    guard::<D>(state, Access::Keyed, req, next).await
}

/// Route layer of the routes that load and unload models: with an admin key set, only it passes
/// (an API key gets 403); without one, the API keys do.
pub async fn require_admin<D: Dialect>(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    guard::<D>(state, Access::Admin, req, next).await
}

/// `/metrics`: keyed like the other routes with `--metrics-require-key`, else public.
pub async fn metrics_key<D: Dialect>(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if state.auth.metrics_require_key {
        guard::<D>(state, Access::Keyed, req, next).await
    } else {
        next.run(req).await
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

    fn req(key: Option<&str>) -> Request {
        let mut b = Request::builder().uri("/x");
        if let Some(k) = key {
            b = b.header("authorization", format!("Bearer {k}"));
        }
        b.body(Body::empty()).unwrap()
    }

    fn status(r: Result<(), ApiError>) -> u16 {
        r.map_or_else(|e| e.status.as_u16(), |_| 200)
    }

    #[test]
    fn keys_and_access() {
        let c = cfg();
        let keyed = |k| status(check(&req(k), Access::Keyed, &c));
        let admin = |k| status(check(&req(k), Access::Admin, &c));
        assert_eq!(keyed(None), 401);
        assert_eq!(keyed(Some("nope")), 401);
        assert_eq!(keyed(Some("k2")), 200);
        assert_eq!(keyed(Some("adm")), 200);
        assert_eq!(admin(Some("k1")), 403);
        assert_eq!(admin(Some("adm")), 200);
        assert_eq!(admin(None), 401);
        assert_eq!(admin(Some("nope")), 401);
    }

    #[test]
    fn open_when_no_key_is_configured() {
        let c = AuthConfig::default();
        assert_eq!(status(check(&req(None), Access::Admin, &c)), 200);
        assert_eq!(status(check(&req(None), Access::Keyed, &c)), 200);
    }

    #[test]
    fn without_an_admin_key_admin_routes_take_the_api_keys() {
        let c = AuthConfig {
            admin_key: None,
            ..cfg()
        };
        assert_eq!(status(check(&req(Some("k1")), Access::Admin, &c)), 200);
        assert_eq!(status(check(&req(None), Access::Admin, &c)), 401);
    }
}
