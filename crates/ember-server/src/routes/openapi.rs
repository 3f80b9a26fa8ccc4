//! The OpenAPI document, served at `GET /openapi.json` and committed as `openapi.json`: each
//! dialect's paths and schemas ([`Api::paths`]), with the error answers every operation may give
//! added in that dialect's error shape, the web page's JSON, and the operational routes.

use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, ResponseBuilder};
use utoipa::OpenApi as _;

use super::native::Native;
use super::{ops, Api};

/// The document's frame: title, description, the operational routes and their tag.
#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    info(
        title = "Ember",
        description = "One process serving many text-embedding models, with native, OpenAI, Ollama and TEI compatible routes."
    ),
    paths(ops::live, ops::ready, spec)
)]
struct Frame;

/// `D`'s paths with their error answers, and its tag.
fn dialect_doc<D: Api>() -> OpenApi {
    let mut doc = D::paths();
    let components = doc.components.get_or_insert_with(Default::default);
    let body = D::error_schema(components);
    add_error_responses(&mut doc, &body);
    doc.tags = Some(vec![TagBuilder::new()
        .name(D::TAG)
        .description(Some(D::DESCRIPTION))
        .build()]);
    doc
}

/// The whole document.
pub fn spec_doc() -> OpenApi {
    let mut doc = Frame::openapi();
    let mut tags = Vec::new();
    for part in crate::for_each_dialect!(dialect_doc()) {
        tags.extend(part.tags.clone().unwrap_or_default());
        doc.merge(part);
    }
    // The web page's JSON, answered in the native shape.
    let mut ui = crate::ui::Doc::openapi();
    let native_error = Native::error_schema(&mut Default::default());
    add_error_responses(&mut ui, &native_error);
    doc.merge(ui);
    tags.push(
        TagBuilder::new()
            .name("ui")
            .description(Some("The web page's data (the page itself is `GET /`)"))
            .build(),
    );
    tags.push(
        TagBuilder::new()
            .name("health")
            .description(Some("Probes"))
            .build(),
    );
    doc.tags = Some(tags);
    doc
}

/// The error statuses every operation may answer, each with the body schema `body`, so a schema
/// checker can validate error answers too. What an operation needs follows from what it is: a
/// body (POST), a model (it lists 404), the admin key (it lists 403).
fn add_error_responses(doc: &mut OpenApi, body: &str) {
    for item in doc.paths.paths.values_mut() {
        let ops = [
            (&mut item.get, false),
            (&mut item.post, true),
            (&mut item.delete, false),
        ];
        for (op, has_body) in ops {
            let Some(op) = op.as_mut() else { continue };
            let listed = |s: &str| op.responses.responses.contains_key(s);
            let names_model = listed("404");
            let admin = listed("403");
            let mut statuses = vec![
                ("401", "No valid API key (when keys are set)"),
                (
                    "429",
                    "Too many requests at once, or the model's queue is full",
                ),
                ("500", "A fault inside Ember"),
            ];
            if has_body || names_model {
                statuses.push((
                    "400",
                    "Invalid request (the message names the field), or a model listed as not supported yet",
                ));
            }
            if has_body {
                statuses.extend([
                    (
                        "413",
                        "Too many inputs or characters, or a body over the limit",
                    ),
                    ("415", "The body is not `application/json`"),
                ]);
            }
            if names_model {
                statuses.extend([
                    ("404", "Unknown model (or route)"),
                    ("503", "The model's files could not be found or loaded"),
                ]);
            }
            if admin {
                statuses.push(("403", "An API key where the admin key is needed"));
            }
            for (status, description) in statuses {
                let content = ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(body)))
                    .build();
                let kept = match op.responses.responses.get(status) {
                    Some(utoipa::openapi::RefOr::T(r)) if !r.description.is_empty() => {
                        r.description.clone()
                    }
                    _ => description.to_string(),
                };
                let response = ResponseBuilder::new()
                    .description(kept)
                    .content("application/json", content)
                    .build();
                op.responses
                    .responses
                    .insert(status.to_string(), response.into());
            }
        }
    }
}

/// The document as pretty JSON with a trailing newline (the form committed to the repo).
pub fn document() -> String {
    let mut s = spec_doc()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    s.push('\n');
    s
}

/// This OpenAPI document.
#[utoipa::path(get, operation_id = "spec", path = "/openapi.json", tag = "health",
    responses((status = 200, description = "The OpenAPI 3.1 document")))]
pub async fn spec() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        document(),
    )
}
