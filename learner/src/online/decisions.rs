//! Decisions awaiting their answer, and the rewards an answer (or silence) implies.
//!
//! A click on the item in slot p rewards it 1 and the unrewarded items above it 0: they were
//! examined and passed over (the cascade assumption). A decision never answered rewards its
//! first slots 0 when it expires, by event time or to make room.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use streamrec_proto::{Impression, ShownItem};

use crate::candidates::{FEATURE_SET, FEATURES};

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
    /// Who it was served to: only they can answer it.
    #[serde(default)]
    session_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_id: Option<String>,
}

/// What a decision logged of the slots an answer names (see
/// [`PendingDecisions::logged_rows`]).
#[derive(Debug, PartialEq)]
pub struct LoggedRows<'a> {
    /// The answered slot's inputs, exactly as served.
    pub positive: [f32; FEATURES],
    /// Every other slot's `(item, inputs)` that logged one, in slot order.
    pub others: Vec<(&'a str, [f32; FEATURES])>,
    /// Every slot's item, logged or not (a pinned item logs none).
    pub shown: Vec<&'a str>,
}

/// Who an event comes from.
#[derive(Debug, Clone, Copy)]
pub struct Answerer<'a> {
    pub session_id: &'a str,
    pub user_id: Option<&'a str>,
}

/// What an event carrying a `rec_id` does to the pending decisions.
#[derive(Debug, PartialEq)]
pub enum Answer {
    /// It answers the decision: these are the rewards.
    Rewards(Vec<Reward>),
    /// No pending decision has that id (expired, or never served here).
    Unknown,
    /// The decision was served to another session or user: nothing is learned, so one
    /// client cannot credit (or debit) decisions shown to others.
    Foreign,
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
        // Logged vectors of another layout cannot be trained on as this one's.
        let layout_known = impression
            .logged
            .as_ref()
            .is_some_and(|log| log.set == FEATURE_SET);
        for item in &mut items {
            if !layout_known
                || item
                    .candidate_features
                    .as_ref()
                    .is_some_and(|f| f.0.len() != FEATURES)
            {
                item.candidate_features = None;
            }
        }
        self.order
            .push_back((impression.ts, impression.rec_id.clone()));
        self.by_rec_id.insert(
            impression.rec_id,
            Pending {
                ts: impression.ts,
                rewarded: vec![false; items.len()],
                items,
                answered: false,
                session_id: impression.session_id,
                user_id: impression.user_id,
            },
        );
        out
    }

    /// The rewards implied by a positive event on `item_id` answering `rec_id`, if `from`
    /// is who the decision was served to: its session, and its user when both name one.
    pub fn answer(
        &mut self,
        rec_id: &str,
        item_id: &str,
        position: Option<u32>,
        from: Answerer<'_>,
    ) -> Answer {
        let Some(pending) = self.by_rec_id.get_mut(rec_id) else {
            return Answer::Unknown;
        };
        let other_user = matches!(
            (pending.user_id.as_deref(), from.user_id),
            (Some(served), Some(asking)) if served != asking
        );
        if pending.session_id != from.session_id || other_user {
            return Answer::Foreign;
        }
        match Self::rewards(pending, item_id, position) {
            Some(rewards) => Answer::Rewards(rewards),
            None => Answer::Unknown,
        }
    }

    /// The re-ranker inputs logged for the decision `rec_id` that a positive event on
    /// `item_id` from `from` answers first: the answered slot's, then every other slot's
    /// that has one, in slot order. `None` when the decision is unknown, another's, already
    /// answered (its other slots are no longer plain negatives), the item was not shown (a
    /// position alone names no row), or its slot logged nothing.
    pub fn logged_rows(
        &self,
        rec_id: &str,
        item_id: &str,
        from: Answerer<'_>,
    ) -> Option<LoggedRows<'_>> {
        let pending = self.by_rec_id.get(rec_id)?;
        if pending.answered
            || pending.session_id != from.session_id
            || matches!(
                (pending.user_id.as_deref(), from.user_id),
                (Some(served), Some(asking)) if served != asking
            )
        {
            return None;
        }
        let slot = pending.items.iter().position(|i| i.item_id == item_id)?;
        let row = |item: &ShownItem| -> Option<[f32; FEATURES]> {
            item.candidate_features
                .as_ref()?
                .0
                .as_slice()
                .try_into()
                .ok()
        };
        let positive = row(pending.items.get(slot)?)?;
        let others = pending
            .items
            .iter()
            .enumerate()
            .filter(|(at, _)| *at != slot)
            .filter_map(|(_, item)| Some((item.item_id.as_str(), row(item)?)))
            .collect();
        let shown = pending.items.iter().map(|i| i.item_id.as_str()).collect();
        Some(LoggedRows {
            positive,
            others,
            shown,
        })
    }

    fn slot_of(pending: &Pending, item_id: &str, position: Option<u32>) -> Option<usize> {
        pending
            .items
            .iter()
            .position(|i| i.item_id == item_id)
            .or_else(|| {
                position
                    .map(|p| p as usize)
                    .filter(|&p| p < pending.items.len())
            })
    }

    fn rewards(pending: &mut Pending, item_id: &str, position: Option<u32>) -> Option<Vec<Reward>> {
        let slot = Self::slot_of(pending, item_id, position)?;
        let mut out = Vec::new();
        for above in 0..slot {
            pending.reward(above, 0.0, &mut out);
        }
        pending.reward(slot, 1.0, &mut out);
        pending.answered = true;
        Some(out)
    }

    /// Forgets, without learning from them, the decisions served to `user_id` or to any of
    /// `sessions`; answers how many.
    pub fn forget_served_to(&mut self, user_id: &str, sessions: &[Box<str>]) -> usize {
        let before = self.by_rec_id.len();
        self.by_rec_id.retain(|_, p| {
            p.user_id.as_deref() != Some(user_id) && !sessions.iter().any(|s| **s == *p.session_id)
        });
        let by_rec_id = &self.by_rec_id;
        self.order
            .retain(|(_, rec_id)| by_rec_id.contains_key(rec_id));
        before - self.by_rec_id.len()
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
            user_id: None,
            traceparent: None,
            logged: None,
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
                    candidate_features: None,
                    rerank_score: None,
                })
                .collect(),
        }
    }

    const FROM_S: Answerer<'static> = Answerer {
        session_id: "s",
        user_id: None,
    };

    fn rewarded(answer: Answer) -> Vec<Reward> {
        match answer {
            Answer::Rewards(rewards) => rewards,
            other => panic!("expected rewards, got {other:?}"),
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
        let rewards = rewarded(d.answer("r", "c", None, FROM_S));
        assert_eq!(summary(&rewards), [("a", 0.0), ("b", 0.0), ("c", 1.0)]);
        // A second click lower down adds only what is new.
        let rewards = rewarded(d.answer("r", "d", None, FROM_S));
        assert_eq!(summary(&rewards), [("d", 1.0)]);
        assert_eq!(d.answer("other", "a", None, FROM_S), Answer::Unknown);
    }

    #[test]
    fn only_the_session_and_user_served_can_answer() {
        let mut d = PendingDecisions::new(10);
        let mut served = impression("r", 0, &["a", "b"]);
        served.user_id = Some("u".into());
        d.insert(served, 3);
        let other_session = Answerer {
            session_id: "intruder",
            user_id: None,
        };
        let other_user = Answerer {
            session_id: "s",
            user_id: Some("mallory"),
        };
        assert_eq!(d.answer("r", "b", None, other_session), Answer::Foreign);
        assert_eq!(d.answer("r", "b", None, other_user), Answer::Foreign);
        // Nothing was credited: the real click still rewards both slots.
        let own = Answerer {
            session_id: "s",
            user_id: Some("u"),
        };
        let rewards = rewarded(d.answer("r", "b", None, own));
        assert_eq!(summary(&rewards), [("a", 0.0), ("b", 1.0)]);
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
        assert_eq!(d.answer("first", "a", None, FROM_S), Answer::Unknown);
    }
}
