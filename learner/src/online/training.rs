//! Training groups for the re-ranker, cut from the stream: each event against the
//! candidates the request path would have offered just before it.
//!
//! A positive event answering a served list (its `rec_id`) trains on what was logged where
//! it was served: the answered item's inputs and the other shown items' as negatives, bit
//! for bit what the re-ranker scored, with no featurising. Only the slots a list did not
//! fill (a list is shorter than a group) are computed, from stage one's best others.

use streamrec_proto::{Event, EventKind};

use super::{Answerer, OnlineModels};
use crate::best_first::{Scratch, top_n};
use crate::candidates::{Context, FEATURES, stage_one_key};
use crate::covisit::{DenseRelated, Related, RelatedLookup, related, related_into, relates};
use crate::history::ItemHistory;
use rustc_hash::FxHashMap;
use std::cell::RefCell;

thread_local! {
    /// The history's co-visitation and the selection's keys, kept from one group to the
    /// next: built afresh in a hash map for nearly every event, they were a fifth of
    /// learning's instructions (callgrind). Scratch only: a group never depends on what
    /// an earlier one left there.
    static GROUP_SCRATCH: RefCell<(DenseRelated, Scratch)> = RefCell::default();
}

/// A training group, and whether it was read from a logged impression.
pub(super) struct TrainingGroup {
    pub rows: Vec<[f32; FEATURES]>,
    pub logged: bool,
}

impl OnlineModels {
    /// The group for `event` (positive first; `item` is its interned item), before `event`
    /// is learned; `None` when the user has no history yet, has met the item before, or
    /// stage one would not have offered it among its best `group_len` candidates (and no
    /// logged list showed it).
    pub(super) fn training_group(&self, event: &Event, item: u32) -> Option<TrainingGroup> {
        let config = &self.config.replay;
        if !config.samples(&event.event_id) {
            return None;
        }
        let user = event.user_id.as_deref();
        let seen = self.user_role_history(user, &event.session_id)?;
        // The context's history is `seen`, most recent first.
        if seen.contains(item) || seen.is_empty() {
            return None;
        }
        if let Some(rows) = self.logged_group(event, seen) {
            return Some(TrainingGroup { rows, logged: true });
        }
        let group_len = config.group_len();
        // Most events' items are not co-visited with the history at all: they form no
        // group, and a scan of the lists says so without building the history's scores,
        // nor the context (a copy of the whole history and the session's intent).
        if !relates(
            &self.covisit,
            seen.recent(),
            item,
            self.config.candidates.history_depth,
        ) {
            return None;
        }
        GROUP_SCRATCH.with_borrow_mut(|(related, keys)| {
            let candidates = &self.config.candidates;
            related_into(
                &self.covisit,
                seen.recent(),
                candidates.history_decay,
                candidates.history_depth,
                related,
            );
            let skip = |i: u32| seen.contains(i);
            if !ranks_within(related, item, group_len, &skip) {
                return None;
            }
            // Stage one's best `group_len` (by its co-visitation order), without the cost
            // of featurising a whole request pool for every event.
            let best = best_by_stage_one(related, group_len, &skip, keys);
            if best.len() < group_len {
                return None;
            }
            let context = self.context(user, &event.session_id);
            // Listwise over what a request re-ranks: the positive among the best
            // candidates, when stage one retrieved it that high. A positive stage one
            // missed teaches nothing the re-ranker can use (it never sees it); and
            // negatives drawn from a different slice than the positive's teach it to push
            // the best candidates down.
            let at = best.iter().position(|(i, _)| *i == item)?;
            let mut rows = Vec::with_capacity(group_len);
            rows.push(self.features_of(item, &context, related)?);
            for (k, (i, _)) in best.iter().enumerate() {
                if k != at {
                    rows.push(self.features_of(*i, &context, related)?);
                }
            }
            Some(TrainingGroup {
                rows,
                logged: false,
            })
        })
    }

    /// The group a logged impression gives a positive event answering it: the answered
    /// slot's logged inputs, the other slots' as negatives, and (when the list was shorter
    /// than a group) stage one's best items it did not show.
    fn logged_group(&self, event: &Event, seen: &ItemHistory) -> Option<Vec<[f32; FEATURES]>> {
        let rec_id = event.rec_id.as_deref()?;
        if !matches!(
            event.kind,
            EventKind::Click | EventKind::AddToCart | EventKind::Purchase
        ) {
            return None;
        }
        let from = Answerer {
            session_id: &event.session_id,
            user_id: event.user_id.as_deref(),
        };
        let logged = self.decisions.logged_rows(rec_id, &event.item_id, from)?;
        // A shown item the user has met since is no plain negative any more.
        let met = |id: &str| self.covisit.index_of(id).is_some_and(|i| seen.contains(i));
        let group_len = self.config.replay.group_len();
        let mut rows = Vec::with_capacity(group_len);
        rows.push(logged.positive);
        rows.extend(
            logged
                .others
                .iter()
                .filter(|(id, _)| !met(id))
                .map(|(_, row)| *row)
                .take(group_len - 1),
        );
        let missing = group_len - rows.len();
        if missing > 0 {
            let shown: Vec<u32> = logged
                .shown
                .iter()
                .filter_map(|id| self.covisit.index_of(id))
                .collect();
            let related = self.related_of(seen);
            let fill = best_by_stage_one(
                &related,
                missing,
                &|i| seen.contains(i) || shown.contains(&i),
                &mut Scratch::default(),
            );
            if fill.len() < missing {
                return None;
            }
            let context = self.context(event.user_id.as_deref(), &event.session_id);
            for (i, _) in fill {
                rows.push(self.features_of(i, &context, &related)?);
            }
        }
        Some(rows)
    }

    /// What [`related`] gives for the history `seen` (the context's history).
    fn related_of(&self, seen: &ItemHistory) -> FxHashMap<u32, Related> {
        let candidates = &self.config.candidates;
        related(
            &self.covisit,
            seen.recent(),
            candidates.history_decay,
            candidates.history_depth,
        )
    }

    fn features_of(
        &self,
        item: u32,
        context: &Context,
        related: &impl RelatedLookup,
    ) -> Option<[f32; FEATURES]> {
        let id = self.covisit.id(item)?;
        Some(self.sources().features(id, Some(item), context, related).1)
    }
}

/// Whether `item` is co-visited and fewer than `n` other items (`skip`ped ones left out)
/// come before it in stage one's order: whether [`best_by_stage_one`] with `n` would hold
/// it, without selecting the best.
fn ranks_within(
    related: &impl RelatedLookup,
    item: u32,
    n: usize,
    skip: &dyn Fn(u32) -> bool,
) -> bool {
    let Some(key) = related.scores(item).map(stage_one_key) else {
        return false;
    };
    let mut ahead = 0;
    for (i, r) in related.entries() {
        let k = stage_one_key(r);
        // Stage one's order (`best_by_stage_one`): higher key, then lower id.
        let before = k.total_cmp(&key).then(item.cmp(&i)).is_gt();
        if before && !skip(i) {
            ahead += 1;
            if ahead >= n {
                return false;
            }
        }
    }
    true
}

/// The `n` co-visited items stage one orders first (ties to the lower id), `skip`ped ones
/// left out.
fn best_by_stage_one(
    related: &impl RelatedLookup,
    n: usize,
    skip: &dyn Fn(u32) -> bool,
    keys: &mut Scratch,
) -> Vec<(u32, f32)> {
    let entries = related
        .entries()
        .filter(|(i, _)| !skip(*i))
        .map(|(i, r)| (i, stage_one_key(r)));
    top_n(entries, n, keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // The cheap check stands in for the selection it skips: they must agree, or groups
        // would be dropped (or built) that the selection would not.
        #[test]
        fn ranks_within_says_whether_stage_one_picks_the_item(
            scores in prop::collection::vec((0u32..60, 0u8..4, 0u8..4), 0..80),
            skipped in prop::collection::vec(0u32..60, 0..20),
            item in 0u32..60,
            n in 1usize..12,
        ) {
            // Coarse scores, so ties (broken by id) are common.
            let related: FxHashMap<u32, Related> = scores
                .into_iter()
                .map(|(i, knn, transition)| {
                    (i, Related { knn: f32::from(knn) * 0.25, last_item: 0.0, transition: f32::from(transition) * 0.5 })
                })
                .collect();
            prop_assume!(!skipped.contains(&item));
            let skip = |i: u32| skipped.contains(&i);
            let best = best_by_stage_one(&related, n, &skip, &mut Scratch::default());
            prop_assert_eq!(
                ranks_within(&related, item, n, &skip),
                best.iter().any(|(i, _)| *i == item)
            );
        }
    }
}
