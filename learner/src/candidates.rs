//! Stage one of ranking: candidates from several sources, merged, each with the features
//! the re-ranker scores. The same code builds the request path's candidates and the
//! re-ranker's training groups, so what it learns on is what it is asked about.

use rustc_hash::FxHashSet;

use serde::{Deserialize, Serialize};

use crate::covisit::{CovisitLists, Related, RelatedLookup, related};
use crate::embeddings::cosine;
use crate::online::{Bandit, arm_key};

/// Inputs of the re-ranker, per candidate.
pub const FEATURES: usize = 11;
pub const FEATURE_NAMES: [&str; FEATURES] = [
    "knn",
    "last_item",
    "transition",
    "intent",
    "popularity",
    "ctr",
    "history_len",
    "events_1h",
    "events_24h",
    "trend",
    "retrieval",
];
/// The name of this layout of [`FEATURE_NAMES`], logged with every served vector: a replay
/// or a trainer reading a log of another layout must not read it as this one.
pub const FEATURE_SET: &str = "candidates.v2";
/// The inputs read from the item's event-time windows (see [`WindowInputs`]).
pub const WINDOW_FEATURES: std::ops::Range<usize> = 7..10;

/// The input holding the stage-one score.
pub const RETRIEVAL_FEATURE: usize = FEATURES - 1;

/// Where a candidate came from (the first source that produced it, in this order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Co-visitation with the history, recency-weighted (item-kNN).
    Knn,
    /// Items that followed the last item (Markov transitions).
    Transition,
    /// Nearest to the session's intent vector (ANN).
    Intent,
    /// Popular, decayed.
    Popular,
    /// Placed by a request's pin.
    Pinned,
}

// Every field defaults, so a config file names only what it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CandidateConfig {
    /// Candidates per request before re-ranking.
    pub pool: usize,
    /// Whether the re-ranker reads the item's event-time windows (`events_1h`,
    /// `events_24h`, `trend`); off, those inputs are 0. Off by default: on MovieLens-100K
    /// next-item they cost HR@10 (0.1983 against 0.2089; docs/BENCHMARKS.md).
    pub window_features: bool,
    /// Weight of a history item relative to the one after it.
    pub history_decay: f32,
    /// History items that count.
    pub history_depth: usize,
}

impl Default for CandidateConfig {
    fn default() -> Self {
        Self {
            pool: 200,
            window_features: false,
            history_decay: 0.5,
            // decay^12 < 3e-4: older items barely move a score, and each costs a row scan.
            history_depth: 12,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub item_id: String,
    pub source: Source,
    /// Stage-one score: the order without a re-ranker.
    pub retrieval: f32,
    pub features: [f32; FEATURES],
}

/// What candidate generation reads. The learners provide it (for training groups, cut
/// on the write side) and so does their published read side (for requests): one code
/// path scores both, so the re-ranker trains on the features it is asked about.
pub trait CandidateReads: CovisitLists {
    /// The wire id of a dense item id.
    fn item(&self, index: u32) -> Option<&str>;
    fn item_index(&self, item: &str) -> Option<u32>;
    /// The item's embedding.
    fn vector(&self, item: &str) -> Option<&[f32]>;
    /// The embedding of the item with this dense id: what [`Self::vector`] gives for its
    /// wire id, which a read side keyed by dense id answers without hashing the id.
    fn vector_at(&self, index: u32) -> Option<&[f32]> {
        self.vector(self.item(index)?)
    }
    /// Decayed popularity as of the latest event.
    fn popularity(&self, item: &str) -> f64;
    /// [`Self::popularity`] of the item with this dense id.
    fn popularity_at(&self, index: u32) -> f64 {
        self.item(index).map_or(0.0, |item| self.popularity(item))
    }
    /// The bandit's click-through estimate for the item (0 before any pull).
    fn ctr(&self, item: &str) -> f32;
    /// The re-ranker's inputs from the item's event-time windows (zeros when off, or for an
    /// item without events in a closed window).
    fn window_inputs(&self, index: u32) -> WindowInputs;
}

/// An item's windowed activity as re-ranker inputs: events in the latest closed hour and
/// day (`ln(1 + n) / 5`) and the trend (`ln`), as of the watermark.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct WindowInputs {
    pub events_1h: f32,
    pub events_24h: f32,
    pub trend: f32,
}

impl WindowInputs {
    pub fn of(events_1h: u64, events_24h: u64, trend: f64) -> Self {
        Self {
            events_1h: (events_1h as f32).ln_1p() / 5.0,
            events_24h: (events_24h as f32).ln_1p() / 5.0,
            trend: trend.max(f64::MIN_POSITIVE).ln() as f32,
        }
    }
}

/// The bandit's empirical click-through rate of `item`.
pub fn ctr_of(bandit: &Bandit, item: &str) -> f32 {
    bandit
        .model()
        .arm(arm_key(item))
        .filter(|a| a.pulls > 0)
        .map_or(0.0, |a| (a.reward_sum / a.pulls as f64) as f32)
}

/// Candidate generation over some [`CandidateReads`].
pub struct Sources<'a> {
    pub reads: &'a dyn CandidateReads,
}

/// The request's context: its history (item ids, most recent first) and intent.
pub struct Context {
    pub history: Vec<u32>,
    pub intent: Option<Vec<f32>>,
}

/// The co-visitation part of the stage-one score: the order co-visited items are
/// retrieved in.
pub fn stage_one_key(related: &Related) -> f32 {
    related.knn + 0.5 * related.transition
}

/// Stage-one score: co-visitation first, the transition and intent as corrections,
/// popularity to order items the history says nothing about.
fn retrieval_score(related: &Related, intent: f32, popularity: f64) -> f32 {
    stage_one_key(related) + 0.05 * intent + 1e-4 * (popularity as f32).ln_1p()
}

impl Sources<'_> {
    /// The features of `item` (with its dense id, when known) in `context`; `related` is
    /// the history's co-visitation.
    pub fn features(
        &self,
        item: &str,
        index: Option<u32>,
        context: &Context,
        related: &impl RelatedLookup,
    ) -> (f32, [f32; FEATURES]) {
        let index = index.or_else(|| self.reads.item_index(item));
        let r = index
            .and_then(|i| related.scores(i))
            .copied()
            .unwrap_or_default();
        let vector = match index {
            Some(i) => self.reads.vector_at(i),
            None => self.reads.vector(item),
        };
        let intent = match (&context.intent, vector) {
            (Some(q), Some(v)) => cosine(q, v),
            _ => 0.0,
        };
        let popularity = match index {
            Some(i) => self.reads.popularity_at(i),
            None => self.reads.popularity(item),
        };
        let ctr = self.reads.ctr(item);
        let windows = index
            .map(|i| self.reads.window_inputs(i))
            .unwrap_or_default();
        let retrieval = retrieval_score(&r, intent, popularity);
        (
            retrieval,
            [
                r.knn,
                r.last_item,
                r.transition,
                intent,
                (popularity as f32).ln_1p() / 10.0,
                ctr,
                (context.history.len() as f32).ln_1p() / 5.0,
                windows.events_1h,
                windows.events_24h,
                windows.trend,
                retrieval,
            ],
        )
    }

    /// Up to `config.pool` candidates for `context`, best stage-one score first: the
    /// history's co-visited items, then `ann` (intent neighbours: dense id, similarity) and
    /// `popular` to fill. `excluded` items never appear.
    pub fn candidates<'i>(
        &'i self,
        context: &Context,
        ann: &[(u32, f32)],
        popular: &[&'i str],
        excluded: &dyn Fn(&str) -> bool,
        config: &CandidateConfig,
    ) -> Vec<Candidate> {
        let related = related(
            self.reads,
            context.history.iter().copied(),
            config.history_decay,
            config.history_depth,
        );
        // Keys computed once; ids are unique, so an unstable sort gives the one order.
        let mut by_score: Vec<(u32, f32, &Related)> = related
            .iter()
            .map(|(&i, r)| (i, stage_one_key(r), r))
            .collect();
        by_score.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        // Borrowed ids: a pool's worth of lookups per request, without a copy of each id.
        let mut seen: FxHashSet<&'i str> = FxHashSet::default();
        seen.reserve(config.pool);
        let mut out = Vec::with_capacity(config.pool);
        let mut take =
            |item: &'i str, index: Option<u32>, source: Source, out: &mut Vec<Candidate>| {
                if out.len() >= config.pool || excluded(item) || seen.contains(item) {
                    return;
                }
                let (retrieval, features) = self.features(item, index, context, &related);
                out.push(Candidate {
                    item_id: item.to_owned(),
                    source,
                    retrieval,
                    features,
                });
                seen.insert(item);
            };
        // Reserve room for the other sources: co-visitation fills at most 3/4 of the pool.
        let knn_quota = config.pool - config.pool / 4;
        for (i, _, r) in &by_score {
            if out.len() >= knn_quota {
                break;
            }
            if let Some(item) = self.reads.item(*i) {
                let source = if r.knn > 0.0 {
                    Source::Knn
                } else {
                    Source::Transition
                };
                take(item, Some(*i), source, &mut out);
            }
        }
        for &(i, _) in ann {
            if let Some(item) = self.reads.item(i) {
                take(item, Some(i), Source::Intent, &mut out);
            }
        }
        for &item in popular {
            take(item, None, Source::Popular, &mut out);
        }
        // Ids are unique (`seen`), so an unstable sort gives the one order; they are compared
        // only on a tie (`then` would compare the strings at every step).
        out.sort_unstable_by(|a, b| {
            b.retrieval
                .total_cmp(&a.retrieval)
                .then_with(|| a.item_id.cmp(&b.item_id))
        });
        out
    }
}
