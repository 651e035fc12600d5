//! Deletions that travel through the bus like any other message, so every node, every
//! replay and every restore applies them at the same place in the stream.

use serde::Serialize;

use crate::validation::{Fields, ValidationError, parse_object};

/// Removes an item from the catalog: it is never recommended again until it is upserted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ItemDeletion {
    pub item_id: String,
}

impl ItemDeletion {
    pub fn from_json(bytes: &[u8]) -> Result<Self, ValidationError> {
        let map = parse_object(bytes)?;
        Ok(Self {
            item_id: Fields(&map).id("item_id")?,
        })
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Erases what the learners keep of one user: the user's history, the histories of the
/// sessions the user's events named, and the user's pending bandit decisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserErasure {
    pub user_id: String,
}

impl UserErasure {
    pub fn from_json(bytes: &[u8]) -> Result<Self, ValidationError> {
        let map = parse_object(bytes)?;
        Ok(Self {
            user_id: Fields(&map).id("user_id")?,
        })
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_round_trip_and_name_a_missing_id() {
        let d = ItemDeletion {
            item_id: "a".into(),
        };
        assert_eq!(ItemDeletion::from_json(&d.to_json()).expect("valid"), d);
        let u = UserErasure {
            user_id: "u".into(),
        };
        assert_eq!(UserErasure::from_json(&u.to_json()).expect("valid"), u);
        let e = UserErasure::from_json(b"{}").expect_err("no id");
        assert_eq!(e.field, "user_id");
        let e = ItemDeletion::from_json(br#"{"item_id": 3}"#).expect_err("not a string");
        assert_eq!(e.field, "item_id");
    }
}
