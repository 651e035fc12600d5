//! Catalog items: what can be recommended.

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::timestamp::{EpochMillis, parse_timestamp};
use crate::validation::{Fields, ValidationError, as_object, parse_object};

/// One catalog entry. An upsert replaces the previous entry of the same id.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, schemars::JsonSchema)]
pub struct Item {
    #[schemars(length(min = 1, max = 256))]
    pub item_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Free-form: what filters (`filter=attribute:value`) match on.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Map<String, Value>>,
    /// Unavailable items are never recommended.
    pub available: bool,
    /// From this instant on (epoch milliseconds; RFC 3339 accepted on input) the item is
    /// gone: never recommended, not listed, not found.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<i64>)]
    #[schemars(schema_with = "crate::json_schema::optional_timestamp")]
    pub expires_at: Option<EpochMillis>,
    /// `schema_version` and the fields version 2 added.
    #[serde(flatten)]
    pub details: ItemDetails,
}

/// The fields schema version 2 added to a catalog item, all optional.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, schemars::JsonSchema)]
pub struct ItemDetails {
    /// 1 (absent) or 2; a later version is refused `unsupported_schema`.
    #[serde(skip_serializing_if = "is_version_1")]
    #[schema(required = false, minimum = 1, maximum = 2)]
    pub schema_version: u32,
    /// Unit price, at least 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    #[schema(minimum = 0)]
    pub price: Option<f64>,
    /// ISO 4217 code of `price`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Z]{3}$"))]
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: Option<String>,
}

impl Default for ItemDetails {
    fn default() -> Self {
        Self {
            schema_version: 1,
            price: None,
            currency: None,
        }
    }
}

fn is_version_1(version: &u32) -> bool {
    *version == 1
}

/// The fields version 2 added, for the JSON Schema of each version.
pub const ITEM_VERSION_2_FIELDS: [&str; 2] = ["price", "currency"];

impl Item {
    pub fn from_json(bytes: &[u8]) -> Result<Self, ValidationError> {
        Self::from_object(&parse_object(bytes)?)
    }

    pub fn from_value(value: &Value) -> Result<Self, ValidationError> {
        Self::from_object(as_object(value)?)
    }

    fn from_object(map: &Map<String, Value>) -> Result<Self, ValidationError> {
        let f = Fields(map);
        let schema_version = f.schema_version()?;
        let details = if schema_version >= 2 {
            ItemDetails {
                schema_version,
                price: f.optional_non_negative("price")?,
                currency: f.optional_currency("currency")?,
            }
        } else {
            ItemDetails::default()
        };
        Ok(Item {
            item_id: f.id("item_id")?,
            title: f.optional_string("title")?,
            attributes: f.optional_object("attributes")?,
            available: f.optional_bool("available")?.unwrap_or(true),
            expires_at: match map.get("expires_at") {
                None | Some(Value::Null) => None,
                Some(value) => Some(
                    parse_timestamp(value).map_err(|r| ValidationError::new("expires_at", r))?,
                ),
            },
            details,
        })
    }

    /// Whether the item has expired at `now_ms`.
    pub fn expired(&self, now_ms: EpochMillis) -> bool {
        self.expires_at.is_some_and(|at| at <= now_ms)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn available_defaults_to_true() {
        let item = Item::from_value(&json!({"item_id": "a"})).expect("valid");
        assert!(item.available);
    }

    #[test]
    fn expiry_is_read_in_either_spelling_and_round_trips() {
        let rfc = Item::from_value(&json!({"item_id": "a", "expires_at": "2024-05-01T12:00:00Z"}))
            .expect("valid");
        let ms = Item::from_value(&json!({"item_id": "a", "expires_at": 1_714_564_800_000_i64}))
            .expect("valid");
        assert_eq!(rfc, ms);
        assert!(!rfc.expired(1_714_564_799_999));
        assert!(rfc.expired(1_714_564_800_000));
        assert_eq!(Item::from_json(&rfc.to_json()).expect("round trip"), rfc);
        let e =
            Item::from_value(&json!({"item_id": "a", "expires_at": "tomorrow"})).expect_err("bad");
        assert_eq!(e.field, "expires_at");
    }

    #[test]
    fn wrong_types_are_named() {
        let e = Item::from_value(&json!({"item_id": "a", "available": "no"})).expect_err("bad");
        assert_eq!(e.field, "available");
        assert_eq!(e.reason.code(), "wrong_type");
    }
}
