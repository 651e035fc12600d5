//! JSON Schema of the wire contract, one file per entity and schema version, generated from
//! the Rust types: `docs/schemas/{event,item}.v{1,2}.schema.json`. A test checks that the
//! files match (`UPDATE_SCHEMAS=1 cargo test -p streamrec-proto --test json_schema` rewrites
//! them).
//!
//! The types describe the newest version; an older one is it without the fields the later
//! versions added (`VERSION_2_FIELDS`), so the versions cannot drift apart.

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::{Value, json};

use crate::event::VERSION_2_FIELDS;
use crate::item::ITEM_VERSION_2_FIELDS;
use crate::timestamp::{MAX_EVENT_MILLIS, MIN_EVENT_MILLIS};
use crate::{Event, Item, SCHEMA_VERSIONS};

/// An instant: epoch milliseconds, or an RFC 3339 string.
pub fn timestamp(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "oneOf": [
            {"type": "integer", "minimum": MIN_EVENT_MILLIS, "maximum": MAX_EVENT_MILLIS},
            {"type": "string", "format": "date-time"}
        ]
    })
}

/// [`timestamp`], or null.
pub fn optional_timestamp(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = timestamp(generator);
    if let Some(Value::Array(any_of)) = schema.get_mut("oneOf") {
        any_of.push(json!({"type": "null"}));
    }
    schema
}

/// Fields every version requires.
const EVENT_REQUIRED: [&str; 5] = ["event_id", "session_id", "kind", "item_id", "ts"];
const ITEM_REQUIRED: [&str; 1] = ["item_id"];

/// `(file name, schema)` of each entity at each version.
pub fn schemas() -> Vec<(String, Value)> {
    let entities: [(&str, Value, &[&str], &[&str]); 2] = [
        (
            "event",
            schema_of::<Event>(),
            &EVENT_REQUIRED,
            &VERSION_2_FIELDS,
        ),
        (
            "item",
            schema_of::<Item>(),
            &ITEM_REQUIRED,
            &ITEM_VERSION_2_FIELDS,
        ),
    ];
    let mut files = Vec::new();
    for (entity, newest, required, added_in_2) in entities {
        for version in SCHEMA_VERSIONS {
            let mut schema = newest.clone();
            let mut required: Vec<&str> = required.to_vec();
            if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
                if version < 2 {
                    for field in added_in_2 {
                        properties.remove(*field);
                    }
                } else {
                    required.push("schema_version");
                }
                properties.insert(
                    "schema_version".to_owned(),
                    json!({
                        "description": if version == 1 {
                            "Absent, or 1"
                        } else {
                            "The version this schema describes"
                        },
                        "const": version,
                    }),
                );
            }
            schema["required"] = json!(required);
            schema["title"] = json!(format!("streamrec {entity}, schema version {version}"));
            schema["description"] = json!(format!(
                "One {entity} as emitters publish it (NATS `{}`, or `POST /v1/{entity}s`). Fields this version does not name are ignored; a later `schema_version` is refused `unsupported_schema`.",
                if entity == "event" {
                    "streamrec.events.<kind>"
                } else {
                    "streamrec.items"
                }
            ));
            files.push((format!("{entity}.v{version}.schema.json"), schema));
        }
    }
    files
}

fn schema_of<T: JsonSchema>() -> Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Null)
}
