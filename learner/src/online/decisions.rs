//! Decisions awaiting their answer, and the rewards an answer (or silence) implies.
//!
//! A click on the item in slot p rewards it 1 and the unrewarded items above it 0: they were
//! examined and passed over (the cascade assumption). A decision never answered rewards its
//! first slots 0 when it expires, by event time or to make room.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use streamrec_proto::{Impression, ShownItem};

/// One bandit update implied by the stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reward {
    pub item_id: String,
    pub features: Vec<f64>,
    pub reward: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Pending {
    ts: i64,
    items: Vec<ShownItem>,
    rewarded: Vec<bool>,
    answered: bool,
}

impl Pending {
    fn reward(&mut self, slot: usize, value: f64, out: &mut Vec<Reward>) {
        if let (Some(done), Some(item)) = (self.rewarded.get_mut(slot), self.items.get(slot))
            && !*done
        {
            *done = true;
            out.push(Reward {
                item_id: item.item_id.clone(),
                features: item.features.clone(),
                reward: value,
            });
        }
    }

    /// Zeros for the first `examined` slots of an unanswered decision.
    fn silence(mut self, examined: usize) -> Vec<Reward> {
        let mut out = Vec::new();
        if !self.answered {
            for slot in 0..examined.min(self.items.len()) {
                self.reward(slot, 0.0, &mut out);
            }
        }
        out
    }
}

/// What expiry produced.
#[derive(Debug, Default)]
pub struct Expired {
    pub decisions: u64,
    pub rewards: Vec<Reward>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingDecisions {
    capacity: usize,
    by_rec_id: BTreeMap<String, Pending>,
    /// Insertion order, for expiry.
    order: VecDeque<(i64, String)>,
}

impl PendingDecisions {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            by_rec_id: BTreeMap::new(),
            order: VecDeque::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.by_rec_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_rec_id.is_empty()
    }

    /// Remembers a decision; returns the rewards of the oldest one if it had to make room.
    pub fn insert(&mut self, impression: Impression, examined: usize) -> Vec<Reward> {
        let mut out = Vec::new();
        if self.by_rec_id.len() >= self.capacity
            && let Some((_, oldest)) = self.order.pop_front()
            && let Some(pending) = self.by_rec_id.remove(&oldest)
        {
            out = pending.silence(examined);
        }
        let mut items = impression.items;
        items.sort_by_key(|i| i.position);
        self.order
            .push_back((impression.ts, impression.rec_id.clone()));
        self.by_rec_id.insert(
            impression.rec_id,
            Pending {
                ts: impression.ts,
                rewarded: vec![false; items.len()],
                items,
                answered: false,
            },
        );
        out
    }

    /// The rewards implied by a positive event on `item_id` answering `rec_id`, or `None`
    /// if no pending decision has that id.
    pub fn answer(
        &mut self,
        rec_id: &str,
        item_id: &str,
        position: Option<u32>,
    ) -> Option<Vec<Reward>> {
        let pending = self.by_rec_id.get_mut(rec_id)?;
        let slot = pending
            .items
            .iter()
            .position(|i| i.item_id == item_id)
            .or_else(|| {
                position
                    .map(|p| p as usize)
                    .filter(|&p| p < pending.items.len())
            })?;
        let mut out = Vec::new();
        for above in 0..slot {
            pending.reward(above, 0.0, &mut out);
        }
        pending.reward(slot, 1.0, &mut out);
        pending.answered = true;
        Some(out)
    }

    /// Drops decisions made before `cutoff` (event time).
    pub fn expire(&mut self, cutoff: i64, examined: usize) -> Expired {
        let mut expired = Expired::default();
        while self.order.front().is_some_and(|(ts, _)| *ts < cutoff) {
            let Some((_, rec_id)) = self.order.pop_front() else {
                break;
            };
            if let Some(pending) = self.by_rec_id.remove(&rec_id) {
                expired.decisions += 1;
                expired.rewards.extend(pending.silence(examined));
            }
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn impression(rec_id: &str, ts: i64, items: &[&str]) -> Impression {
        Impression {
            rec_id: rec_id.into(),
            session_id: "s".into(),
            ts,
            model_version: "v".into(),
            items: items
                .iter()
                .enumerate()
                .map(|(p, id)| ShownItem {
                    item_id: (*id).into(),
                    position: p as u32,
                    propensity: 1.0,
                    features: vec![1.0],
                })
                .collect(),
        }
    }

    fn summary(rewards: &[Reward]) -> Vec<(&str, f64)> {
        rewards
            .iter()
            .map(|r| (r.item_id.as_str(), r.reward))
            .collect()
    }

    #[test]
    fn a_click_rewards_its_item_and_zeroes_those_above() {
        let mut d = PendingDecisions::new(10);
        d.insert(impression("r", 0, &["a", "b", "c", "d"]), 3);
        let rewards = d.answer("r", "c", None).expect("pending");
        assert_eq!(summary(&rewards), [("a", 0.0), ("b", 0.0), ("c", 1.0)]);
        // A second click lower down adds only what is new.
        let rewards = d.answer("r", "d", None).expect("pending");
        assert_eq!(summary(&rewards), [("d", 1.0)]);
        assert!(d.answer("other", "a", None).is_none());
    }

    #[test]
    fn silence_expires_into_zeros_for_the_examined_slots() {
        let mut d = PendingDecisions::new(10);
        d.insert(impression("old", 0, &["a", "b", "c", "d"]), 3);
        d.insert(impression("new", 100, &["x"]), 3);
        let expired = d.expire(50, 3);
        assert_eq!(expired.decisions, 1);
        assert_eq!(
            summary(&expired.rewards),
            [("a", 0.0), ("b", 0.0), ("c", 0.0)]
        );
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn a_full_table_makes_room_by_expiring_the_oldest() {
        let mut d = PendingDecisions::new(1);
        d.insert(impression("first", 0, &["a"]), 3);
        let out = d.insert(impression("second", 1, &["b"]), 3);
        assert_eq!(summary(&out), [("a", 0.0)]);
        assert!(d.answer("first", "a", None).is_none());
    }
}
