//! Training groups for the re-ranker, cut from the stream: each event against the
//! candidates the request path would have offered just before it.

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use streamrec_proto::Event;
use xxhash_rust::xxh3::xxh3_64;

use super::{OnlineModels, user_key};
use crate::candidates::{CandidateConfig, FEATURES};

impl OnlineModels {
    /// The group for `event` (positive first), before `event` is learned; `None` when the
    /// user has no history yet, has met the item before, or too few negatives exist.
    pub(super) fn training_group(&self, event: &Event) -> Option<Vec<[f32; FEATURES]>> {
        let config = &self.config.replay;
        let user = user_key(event);
        let seen = self.covisit.user_history(user)?;
        if seen.has_seen(&event.item_id) {
            return None;
        }
        let context = self.context(Some(user), &event.session_id);
        if context.history.is_empty() {
            return None;
        }
        let sources = self.sources();
        let excluded = |id: &str| seen.has_seen(id) || id == event.item_id;
        let pool = CandidateConfig {
            pool: config.hard_negatives * 4,
            ..self.config.candidates.clone()
        };
        let candidates = sources.candidates(&context, &[], &[], &excluded, &pool);
        if candidates.len() < config.hard_negatives {
            return None;
        }
        // Seeded by the event, so a replay draws the same negatives.
        let mut rng = ChaCha8Rng::seed_from_u64(xxh3_64(event.event_id.as_bytes()));
        let related =
            self.covisit
                .related(&context.history, pool.history_decay, pool.history_depth);
        let mut group = Vec::with_capacity(config.group_len());
        group.push(sources.features(&event.item_id, &context, &related).1);
        group.extend(
            candidates
                .choose_multiple(&mut rng, config.hard_negatives)
                .map(|c| c.features),
        );
        let catalog = self.covisit.len();
        let mut tries = 0;
        while group.len() < config.group_len() && catalog > 0 && tries < 100 {
            tries += 1;
            let Some(item) = self.covisit.id(rng.random_range(0..catalog) as u32) else {
                continue;
            };
            if !excluded(item) && !candidates.iter().any(|c| c.item_id == item) {
                group.push(sources.features(item, &context, &related).1);
            }
        }
        (group.len() == config.group_len()).then_some(group)
    }
}
