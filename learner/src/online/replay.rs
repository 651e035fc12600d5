//! The re-ranker's side of the learner state: training groups gathered from the stream (a
//! replay buffer), and the weights of the last training step.
//!
//! A group is one event seen from just before it happened: the item the user went to
//! (first row) beside items the candidate stage would have offered instead. The re-ranker
//! itself (burn) lives in `streamrec-ranker`; this crate only gathers its data and keeps its
//! weights, so a snapshot holds both and a replay rebuilds both exactly.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::candidates::FEATURES;

// Every field defaults, so a config file names only what it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReplayConfig {
    /// Groups kept (the newest).
    pub capacity: usize,
    /// Candidates beside the positive in a group: the best of stage one's others.
    pub negatives: usize,
    /// Groups per training step.
    pub batch: usize,
    /// Share of events a group is built for, chosen by a hash of the event id: a replay
    /// picks the same events, on any machine.
    #[serde(default = "every_event")]
    pub group_share: f64,
}

fn every_event() -> f64 {
    1.0
}

impl Default for ReplayConfig {
    fn default() -> Self {
        Self {
            capacity: 512,
            negatives: 31,
            batch: 32,
            group_share: every_event(),
        }
    }
}

impl ReplayConfig {
    /// Whether the event with this id is one a group is built for.
    pub fn samples(&self, event_id: &str) -> bool {
        if self.group_share >= 1.0 {
            return true;
        }
        // FNV-1a, fixed by its definition (unlike the standard library's hashers), then
        // splitmix64's finaliser: FNV's high bits barely differ between ids that differ in
        // their last character.
        let mut hash = event_id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        hash ^= hash >> 31;
        (hash >> 11) as f64 / (1u64 << 53) as f64 <= self.group_share
    }

    /// Rows per group: the positive and its negatives.
    pub fn group_len(&self) -> usize {
        1 + self.negatives
    }
}

/// A tensor as plain data: what a snapshot file stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RerankerState {
    pub config: ReplayConfig,
    /// Weights after step `steps`, by name; empty until the first. Training runs beside
    /// the learner, so in a live learner these lag; a snapshot fills them in at `steps`.
    pub weights: Vec<NamedTensor>,
    /// Batches handed out for training: a function of the stream alone.
    pub steps: u64,
    /// Loss of the last step (mean over its batch).
    pub last_loss: Option<f32>,
    /// Groups, oldest first, each `group_len × FEATURES` values, row 0 the positive.
    groups: VecDeque<Vec<f32>>,
    /// Groups not yet trained on (the newest ones).
    pending: usize,
}

impl RerankerState {
    pub fn new(config: ReplayConfig) -> Self {
        Self {
            config,
            weights: Vec::new(),
            steps: 0,
            last_loss: None,
            groups: VecDeque::new(),
            pending: 0,
        }
    }

    /// Starts afresh when the stored state was learned on another number of inputs (a
    /// snapshot from before the re-ranker's inputs changed): its weights and groups cannot
    /// be read as these inputs. Otherwise unchanged.
    pub(crate) fn forget_if_other_inputs(&mut self) {
        let values = self.config.group_len() * FEATURES;
        let fits = self.groups.iter().all(|g| g.len() == values)
            && self
                .weights
                .iter()
                .filter(|w| w.name == "first.weight" || w.name == "wide.weight")
                .all(|w| w.shape.first() == Some(&FEATURES));
        if !fits {
            *self = Self::new(self.config.clone());
        }
    }

    pub fn push(&mut self, group: Vec<[f32; FEATURES]>) {
        if group.len() != self.config.group_len() {
            return;
        }
        self.groups.push_back(group.into_iter().flatten().collect());
        self.pending += 1;
        while self.groups.len() > self.config.capacity.max(1) {
            self.groups.pop_front();
        }
        self.pending = self.pending.min(self.groups.len());
    }

    /// The next batch to train on, oldest pending first, once a whole batch is pending.
    pub fn next_batch(&mut self) -> Option<Vec<f32>> {
        let batch = self.config.batch.max(1);
        if self.pending < batch {
            return None;
        }
        let start = self.groups.len() - self.pending;
        self.pending -= batch;
        self.steps += 1;
        Some(
            self.groups
                .range(start..start + batch)
                .flatten()
                .copied()
                .collect(),
        )
    }

    /// Every group held, oldest first (for evaluation and offline training).
    pub fn groups(&self) -> impl Iterator<Item = &[f32]> {
        self.groups.iter().map(Vec::as_slice)
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Records the weights and loss after the last batch handed out.
    pub fn trained(&mut self, mut weights: Vec<NamedTensor>, loss: Option<f32>) {
        // One order, so equal states compare and serialise equal.
        weights.sort_by(|a, b| a.name.cmp(&b.name));
        self.weights = weights;
        self.last_loss = loss;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(config: &ReplayConfig, v: f32) -> Vec<[f32; FEATURES]> {
        vec![[v; FEATURES]; config.group_len()]
    }

    #[test]
    fn the_sampled_share_is_about_what_is_asked_and_fixed_by_the_id() {
        let half = ReplayConfig {
            group_share: 0.5,
            ..ReplayConfig::default()
        };
        let picked = (0..10_000)
            .filter(|i| half.samples(&format!("event-{i}")))
            .count();
        assert!((4_700..5_300).contains(&picked), "{picked} of 10,000");
        // A smaller share picks a subset: the threshold moves, the hash does not.
        let quarter = ReplayConfig {
            group_share: 0.25,
            ..ReplayConfig::default()
        };
        let ids: Vec<String> = (0..2_000).map(|i| format!("e{i}")).collect();
        assert!(
            ids.iter()
                .filter(|id| quarter.samples(id))
                .all(|id| half.samples(id))
        );
        let quartered = ids.iter().filter(|id| quarter.samples(id)).count();
        assert!((400..600).contains(&quartered), "{quartered} of 2,000");
        assert!((0..100).all(|i| ReplayConfig::default().samples(&i.to_string())));
    }

    #[test]
    fn batches_come_in_stream_order_once_full() {
        let config = ReplayConfig {
            batch: 2,
            capacity: 3,
            ..ReplayConfig::default()
        };
        let mut r = RerankerState::new(config.clone());
        r.push(group(&config, 1.0));
        assert!(r.next_batch().is_none());
        r.push(group(&config, 2.0));
        let b = r.next_batch().expect("two pending");
        assert_eq!(b.len(), 2 * config.group_len() * FEATURES);
        assert_eq!((b[0], b[b.len() - 1]), (1.0, 2.0));
        assert!(r.next_batch().is_none());
        for v in 3..7 {
            r.push(group(&config, v as f32));
        }
        assert_eq!(r.len(), 3, "capacity bounds the buffer");
        let b = r.next_batch().expect("pending");
        assert_eq!(b[0], 4.0, "only what is still held is pending");
    }
}
