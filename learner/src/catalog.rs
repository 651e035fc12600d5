//! The item catalog: what exists, its attributes, and whether it may be recommended. Learner
//! state like any other: upserts are applied in the items stream's order, exactly once (by
//! sequence), snapshotted, and published on the read side, so a restart on any bus keeps it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use streamrec_proto::Item;

use crate::journal::Journal;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    /// By id, in id order, so equal catalogs serialise to equal bytes.
    items: BTreeMap<String, Arc<Item>>,
    /// Last sequence of the items stream applied.
    last_seq: u64,
    changed: Journal<String>,
}

/// The stored form: the items as the wire writes them; each is validated again on load.
#[derive(Serialize, Deserialize)]
pub struct CatalogRecord {
    pub last_seq: u64,
    pub items: Vec<serde_json::Value>,
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsert {
    Applied,
    /// Its sequence was applied before.
    Redelivered,
    /// A new item while the catalog holds `max_items`: refused (updates of known items are
    /// always applied). Decided by stream order alone, so every replay refuses the same.
    Full,
}

impl Catalog {
    /// Applies an upsert at items-stream sequence `seq`, holding at most `max_items`.
    pub fn upsert(&mut self, seq: u64, item: Item, max_items: usize) -> Upsert {
        if seq <= self.last_seq {
            return Upsert::Redelivered;
        }
        self.last_seq = seq;
        if self.items.len() >= max_items && !self.items.contains_key(&item.item_id) {
            return Upsert::Full;
        }
        self.changed.record(item.item_id.clone());
        self.items.insert(item.item_id.clone(), Arc::new(item));
        Upsert::Applied
    }

    pub fn get(&self, item_id: &str) -> Option<&Arc<Item>> {
        self.items.get(item_id)
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Item>> {
        self.items.values()
    }

    /// Items changed since the last call; `None`: any may have.
    pub fn take_changed(&mut self) -> Option<Vec<String>> {
        self.changed.take()
    }

    pub fn to_record(&self) -> CatalogRecord {
        CatalogRecord {
            last_seq: self.last_seq,
            items: self
                .items
                .values()
                .map(|i| serde_json::to_value(&**i).unwrap_or_default())
                .collect(),
        }
    }

    /// The catalog of a stored record; an item that no longer validates is an error.
    pub fn from_record(record: CatalogRecord) -> Result<Self, String> {
        let mut items = BTreeMap::new();
        for value in &record.items {
            let item = Item::from_value(value).map_err(|e| format!("catalog item: {e}"))?;
            items.insert(item.item_id.clone(), Arc::new(item));
        }
        Ok(Self {
            items,
            last_seq: record.last_seq,
            changed: Journal::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, available: bool) -> Item {
        Item {
            item_id: id.into(),
            title: Some(format!("title {id}")),
            attributes: None,
            available,
        }
    }

    #[test]
    fn upserts_apply_once_in_order_and_round_trip() {
        let mut c = Catalog::default();
        assert_eq!(c.upsert(1, item("a", true), 10), Upsert::Applied);
        assert_eq!(c.upsert(2, item("b", true), 10), Upsert::Applied);
        assert_eq!(c.upsert(3, item("a", false), 10), Upsert::Applied);
        assert_eq!(
            c.upsert(2, item("b", false), 10),
            Upsert::Redelivered,
            "a redelivery is skipped"
        );
        assert_eq!(c.len(), 2);
        assert!(!c.get("a").expect("a").available);
        let back = Catalog::from_record(c.to_record()).expect("valid");
        assert_eq!(back, c);
        assert_eq!(back.last_seq(), 3);
    }

    #[test]
    fn a_full_catalog_refuses_new_items_but_updates_known_ones() {
        let mut c = Catalog::default();
        assert_eq!(c.upsert(1, item("a", true), 2), Upsert::Applied);
        assert_eq!(c.upsert(2, item("b", true), 2), Upsert::Applied);
        assert_eq!(c.upsert(3, item("c", true), 2), Upsert::Full);
        assert_eq!(c.upsert(4, item("a", false), 2), Upsert::Applied);
        assert_eq!(c.len(), 2);
        assert!(c.get("c").is_none());
        assert!(!c.get("a").expect("a").available);
        // The refusal still moved the stream position: its redelivery is recognised.
        assert_eq!(c.upsert(3, item("c", true), 3), Upsert::Redelivered);
    }
}
