//! Property tests: no input makes validation panic, and every valid event round-trips.

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use streamrec_proto::{Event, EventKind, Item};

const FIELDS: [&str; 11] = [
    "event_id",
    "session_id",
    "user_id",
    "kind",
    "item_id",
    "ts",
    "rec_id",
    "position",
    "value",
    "context",
    "available",
];

/// Arbitrary JSON, nested a few levels, including the field names validation looks for.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|x| serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)),
        ".{0,300}".prop_map(Value::String),
        prop::sample::select(vec!["view", "click", "rate", "purchase", "add_to_cart", ""])
            .prop_map(|s| Value::String(s.to_owned())),
        Just(json!("2024-01-01T00:00:00Z")),
    ];
    leaf.prop_recursive(3, 64, 12, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (prop::sample::select(FIELDS.to_vec()), inner.clone()),
                0..12
            )
            .prop_map(|kv| Value::Object(
                kv.into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect::<Map<_, _>>()
            )),
        ]
    })
}

fn id() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_:\\-\\.é]{1,64}"
}

fn valid_event() -> impl Strategy<Value = Event> {
    (
        (
            id(),
            id(),
            proptest::option::of(id()),
            prop::sample::select(EventKind::ALL.to_vec()),
            id(),
        ),
        631_152_000_000_i64..4_102_444_800_000,
        (
            proptest::option::of(id()),
            proptest::option::of(any::<u32>()),
        ),
        proptest::option::of(-1e12_f64..1e12),
        proptest::option::of(prop::collection::btree_map(
            "[a-z]{1,8}",
            any::<i32>(),
            0..4,
        )),
    )
        .prop_map(
            |(
                (event_id, session_id, user_id, kind, item_id),
                ts,
                (rec_id, position),
                value,
                ctx,
            )| Event {
                event_id,
                session_id,
                user_id,
                kind,
                item_id,
                ts,
                rec_id,
                position,
                value,
                context: ctx.map(|m| m.into_iter().map(|(k, v)| (k, json!(v))).collect()),
                details: Default::default(),
            },
        )
}

proptest! {
    #[test]
    fn arbitrary_json_never_panics(v in any_json()) {
        let bytes = v.to_string();
        let _ = Event::from_json(bytes.as_bytes());
        let _ = Event::from_value(&v);
        let _ = Item::from_json(bytes.as_bytes());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = Event::from_json(&bytes);
        let _ = Item::from_json(&bytes);
    }

    #[test]
    fn valid_events_round_trip(e in valid_event()) {
        prop_assert!(e.validate().is_ok());
        let parsed = Event::from_json(&e.to_json());
        prop_assert_eq!(parsed, Ok(e));
    }

    #[test]
    fn rfc3339_and_millis_round_trip(e in valid_event()) {
        // The same instant written as RFC 3339 parses to the same event.
        let mut v: Value = serde_json::from_slice(&e.to_json()).expect("own output is JSON");
        let secs = e.ts.div_euclid(1000);
        let nanos = u32::try_from(e.ts.rem_euclid(1000) * 1_000_000).expect("< 1e9");
        let dt = chrono::DateTime::from_timestamp(secs, nanos).expect("in range");
        v["ts"] = json!(dt.to_rfc3339());
        prop_assert_eq!(Event::from_value(&v), Ok(e));
    }

    #[test]
    fn one_broken_field_is_named(e in valid_event(), which in 0usize..4) {
        let mut v: Value = serde_json::from_slice(&e.to_json()).expect("own output is JSON");
        let field = ["event_id", "session_id", "item_id", "kind"][which];
        v[field] = json!("");
        let err = Event::from_value(&v).expect_err("empty field must be rejected");
        prop_assert_eq!(err.field, field);
    }
}
