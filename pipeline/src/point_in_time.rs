//! Point-in-time replay: the re-ranker inputs an impression logged, recomputed offline from a
//! replay of the same streams at the positions the served version was published at. Served
//! and replayed must agree bit for bit; where they do not, serving read something the
//! stream does not determine (a stale copy, wall-clock time, an unseeded choice).

use std::collections::BTreeMap;

use streamrec_learner::ReadSide;
use streamrec_learner::candidates::{FEATURE_SET, FEATURES, Sources};
use streamrec_learner::covisit::related;
use streamrec_learner::online::OnlineModels;
use streamrec_proto::{Event, Impression, Item, StreamPosition};
use streamrec_ranker::{ComputeDevice, RerankError};

use crate::replayer::Replayer;

/// A message of the events stream, with its sequence.
pub enum StreamEntry {
    Event(Event),
    Impression(Impression),
    /// A user's erasure (`streamrec.users.erase`), by user id.
    UserErasure(String),
}

/// The re-ranker inputs of each of `impression`'s items as `read` computes them: what a
/// request on `read` offered the re-ranker (the same context, the same co-visitation).
pub fn recompute_features(read: &ReadSide, impression: &Impression) -> Vec<[f32; FEATURES]> {
    let user = impression.user_id.as_deref();
    let context = read.context(user, &impression.session_id);
    let config = read.candidate_config();
    let related = related(
        read,
        context.history.iter().copied(),
        config.history_decay,
        config.history_depth,
    );
    let sources = Sources { reads: read };
    impression
        .items
        .iter()
        .map(|item| sources.features(&item.item_id, None, &context, &related).1)
        .collect()
}

/// One logged vector that the replay computed otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureMismatch {
    pub rec_id: String,
    pub item_id: String,
    pub served: Vec<u32>,
    pub replayed: Vec<u32>,
}

/// What a point-in-time replay compared.
#[derive(Debug, Default)]
pub struct PointInTimeReport {
    /// Impressions with logged features of this layout, compared.
    pub impressions: usize,
    /// Item vectors compared.
    pub vectors: usize,
    pub mismatches: Vec<FeatureMismatch>,
    /// Impressions whose version's position the streams never reached (or of another
    /// layout): not compared.
    pub skipped: usize,
}

/// Replays `events` (the events stream, in sequence order) and `items` (the items stream's
/// upserts; a deletion moves the items stream's position, so an impression served after one
/// is not compared: `skipped`) through fresh learners from `models`, stopping at every position an impression's features
/// were logged at, and compares each logged vector with the recomputed one.
///
/// Between two published positions the live learner may have taken the two streams in any
/// interleaving; the replay takes the items first. Learners whose state depends on that
/// interleaving would show here as mismatches.
pub fn replay_logged_features(
    models: OnlineModels,
    device: ComputeDevice,
    events: &[(u64, StreamEntry)],
    items: &[(u64, Item)],
) -> Result<PointInTimeReport, RerankError> {
    let mut report = PointInTimeReport::default();
    let mut wanted: BTreeMap<(u64, u64), Vec<&Impression>> = BTreeMap::new();
    for (_, entry) in events {
        let StreamEntry::Impression(impression) = entry else {
            continue;
        };
        match &impression.logged {
            Some(log) if log.set == FEATURE_SET => {
                let StreamPosition {
                    events_seq,
                    items_seq,
                } = log.as_of;
                wanted
                    .entry((events_seq, items_seq))
                    .or_default()
                    .push(impression);
            }
            _ => report.skipped += 1,
        }
    }
    let mut read = ReadSide::of(&models);
    let mut rewards = models.counters().rewards;
    let mut replayer = Replayer::new(models, device)?;
    let (mut next_event, mut next_item) = (0, 0);
    for ((events_seq, items_seq), impressions) in wanted {
        while let Some((seq, item)) = items.get(next_item).filter(|(s, _)| *s <= items_seq) {
            replayer.apply_item(*seq, item.clone());
            next_item += 1;
        }
        while let Some((seq, entry)) = events.get(next_event).filter(|(s, _)| *s <= events_seq) {
            match entry {
                StreamEntry::Event(event) => {
                    replayer.apply_event(*seq, event)?;
                }
                StreamEntry::Impression(impression) => {
                    replayer.apply_impression(*seq, impression);
                }
                StreamEntry::UserErasure(user_id) => {
                    replayer.apply_user_erasure(*seq, user_id);
                }
            }
            next_event += 1;
        }
        let at = replayer.models();
        if at.last_seq() != events_seq || at.catalog.last_seq() != items_seq {
            report.skipped += impressions.len();
            continue;
        }
        let now = at.counters().rewards;
        replayer.catch_up(&mut read, now != rewards);
        rewards = now;
        for impression in impressions {
            report.impressions += 1;
            let replayed = recompute_features(&read, impression);
            for (item, replayed) in impression.items.iter().zip(replayed) {
                let Some(served) = &item.candidate_features else {
                    continue;
                };
                report.vectors += 1;
                let replayed: Vec<u32> = replayed.iter().map(|v| v.to_bits()).collect();
                if served.bits() != replayed {
                    report.mismatches.push(FeatureMismatch {
                        rec_id: impression.rec_id.clone(),
                        item_id: item.item_id.clone(),
                        served: served.bits(),
                        replayed,
                    });
                }
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests;
