//! Training groups for the re-ranker, cut from the stream: each event against the
//! candidates the request path would have offered just before it.

use streamrec_proto::Event;

use super::OnlineModels;
use crate::candidates::{FEATURES, stage_one_key};
use crate::covisit::related;

impl OnlineModels {
    /// The group for `event` (positive first; `item` is its interned item), before `event`
    /// is learned; `None` when the user has no history yet, has met the item before, or
    /// stage one would not have offered it among its best `group_len` candidates.
    pub(super) fn training_group(&self, event: &Event, item: u32) -> Option<Vec<[f32; FEATURES]>> {
        let config = &self.config.replay;
        if !config.samples(&event.event_id) {
            return None;
        }
        let user = event.user_id.as_deref();
        let seen = self.user_role_history(user, &event.session_id)?;
        if seen.contains(item) {
            return None;
        }
        let context = self.context(user, &event.session_id);
        if context.history.is_empty() {
            return None;
        }
        let sources = self.sources();
        let group_len = config.group_len();
        let candidates = &self.config.candidates;
        let related = related(
            &self.covisit,
            context.history.iter().copied(),
            candidates.history_decay,
            candidates.history_depth,
        );
        // Stage one's best `group_len` (by its co-visitation order), without the cost of
        // featurising a whole request pool for every event.
        let mut best: Vec<(u32, f32)> = related
            .iter()
            .filter(|(i, _)| !seen.contains(**i))
            .map(|(&i, r)| (i, stage_one_key(r)))
            .collect();
        let order = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if best.len() < group_len {
            return None;
        }
        best.select_nth_unstable_by(group_len - 1, order);
        best.truncate(group_len);
        best.sort_by(order);
        // Listwise over what a request re-ranks: the positive among the best candidates, when
        // stage one retrieved it that high. A positive stage one missed teaches nothing the
        // re-ranker can use (it never sees it); and negatives drawn from a different slice
        // than the positive's teach it to push the best candidates down.
        let at = best.iter().position(|(i, _)| *i == item)?;
        let features = |i: u32| {
            self.covisit
                .id(i)
                .map(|id| sources.features(id, Some(i), &context, &related).1)
        };
        let mut group = Vec::with_capacity(group_len);
        group.push(features(item)?);
        for (k, (i, _)) in best.iter().enumerate() {
            if k != at {
                group.push(features(*i)?);
            }
        }
        Some(group)
    }
}
