//! Clickstream events: what emitters publish and what the learners consume.

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::timestamp::{EpochMillis, parse_timestamp};
use crate::validation::{Fields, Reason, ValidationError, as_object, check_finite, parse_object};

/// What the user did with the item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, ToSchema, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    View,
    Click,
    AddToCart,
    Purchase,
    Rate,
}

impl EventKind {
    pub const ALL: [EventKind; 5] = [
        EventKind::View,
        EventKind::Click,
        EventKind::AddToCart,
        EventKind::Purchase,
        EventKind::Rate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::View => "view",
            EventKind::Click => "click",
            EventKind::AddToCart => "add_to_cart",
            EventKind::Purchase => "purchase",
            EventKind::Rate => "rate",
        }
    }

    pub fn parse(s: &str) -> Result<Self, Reason> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| Reason::UnknownKind(s.to_owned()))
    }
}

/// One validated clickstream event. Construct it with [`Event::from_json`] (untrusted bytes)
/// or build it in code and call [`Event::validate`].
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, schemars::JsonSchema)]
pub struct Event {
    #[schemars(length(min = 1, max = 256))]
    pub event_id: String,
    #[schemars(length(min = 1, max = 256))]
    pub session_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub user_id: Option<String>,
    pub kind: EventKind,
    #[schemars(length(min = 1, max = 256))]
    pub item_id: String,
    /// Event time, epoch milliseconds (serialised as an integer; RFC 3339 accepted on
    /// input), 1990 to 2100.
    #[schema(value_type = i64)]
    #[schemars(schema_with = "crate::json_schema::timestamp")]
    pub ts: EpochMillis,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub rec_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub context: Option<Map<String, Value>>,
    /// `schema_version` and the fields version 2 added.
    #[serde(flatten)]
    pub details: EventDetails,
}

/// The fields schema version 2 added to an event, all optional: what a store's windowed
/// features use. A version 1 event (no `schema_version`) has none of them: fields it does
/// not know are ignored, as they always were.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, schemars::JsonSchema)]
pub struct EventDetails {
    /// 1 (absent) or 2; a later version is dead-lettered `unsupported_schema`.
    #[serde(skip_serializing_if = "is_version_1")]
    #[schema(required = false, minimum = 1, maximum = 2)]
    pub schema_version: u32,
    /// How long the item was in view, in ms (a `view`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dwell_ms: Option<u32>,
    /// Unit price at the event, at least 0 (an `add_to_cart`, a `purchase`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    #[schema(minimum = 0)]
    pub price: Option<f64>,
    /// ISO 4217 code of `price`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Z]{3}$"))]
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: Option<String>,
    /// A list view: the items shown, in order (at most 100); each counts as an impression
    /// of that item in its windows.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 100), inner(length(min = 1, max = 256)))]
    #[schema(max_items = 100)]
    pub items: Option<Vec<String>>,
}

impl Default for EventDetails {
    fn default() -> Self {
        Self {
            schema_version: 1,
            dwell_ms: None,
            price: None,
            currency: None,
            items: None,
        }
    }
}

fn is_version_1(version: &u32) -> bool {
    *version == 1
}

/// The fields each schema version adds, for the JSON Schema of each version.
pub const VERSION_2_FIELDS: [&str; 4] = ["dwell_ms", "price", "currency", "items"];

impl Event {
    /// Parses and validates one event from untrusted bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ValidationError> {
        Self::from_object(&parse_object(bytes)?)
    }

    /// Validates one event given as a JSON value (e.g. an element of an API batch).
    pub fn from_value(value: &Value) -> Result<Self, ValidationError> {
        Self::from_object(as_object(value)?)
    }

    fn from_object(map: &Map<String, Value>) -> Result<Self, ValidationError> {
        let f = Fields(map);
        let kind_value = f.required("kind")?;
        let kind = kind_value
            .as_str()
            .ok_or_else(|| {
                ValidationError::new(
                    "kind",
                    Reason::WrongType {
                        expected: "a string",
                    },
                )
            })
            .and_then(|s| EventKind::parse(s).map_err(|r| ValidationError::new("kind", r)))?;
        let ts = parse_timestamp(f.required("ts")?).map_err(|r| ValidationError::new("ts", r))?;
        let schema_version = f.schema_version()?;
        let details = if schema_version >= 2 {
            EventDetails {
                schema_version,
                dwell_ms: f.optional_u32("dwell_ms")?,
                price: f.optional_non_negative("price")?,
                currency: f.optional_currency("currency")?,
                items: f.optional_ids("items", crate::MAX_LIST_ITEMS)?,
            }
        } else {
            EventDetails::default()
        };
        Ok(Event {
            event_id: f.id("event_id")?,
            session_id: f.id("session_id")?,
            user_id: f.optional_id("user_id")?,
            kind,
            item_id: f.id("item_id")?,
            ts,
            rec_id: f.optional_id("rec_id")?,
            position: f.optional_u32("position")?,
            value: f.optional_f64("value")?,
            context: f.optional_object("context")?,
            details,
        })
    }

    /// Checks an event built in code against the same rules as parsing does.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let bytes = self.to_json();
        Self::from_json(&bytes).map(drop)?;
        if let Some(v) = self.value {
            check_finite("value", v)?;
        }
        Ok(())
    }

    /// The wire form of this event.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain strings, integers and finite floats cannot fail; a non-finite
        // float becomes null, which `validate` then reports.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid() -> Value {
        json!({
            "event_id": "e1", "session_id": "s1", "user_id": "u1", "kind": "click",
            "item_id": "i1", "ts": "2024-05-01T12:00:00Z", "rec_id": "r1", "position": 2,
            "value": 1.5, "context": {"device": "ios"}
        })
    }

    fn field_error(v: Value) -> (String, &'static str) {
        let e = Event::from_json(v.to_string().as_bytes()).expect_err("must be rejected");
        (e.field, e.reason.code())
    }

    #[test]
    fn parses_a_full_event() {
        let e = Event::from_json(valid().to_string().as_bytes()).expect("valid");
        assert_eq!(e.kind, EventKind::Click);
        assert_eq!(e.position, Some(2));
        assert_eq!(e.ts, 1_714_564_800_000);
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let mut v = valid();
        v["from_the_future"] = json!({"x": 1});
        assert!(Event::from_json(v.to_string().as_bytes()).is_ok());
    }

    #[test]
    fn errors_name_the_field() {
        let mut v = valid();
        v.as_object_mut().map(|m| m.remove("session_id"));
        assert_eq!(field_error(v), ("session_id".into(), "missing_field"));

        let mut v = valid();
        v["item_id"] = json!("");
        assert_eq!(field_error(v), ("item_id".into(), "empty_field"));

        let mut v = valid();
        v["kind"] = json!("like");
        assert_eq!(field_error(v), ("kind".into(), "unknown_kind"));

        let mut v = valid();
        v["event_id"] = json!("x".repeat(257));
        assert_eq!(field_error(v), ("event_id".into(), "too_long"));

        let mut v = valid();
        v["position"] = json!(-1);
        assert_eq!(field_error(v), ("position".into(), "out_of_range"));

        let mut v = valid();
        v["ts"] = json!(12);
        assert_eq!(field_error(v), ("ts".into(), "absurd_timestamp"));
    }

    #[test]
    fn oversized_payloads_are_rejected_before_parsing() {
        let mut v = valid();
        v["context"] = json!({"blob": "x".repeat(70_000)});
        assert_eq!(field_error(v), (String::new(), "payload_too_large"));
    }

    #[test]
    fn non_finite_values_fail_validation() {
        let mut e = Event::from_json(valid().to_string().as_bytes()).expect("valid");
        e.value = Some(f64::NAN);
        let err = e.validate().expect_err("NaN is not a value");
        assert_eq!(err.field, "value");
    }
}
