//! The OpenAPI 3.1 description of the HTTP API, generated from the handlers' annotations and
//! the wire types: served at `GET /openapi.json`, committed as `docs/openapi.json` (a test
//! keeps the two equal), and read by the explorer at `/docs`.

use std::sync::OnceLock;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Spec, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::routes::{
    drift, events, health, items, recommendations, sessions, shadow, snapshots, users,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "streamrec",
        description = "Real-time recommendations that learn from every event. Keys: `Authorization: Bearer KEY` or `X-API-Key: KEY`, with scopes read, write and admin (admin implies the others); with no keys configured the API is open. Every error is a JSON body `{\"error\": {\"code\", \"message\", \"details\"}}`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        events::post,
        items::post,
        items::list,
        items::get,
        items::delete,
        users::delete,
        sessions::get,
        recommendations::get,
        recommendations::post,
        health::stats,
        drift::get,
        snapshots::create,
        snapshots::list,
        snapshots::show,
        snapshots::learner,
        shadow::start,
        shadow::report,
        shadow::stop,
        health::healthz,
        health::readyz,
        health::metrics,
    ),
    components(schemas(streamrec_proto::ErrorBody, streamrec_proto::ErrorDetail, streamrec_proto::FieldError, streamrec_proto::DriftAlert)),
    modifiers(&Security, &CommonErrors),
    tags(
        (name = "events", description = "The clickstream: what the learners learn from"),
        (name = "items", description = "The catalog"),
        (name = "users", description = "Erasure (GDPR)"),
        (name = "sessions", description = "A session's windowed features and recent items"),
        (name = "recommendations", description = "Ranked lists, served from the latest published models"),
        (name = "snapshots", description = "Versioned learner state"),
        (name = "shadow", description = "A snapshot ranked beside the live models"),
        (name = "operations", description = "Health, readiness, counters, metrics"),
    ),
)]
pub struct ApiDoc;

/// `POST /v1/events`' body: one event or an array of them.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // Describes the body; the handler validates it field by field.
#[allow(clippy::large_enum_variant)] // Never built: only its schema is used.
pub enum EventBatch {
    One(streamrec_proto::Event),
    Many(Vec<streamrec_proto::Event>),
}

/// `POST /v1/items`' body: one item or an array of them.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum ItemBatch {
    One(streamrec_proto::Item),
    Many(Vec<streamrec_proto::Item>),
}

struct Security;

impl Modify for Security {
    fn modify(&self, spec: &mut Spec) {
        let components = spec.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

/// The answers any operation may give besides its own: bad input, a missing or weak key,
/// an oversized or non-JSON body, a request too slow, a shed or a bus outage. Each is the
/// one JSON error body.
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, spec: &mut Spec) {
        let error = || {
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build()
        };
        let answer = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content("application/json", error())
                .build()
        };
        for item in spec.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.delete,
                &mut item.put,
                &mut item.patch,
            ];
            for op in operations.into_iter().flatten() {
                let guarded = op.security.as_ref().is_some_and(|s| !s.is_empty());
                let has_body = op.request_body.is_some();
                let mut common: Vec<(&str, &str)> = vec![
                    (
                        "400",
                        "Invalid input: `code` names what, `details` each field",
                    ),
                    ("408", "The request took longer than the request timeout"),
                    (
                        "503",
                        "Shed before any work (with Retry-After), or the bus is unavailable",
                    ),
                ];
                if guarded {
                    common.push(("401", "No key, or an unknown one (keys are configured)"));
                    common.push(("403", "The key lacks this route's scope"));
                }
                if has_body {
                    common.push(("413", "The body is larger than 8 MiB"));
                    common.push(("415", "The body is not application/json"));
                }
                for (status, description) in common {
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| answer(description).into());
                }
                // Keys may be absent: an open server asks for none.
                if let Some(security) = &mut op.security {
                    security.push(Default::default());
                }
            }
        }
    }
}

/// The spec as JSON, built once.
pub fn spec_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        ApiDoc::openapi()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"spec not serialisable: {e}\"}}"))
    })
}

/// `GET /openapi.json`.
pub async fn serve_spec() -> Response {
    let mut response = (StatusCode::OK, spec_json()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/openapi.json` is what clients generate from: it must be the server's. After an
    /// API change, `streamrec openapi > docs/openapi.json` brings it up to date.
    #[test]
    fn the_committed_spec_is_the_generated_one() {
        let committed = include_str!("../../docs/openapi.json");
        assert!(
            committed.trim_end() == spec_json(),
            "docs/openapi.json differs from the generated spec: run `streamrec openapi > docs/openapi.json`"
        );
    }

    #[test]
    fn every_reference_resolves() {
        let spec: serde_json::Value = serde_json::from_str(spec_json()).expect("JSON");
        let schemas = &spec["components"]["schemas"];
        for name in spec_json()
            .split("\"#/components/schemas/")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
        {
            assert!(
                schemas[name].is_object(),
                "{name} is referenced but not defined"
            );
        }
    }

    #[test]
    fn the_spec_is_openapi_3_1_and_every_route_is_in_it() {
        let spec: serde_json::Value = serde_json::from_str(spec_json()).expect("JSON");
        assert!(
            spec["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1"))
        );
        for (path, method) in [
            ("/v1/events", "post"),
            ("/v1/items", "get"),
            ("/v1/items/{item_id}", "delete"),
            ("/v1/users/{user_id}", "delete"),
            ("/v1/recommendations", "post"),
            ("/v1/snapshots/{version}/learners/{name}", "get"),
            ("/metrics", "get"),
        ] {
            let op = &spec["paths"][path][method];
            assert!(op.is_object(), "{method} {path} is missing");
            assert!(op["responses"]["503"].is_object(), "{method} {path}: 503");
        }
        let erase = &spec["paths"]["/v1/users/{user_id}"]["delete"];
        assert!(erase["responses"]["401"].is_object() && erase["responses"]["403"].is_object());
        assert!(
            spec["paths"]["/healthz"]["get"]["responses"]["401"].is_null(),
            "open"
        );
    }
}
