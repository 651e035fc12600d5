//! Business rules a request brings: attribute filters (what may be shown at all), boosts
//! (added to the ranked score) and pins (an item at a slot, whatever its score). Pure
//! functions over the request's rules and the catalog entry; the request path applies them
//! between its stages.

use serde_json::Value;
use streamrec_proto::Item;

/// A request's rules, as it gave them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rules<'a> {
    /// The item's catalog attribute must equal the value (or, for a list, contain it).
    pub filters: &'a [(String, String)],
    /// Items to place at a slot (0-based).
    pub pins: &'a [(String, usize)],
    /// Added to an item's ranked score.
    pub boosts: &'a [(String, f32)],
}

impl Rules<'_> {
    /// Whether the filters let the item with this catalog entry through. An item without an
    /// entry, or without the attribute, fails every filter; no filter passes everything.
    pub fn admits(&self, item: Option<&Item>) -> bool {
        if self.filters.is_empty() {
            return true;
        }
        let Some(attributes) = item.and_then(|i| i.attributes.as_ref()) else {
            return false;
        };
        self.filters
            .iter()
            .all(|(key, want)| attributes.get(key).is_some_and(|v| equals(v, want)))
    }

    /// Whether the item is pinned (so not also ranked).
    pub fn pins(&self, item_id: &str) -> bool {
        self.pins.iter().any(|(id, _)| id == item_id)
    }

    /// The boost the request gives this item, if any (the first, when it names it twice).
    pub fn boost(&self, item_id: &str) -> Option<f32> {
        self.boosts
            .iter()
            .find(|(id, _)| id == item_id)
            .map(|(_, b)| *b)
    }

    /// Where the pins go in a list of `len` ranked items: `(item, index)` in the order to
    /// insert them, each index valid once the earlier ones are in, and none moving an
    /// earlier one. Pins `shown` rejects (seen, unavailable) are left out; two pins asking
    /// for one slot take it and the next in the request's order; a slot past the end lands
    /// at the end.
    pub fn pin_slots(&self, len: usize, shown: impl Fn(&str) -> bool) -> Vec<(&str, usize)> {
        let mut pins: Vec<(&str, usize)> = self
            .pins
            .iter()
            .filter(|(id, _)| shown(id))
            .map(|(id, at)| (id.as_str(), *at))
            .collect();
        // Stable: two pins at one slot keep the request's order.
        pins.sort_by_key(|(_, at)| *at);
        let mut next_free = 0;
        for (placed, (_, at)) in pins.iter_mut().enumerate() {
            *at = (*at).max(next_free).min(len + placed);
            next_free = *at + 1;
        }
        pins
    }
}

/// A catalog value against a filter's text: strings equal, lists contain, numbers and
/// booleans by their JSON text.
fn equals(value: &Value, want: &str) -> bool {
    match value {
        Value::String(v) => v == want,
        Value::Array(vs) => vs.iter().any(|v| v.as_str() == Some(want)),
        Value::Number(n) => n.to_string() == want,
        Value::Bool(b) => b.to_string() == want,
        Value::Null | Value::Object(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn item(attributes: Value) -> Item {
        Item {
            item_id: "x".into(),
            title: None,
            attributes: attributes.as_object().cloned(),
            available: true,
            expires_at: None,
            details: Default::default(),
        }
    }

    fn filters(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn filters_match_strings_lists_numbers_and_booleans_and_all_must_hold() {
        let shoe = item(json!({"kind": "shoe", "tags": ["red", "sale"], "size": 42, "new": true}));
        let admits = |pairs: &[(&str, &str)]| {
            let f = filters(pairs);
            Rules {
                filters: &f,
                ..Rules::default()
            }
            .admits(Some(&shoe))
        };
        assert!(admits(&[]));
        assert!(admits(&[("kind", "shoe")]));
        assert!(admits(&[("tags", "sale")]));
        assert!(admits(&[("size", "42")]));
        assert!(admits(&[("new", "true")]));
        assert!(admits(&[("kind", "shoe"), ("tags", "red")]));
        assert!(!admits(&[("kind", "shoe"), ("tags", "blue")]));
        assert!(!admits(&[("kind", "hat")]));
        assert!(!admits(&[("colour", "red")]), "a missing attribute fails");
    }

    #[test]
    fn an_item_without_a_catalog_entry_fails_any_filter() {
        let f = filters(&[("kind", "shoe")]);
        let rules = Rules {
            filters: &f,
            ..Rules::default()
        };
        assert!(!rules.admits(None));
        assert!(!rules.admits(Some(&item(Value::Null))));
        assert!(Rules::default().admits(None), "no filter, no requirement");
    }

    #[test]
    fn boosts_and_pins_are_found_by_id() {
        let boosts = vec![("a".to_owned(), 0.5), ("a".to_owned(), 9.0)];
        let pins = vec![("p".to_owned(), 0)];
        let rules = Rules {
            boosts: &boosts,
            pins: &pins,
            ..Rules::default()
        };
        assert_eq!(rules.boost("a"), Some(0.5));
        assert_eq!(rules.boost("b"), None);
        assert!(rules.pins("p") && !rules.pins("a"));
    }

    #[test]
    fn pins_go_to_their_slots_in_order_and_past_the_end_to_the_end() {
        let pins = vec![
            ("late".to_owned(), 50),
            ("first".to_owned(), 0),
            ("seen".to_owned(), 1),
            ("second".to_owned(), 2),
            ("also-second".to_owned(), 2),
        ];
        let rules = Rules {
            pins: &pins,
            ..Rules::default()
        };
        let slots = rules.pin_slots(3, |id| id != "seen");
        assert_eq!(
            slots,
            [("first", 0), ("second", 2), ("also-second", 3), ("late", 6)]
        );
        let mut list = vec!["a", "b", "c"];
        for (id, at) in slots {
            list.insert(at, id);
        }
        assert_eq!(
            list,
            ["first", "a", "second", "also-second", "b", "c", "late"]
        );
    }

    proptest! {
        /// Every pin lands where asked (or at the end when the list is shorter), and the
        /// ranked items keep their order around them.
        #[test]
        fn pins_land_at_their_slots(
            len in 0usize..20,
            slots in prop::collection::vec(0usize..30, 0..6),
        ) {
            let pins: Vec<(String, usize)> =
                slots.iter().enumerate().map(|(i, &at)| (format!("p{i}"), at)).collect();
            let rules = Rules { pins: &pins, ..Rules::default() };
            let mut list: Vec<String> = (0..len).map(|i| format!("r{i}")).collect();
            let placed = rules.pin_slots(len, |_| true);
            for (id, at) in &placed {
                prop_assert!(*at <= list.len());
                list.insert(*at, (*id).to_owned());
            }
            // The ranked items keep their order.
            let ranked: Vec<&String> = list.iter().filter(|s| s.starts_with('r')).collect();
            let expected: Vec<String> = (0..len).map(|i| format!("r{i}")).collect();
            prop_assert_eq!(ranked, expected.iter().collect::<Vec<_>>());
            // No insert moved an earlier pin: each is where its slot says.
            for (id, at) in &placed {
                prop_assert_eq!(list.iter().position(|s| s == id), Some(*at));
            }
            // Distinct slots inside the list are met exactly.
            let mut wanted = slots.clone();
            wanted.sort_unstable();
            wanted.dedup();
            if wanted.len() == slots.len() && slots.iter().all(|&at| at < len) {
                for (id, at) in &pins {
                    prop_assert_eq!(list.iter().position(|s| s == id), Some(*at));
                }
            }
        }
    }
}
