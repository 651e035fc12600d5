//! Catalog items: what can be recommended.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::validation::{Fields, ValidationError, as_object, parse_object};

/// One catalog entry. An upsert replaces the previous entry of the same id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Item {
    pub item_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attributes: Option<Map<String, Value>>,
    /// Unavailable items are never recommended.
    pub available: bool,
}

impl Item {
    pub fn from_json(bytes: &[u8]) -> Result<Self, ValidationError> {
        Self::from_object(&parse_object(bytes)?)
    }

    pub fn from_value(value: &Value) -> Result<Self, ValidationError> {
        Self::from_object(as_object(value)?)
    }

    fn from_object(map: &Map<String, Value>) -> Result<Self, ValidationError> {
        let f = Fields(map);
        Ok(Item {
            item_id: f.id("item_id")?,
            title: f.optional_string("title")?,
            attributes: f.optional_object("attributes")?,
            available: f.optional_bool("available")?.unwrap_or(true),
        })
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
    fn wrong_types_are_named() {
        let e = Item::from_value(&json!({"item_id": "a", "available": "no"})).expect_err("bad");
        assert_eq!(e.field, "available");
        assert_eq!(e.reason.code(), "wrong_type");
    }
}
