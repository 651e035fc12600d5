//! The JSON Schema files in `docs/schemas` are what the Rust types generate.

use std::path::Path;

use serde_json::json;
use streamrec_proto::{Event, Item, Reason, json_schema};

#[test]
fn the_schema_files_match_the_types() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/schemas");
    let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
    let schemas = json_schema::schemas();
    assert_eq!(schemas.len(), 4, "events and items, versions 1 and 2");
    for (name, schema) in schemas {
        let text = serde_json::to_string_pretty(&schema).expect("serialises") + "\n";
        let path = dir.join(&name);
        if update {
            std::fs::create_dir_all(&dir).expect("docs/schemas");
            std::fs::write(&path, &text).expect("written");
            continue;
        }
        let kept = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            kept == text,
            "{name} is stale: UPDATE_SCHEMAS=1 cargo test -p streamrec-proto --test json_schema"
        );
    }
}

#[test]
fn version_1_lacks_what_version_2_added_and_both_name_their_version() {
    let schemas = json_schema::schemas();
    let find = |name: &str| {
        schemas
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.clone())
            .expect("generated")
    };
    let v1 = find("event.v1.schema.json");
    let v2 = find("event.v2.schema.json");
    for field in ["dwell_ms", "price", "currency", "items"] {
        assert!(v1["properties"].get(field).is_none(), "{field}");
        assert!(v2["properties"].get(field).is_some(), "{field}");
    }
    assert_eq!(v1["properties"]["schema_version"]["const"], 1);
    assert_eq!(v2["properties"]["schema_version"]["const"], 2);
    assert!(
        v2["required"]
            .as_array()
            .is_some_and(|r| r.contains(&json!("schema_version")))
    );
    assert_eq!(find("item.v1.schema.json")["properties"].get("price"), None);
}

fn event(extra: serde_json::Value) -> serde_json::Value {
    let mut e = json!({"event_id": "e", "session_id": "s", "kind": "view", "item_id": "i", "ts": 1_700_000_000_000_i64});
    if let (Some(e), Some(extra)) = (e.as_object_mut(), extra.as_object()) {
        e.extend(extra.clone());
    }
    e
}

fn parse(value: serde_json::Value) -> Result<Event, (String, &'static str)> {
    Event::from_json(value.to_string().as_bytes()).map_err(|e| (e.field, e.reason.code()))
}

#[test]
fn version_1_events_read_as_before_and_version_2_fields_are_checked() {
    // A v1 emitter's event, stray fields and all, reads as it always did.
    let v1 = parse(event(json!({"price": "cheap", "items": 7}))).expect("v1 ignores them");
    assert_eq!(v1.details.schema_version, 1);
    assert_eq!(v1.details.price, None);
    assert_eq!(v1.to_json(), parse(event(json!({}))).expect("v1").to_json());
    assert_eq!(
        parse(event(json!({"schema_version": 1}))).map(|e| e.details.schema_version),
        Ok(1)
    );

    let v2 = parse(event(json!({
        "schema_version": 2, "dwell_ms": 1500, "price": 9.5, "currency": "EUR",
        "items": ["a", "b"]
    })))
    .expect("v2");
    assert_eq!(v2.details.dwell_ms, Some(1500));
    assert_eq!(
        v2.details.items.as_deref(),
        Some(&["a".to_owned(), "b".to_owned()][..])
    );
    let again = Event::from_json(&v2.to_json()).expect("the wire form reads back");
    assert_eq!(again, v2);

    for (extra, field, code) in [
        (
            json!({"schema_version": 3}),
            "schema_version",
            "unsupported_schema",
        ),
        (
            json!({"schema_version": 99}),
            "schema_version",
            "unsupported_schema",
        ),
        (
            json!({"schema_version": "2"}),
            "schema_version",
            "wrong_type",
        ),
        (
            json!({"schema_version": 0}),
            "schema_version",
            "out_of_range",
        ),
        (
            json!({"schema_version": 2, "price": -1}),
            "price",
            "out_of_range",
        ),
        (
            json!({"schema_version": 2, "currency": "euro"}),
            "currency",
            "wrong_type",
        ),
        (
            json!({"schema_version": 2, "items": ["ok", ""]}),
            "items",
            "empty_field",
        ),
        (
            json!({"schema_version": 2, "dwell_ms": -5}),
            "dwell_ms",
            "out_of_range",
        ),
    ] {
        assert_eq!(
            parse(event(extra.clone())),
            Err((field.to_owned(), code)),
            "{extra}"
        );
    }
    let many: Vec<String> = (0..101).map(|i| format!("i{i}")).collect();
    assert_eq!(
        parse(event(json!({"schema_version": 2, "items": many}))).map(drop),
        Err(("items".to_owned(), "out_of_range"))
    );
    assert!(Reason::CODES.contains(&"unsupported_schema"));
}

#[test]
fn items_carry_a_version_too() {
    let item = |v: serde_json::Value| Item::from_json(v.to_string().as_bytes());
    let v2 = item(json!({"item_id": "i", "schema_version": 2, "price": 3.0, "currency": "USD"}))
        .expect("v2");
    assert_eq!(v2.details.price, Some(3.0));
    assert_eq!(Item::from_json(&v2.to_json()).expect("reads back"), v2);
    let v1 = item(json!({"item_id": "i", "price": 3.0})).expect("v1");
    assert_eq!(v1.details.price, None);
    let future = item(json!({"item_id": "i", "schema_version": 3})).expect_err("refused");
    assert_eq!(future.reason.code(), "unsupported_schema");
}
