//! The item catalog: what exists, its attributes, and whether it may be recommended. Learner
//! state like any other: upserts are applied in the items stream's order, exactly once (by
//! sequence), snapshotted, and published on the read side, so a restart on any bus keeps it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use streamrec_proto::Item;

use crate::journal::Journal;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    /// By id, in id order, so equal catalogs serialise to equal bytes.
    items: BTreeMap<String, Arc<Item>>,
    /// Items deleted and not upserted since: the learners still know them from events, so
    /// serving must be told to leave them out.
    deleted: BTreeSet<String>,
    /// Last sequence of the items stream applied.
    last_seq: u64,
    changed: Journal<String>,
}

/// The stored form: the items as the wire writes them; each is validated again on load.
#[derive(Serialize, Deserialize)]
pub struct CatalogRecord {
    pub last_seq: u64,
    pub items: Vec<serde_json::Value>,
    /// Absent in snapshots from before deletions existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<String>,
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
        self.deleted.remove(&item.item_id);
        self.items.insert(item.item_id.clone(), Arc::new(item));
        Upsert::Applied
    }

    /// Applies a deletion at items-stream sequence `seq`. An id the learners know (`known`:
    /// they would serve it from events) is always remembered as deleted, so it is never
    /// served; one they do not know is remembered while fewer than `max_items` ids are, so
    /// cycles of new items upserted and deleted cannot grow the set without bound (the
    /// catalog entry goes either way). A deletion of an id neither held nor known, past that
    /// bound, is refused (`Full`).
    pub fn delete(&mut self, seq: u64, item_id: &str, known: bool, max_items: usize) -> Upsert {
        if seq <= self.last_seq {
            return Upsert::Redelivered;
        }
        self.last_seq = seq;
        let held = self.items.remove(item_id).is_some();
        let room = known || self.deleted.contains(item_id) || self.deleted.len() < max_items;
        if room {
            self.deleted.insert(item_id.to_owned());
        }
        if !(held || room) {
            return Upsert::Full;
        }
        self.changed.record(item_id.to_owned());
        Upsert::Applied
    }

    /// Whether the item was deleted (and not upserted since).
    pub fn is_deleted(&self, item_id: &str) -> bool {
        self.deleted.contains(item_id)
    }

    /// Deleted ids, in order.
    pub fn deleted(&self) -> impl Iterator<Item = &str> {
        self.deleted.iter().map(String::as_str)
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
            deleted: self.deleted.iter().cloned().collect(),
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
            deleted: record.deleted.into_iter().collect(),
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
            expires_at: None,
            details: Default::default(),
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
    fn a_deletion_applies_once_survives_a_round_trip_and_an_upsert_undoes_it() {
        let mut c = Catalog::default();
        // A new catalog's journal says "anything may have changed" once.
        c.take_changed();
        assert_eq!(c.upsert(1, item("a", true), 10), Upsert::Applied);
        assert_eq!(c.delete(2, "a", false, 10), Upsert::Applied);
        assert_eq!(c.delete(2, "a", false, 10), Upsert::Redelivered);
        assert!(c.get("a").is_none() && c.is_deleted("a"));
        // An item known only from events can be deleted too.
        assert_eq!(c.delete(3, "from-events", true, 10), Upsert::Applied);
        let back = Catalog::from_record(c.to_record()).expect("valid");
        assert_eq!(back, c);
        assert_eq!(back.deleted().collect::<Vec<_>>(), ["a", "from-events"]);
        assert_eq!(c.upsert(4, item("a", true), 10), Upsert::Applied);
        assert!(!c.is_deleted("a") && c.get("a").is_some());
        assert_eq!(c.take_changed().map(|ids| ids.len()), Some(4));
    }

    #[test]
    fn deletions_of_ids_the_learners_do_not_know_are_bounded() {
        let mut c = Catalog::default();
        assert_eq!(c.delete(1, "x", false, 1), Upsert::Applied);
        assert_eq!(c.delete(2, "y", false, 1), Upsert::Full);
        assert_eq!(
            c.delete(3, "x", false, 1),
            Upsert::Applied,
            "again: nothing grows"
        );
        assert_eq!(
            c.delete(4, "known", true, 1),
            Upsert::Applied,
            "a known id always"
        );
        assert!(c.is_deleted("known"));
        // Upserting and deleting new items in a loop: they leave, the set stays bounded.
        for n in 0..100u64 {
            let id = format!("new{n}");
            c.upsert(10 + 2 * n, item(&id, true), 1_000);
            assert_eq!(c.delete(11 + 2 * n, &id, false, 1), Upsert::Applied);
            assert!(c.get(&id).is_none());
        }
        assert_eq!(c.deleted().count(), 2);
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
