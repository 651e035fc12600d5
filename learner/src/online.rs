//! Every online learner, fed in stream order: the state one learner actor owns, and that an
//! offline replay of the same stream rebuilds exactly.
//!
//! Per event: de-duplication (stream sequence, then event id), popularity, item embeddings
//! over the session's recent items, and, for an event carrying a `rec_id`, the reward of
//! the bandit decision it answers. Per impression: the decision is remembered until it is
//! answered or expires.

mod decisions;
mod product_bandit;
mod replay;
mod training;

use serde::{Deserialize, Serialize};
use streamrec_proto::{Event, EventKind, Impression, Item};

pub use decisions::{Answer, Answerer, PendingDecisions, Reward};
pub use product_bandit::{
    ARM_DIM, Bandit, BanditKind, BanditParams, Slot, arm_features, arm_key, arms_for, choose_slate,
    request_rng,
};
pub use replay::{NamedTensor, ReplayConfig, RerankerState};

use crate::bandit::{Arm, Policy};
use crate::candidates::{
    Candidate, CandidateConfig, CandidateReads, Context, Sources, WindowInputs, ctr_of,
};
use crate::catalog::{Catalog, Upsert};
use crate::covisit::{CovisitConfig, CovisitLists, Covisitation};
use crate::dedup::RecentIds;
use crate::drift::{DriftConfig, DriftMonitor};
use crate::embeddings::{EmbeddingConfig, ItemEmbeddings};
use crate::event_clock::EventClock;
use crate::history::{Histories, ItemHistory};
use crate::intent::{DEFAULT_DECAY, DEFAULT_DEPTH, session_intent};
use crate::popularity::{Popularity, PopularityConfig, PopularityView};
use crate::window_features::{WindowConfig, WindowedFeatures};
use streamrec_proto::DriftAlert;

// Every field defaults, so a config file names only what it changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OnlineConfig {
    pub popularity: PopularityConfig,
    pub embeddings: EmbeddingConfig,
    pub bandit: BanditKind,
    /// The policy's parameters; unset ones take the policy's defaults.
    #[serde(skip_serializing_if = "BanditParams::is_default")]
    pub bandit_params: BanditParams,
    #[serde(default)]
    pub covisit: CovisitConfig,
    #[serde(default)]
    pub candidates: CandidateConfig,
    #[serde(default)]
    pub replay: ReplayConfig,
    /// Event-time windows: the watermark's lateness, session gaps, the CTR prior.
    #[serde(default, skip_serializing_if = "WindowConfig::is_default")]
    pub windows: WindowConfig,
    /// Drift monitoring: the window its PSI compares, bins, the least volume reported.
    #[serde(default, skip_serializing_if = "DriftConfig::is_default")]
    pub drift: DriftConfig,
    /// Event ids remembered for de-duplication.
    pub dedup_window: usize,
    /// Sessions whose histories are kept (intent, exclusions, the embeddings' context);
    /// beyond it the least recently active is forgotten.
    pub max_sessions: usize,
    /// Items remembered per session.
    pub session_capacity: usize,
    /// A session idle for this long (event time, by the watermark) is forgotten; none: only
    /// `max_sessions` bounds them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_ttl_ms: Option<i64>,
    /// Decisions awaiting an answer.
    pub max_decisions: usize,
    /// A decision unanswered for this long (event time) expires.
    pub decision_ttl_ms: i64,
    /// Slots assumed seen when a decision expires unanswered: they get reward 0.
    pub examined_positions: usize,
    /// Items the catalog holds; an upsert of a new item beyond it is refused and
    /// dead-lettered `catalog_full` (known items can always be updated).
    #[serde(default = "default_max_catalog_items")]
    pub max_catalog_items: usize,
    /// Distinct items the learners know (every learner's per-item state grows with it); an
    /// event on a new item beyond it is refused and dead-lettered `item_limit`.
    #[serde(default = "default_max_learned_items")]
    pub max_learned_items: usize,
}

fn default_max_learned_items() -> usize {
    2_000_000
}

fn default_max_catalog_items() -> usize {
    1_000_000
}

impl Default for OnlineConfig {
    fn default() -> Self {
        Self {
            popularity: PopularityConfig::default(),
            embeddings: EmbeddingConfig::default(),
            bandit: BanditKind::default(),
            bandit_params: BanditParams::default(),
            covisit: CovisitConfig::default(),
            candidates: CandidateConfig::default(),
            replay: ReplayConfig::default(),
            windows: WindowConfig::default(),
            drift: DriftConfig::default(),
            dedup_window: 1_000_000,
            max_sessions: 100_000,
            session_capacity: 200,
            session_ttl_ms: None,
            max_decisions: 100_000,
            decision_ttl_ms: 30 * 60 * 1000,
            examined_positions: 3,
            max_catalog_items: default_max_catalog_items(),
            max_learned_items: default_max_learned_items(),
        }
    }
}

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Its event id was applied before (under another sequence).
    Duplicate,
    /// Its sequence was applied before: a redelivery.
    Redelivered,
    /// Refused by a bound (a full catalog, the learned-items cap): the caller dead-letters it.
    Refused,
    /// Applied, but stamped `late_ms` behind the watermark: no event-time window took it
    /// (the caller republishes it to `streamrec.late.<kind>`); every other learner did.
    AppliedLate {
        late_ms: i64,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnlineCounters {
    pub events: u64,
    pub duplicates: u64,
    pub redeliveries: u64,
    pub impressions: u64,
    /// Bandit updates (clicks and the zeros around them).
    pub rewards: u64,
    /// Events whose `rec_id` matched a pending decision.
    pub attributed: u64,
    /// Events whose `rec_id` matched none (expired, or never served here).
    pub unattributed: u64,
    pub decisions_expired: u64,
    /// Sessions forgotten, least recently active first, to stay within `max_sessions`.
    #[serde(default)]
    pub sessions_evicted: u64,
    /// Events whose `rec_id` was served to another session or user: not learned.
    #[serde(default)]
    pub foreign_rec_id: u64,
    /// Catalog upserts of new items refused because the catalog was full.
    #[serde(default)]
    pub catalog_full: u64,
    /// Events on new items refused because the learners knew `max_learned_items`.
    #[serde(default)]
    pub items_refused: u64,
    /// Users erased (`DELETE /v1/users/{id}`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub users_erased: u64,
    /// Events stamped behind the watermark (see [`Outcome::AppliedLate`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub late_events: u64,
    /// Re-ranker training groups read from a logged impression (the rest are computed).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub logged_groups: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Where the learners stand in the stream: what a restore needs besides the models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamState {
    pub last_seq: u64,
    pub watermark: i64,
    /// What the watermark follows: the K-th latest event time, which one event cannot move.
    #[serde(default)]
    pub clock: EventClock,
    pub recent_ids: RecentIds,
    /// Each session's items (and, for events without a user, the user's).
    pub sessions: Histories,
    /// Each named user's items.
    #[serde(default = "empty_users")]
    pub users: Histories,
    pub decisions: PendingDecisions,
    /// The event-time windows and their watermark.
    #[serde(default)]
    pub windows: WindowedFeatures,
    /// Drift of the features, window by window.
    #[serde(default)]
    pub drift: DriftMonitor,
}

/// The learners taken apart, one part per snapshot file.
#[derive(Debug, Clone, PartialEq)]
pub struct OnlineParts {
    pub config: OnlineConfig,
    pub popularity: Popularity,
    pub embeddings: ItemEmbeddings,
    pub bandit: Bandit,
    pub covisit: Covisitation,
    pub reranker: RerankerState,
    pub stream: StreamState,
    pub counters: OnlineCounters,
    pub catalog: Catalog,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnlineModels {
    config: OnlineConfig,
    pub popularity: Popularity,
    pub embeddings: ItemEmbeddings,
    pub bandit: Bandit,
    pub covisit: Covisitation,
    pub reranker: RerankerState,
    sessions: Histories,
    users: Histories,
    /// Kept by the snapshot code in a file of its own.
    #[serde(skip)]
    pub catalog: Catalog,
    decisions: PendingDecisions,
    recent_ids: RecentIds,
    last_seq: u64,
    watermark: i64,
    clock: EventClock,
    windows: WindowedFeatures,
    drift: DriftMonitor,
    counters: OnlineCounters,
}

impl OnlineModels {
    pub fn new(config: OnlineConfig) -> Self {
        Self {
            popularity: Popularity::new(config.popularity.clone()),
            embeddings: ItemEmbeddings::new(config.embeddings.clone()),
            bandit: Bandit::with_params(config.bandit, config.bandit_params),
            covisit: Covisitation::new(config.covisit.clone()),
            reranker: RerankerState::new(config.replay.clone()),
            sessions: Histories::new(config.max_sessions, history_capacity(&config)),
            users: Histories::new(config.covisit.max_users, history_capacity(&config)),
            catalog: Catalog::default(),
            decisions: PendingDecisions::new(config.max_decisions),
            recent_ids: RecentIds::new(config.dedup_window),
            last_seq: 0,
            watermark: i64::MIN,
            clock: EventClock::default(),
            windows: WindowedFeatures::new(&config.windows),
            drift: DriftMonitor::new(&config.drift),
            counters: OnlineCounters::default(),
            config,
        }
    }

    pub fn counters(&self) -> OnlineCounters {
        self.counters
    }

    pub fn config(&self) -> &OnlineConfig {
        &self.config
    }

    pub fn into_parts(self) -> OnlineParts {
        OnlineParts {
            config: self.config,
            popularity: self.popularity,
            embeddings: self.embeddings,
            bandit: self.bandit,
            covisit: self.covisit,
            reranker: self.reranker,
            stream: StreamState {
                last_seq: self.last_seq,
                watermark: self.watermark,
                clock: self.clock.clone(),
                recent_ids: self.recent_ids,
                sessions: self.sessions,
                users: self.users,
                decisions: self.decisions,
                windows: self.windows,
                drift: self.drift,
            },
            counters: self.counters,
            catalog: self.catalog,
        }
    }

    pub fn from_parts(parts: OnlineParts) -> Self {
        Self {
            config: parts.config,
            popularity: parts.popularity,
            embeddings: parts.embeddings,
            bandit: parts.bandit,
            covisit: parts.covisit,
            reranker: parts.reranker,
            sessions: parts.stream.sessions,
            users: parts.stream.users,
            catalog: parts.catalog,
            decisions: parts.stream.decisions,
            recent_ids: parts.stream.recent_ids,
            last_seq: parts.stream.last_seq,
            watermark: parts.stream.watermark,
            clock: parts.stream.clock,
            windows: parts.stream.windows,
            drift: parts.stream.drift,
            counters: parts.counters,
        }
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Forgets the stream position (keeping everything learned, event-id de-duplication
    /// included): for learners warm-started offline from a log that is not on the live
    /// stream, whose sequence numbers then start afresh.
    pub fn detach_from_stream(&mut self) {
        self.last_seq = 0;
    }

    /// Checks the stream position; `false` for a redelivery.
    fn advance(&mut self, seq: u64) -> bool {
        if seq <= self.last_seq {
            self.counters.redeliveries += 1;
            return false;
        }
        for _ in 0..epochs_ended(self.last_seq, seq, self.covisit.config().epoch) {
            self.covisit.close_epoch();
        }
        for _ in 0..epochs_ended(self.last_seq, seq, self.embeddings.config().epoch) {
            self.embeddings.close_epoch();
        }
        self.last_seq = seq;
        true
    }

    pub fn apply_event(&mut self, seq: u64, event: &Event) -> Outcome {
        if !self.advance(seq) {
            return Outcome::Redelivered;
        }
        if !self.recent_ids.insert(&event.event_id) {
            self.counters.duplicates += 1;
            return Outcome::Duplicate;
        }
        if self.covisit.index_of(&event.item_id).is_none()
            && self.covisit.len() >= self.config.max_learned_items
        {
            self.counters.items_refused += 1;
            return Outcome::Refused;
        }
        self.counters.events += 1;
        // Decisions expire on the clock, not on the latest event: one event stamped ahead
        // would otherwise expire every pending decision at once.
        self.clock.observe(event.ts);
        self.watermark = self.watermark.max(self.clock.now().unwrap_or(event.ts));
        let item = self.covisit.intern(&event.item_id);
        // Seen from just before it happened, then learned.
        if let Some(group) = self.training_group(event, item) {
            self.counters.logged_groups += u64::from(group.logged);
            self.reranker.push(group.rows);
        }
        let late_ms = self.windows.observe_event(event, item);
        if late_ms.is_none() {
            self.drift.observe_event(event.ts, item, event.kind);
            if let Some(watermark) = self.windows.watermark().current() {
                self.drift.close_through(watermark);
            }
        }
        // A list view (schema 2) shows its items: impressions, of the items already known
        // (a list cannot make the learners meet new items past their bound).
        if late_ms.is_none()
            && let Some(listed) = &event.details.items
        {
            let shown: Vec<u32> = listed
                .iter()
                .filter_map(|id| self.covisit.index_of(id))
                .collect();
            self.windows.observe_impression(event.ts, shown);
        }
        // The fields, not `user_role_history`: co-visitation reads the history in place
        // while it counts.
        let owner = match event.user_id.as_deref() {
            Some(user) => self.users.get(user),
            None => self.sessions.get(&event.session_id),
        };
        let last = owner.and_then(ItemHistory::last);
        let first_meeting = !owner.is_some_and(|h| h.contains(item));
        self.covisit.meet(
            item,
            last,
            first_meeting.then(|| owner.into_iter().flat_map(ItemHistory::recent)),
        );
        self.popularity.apply(event);
        let window = self.config.embeddings.window;
        let context: Vec<u32> = self
            .sessions
            .get(&event.session_id)
            .map(|h| h.recent().take(window).collect())
            .unwrap_or_default();
        if let Some(user) = &event.user_id {
            self.users.push(user, item);
        }
        let ttl = self.config.session_ttl_ms;
        self.counters.sessions_evicted += self.sessions.push_owned(
            &event.session_id,
            item,
            event.user_id.as_deref(),
            ttl.map(|_| event.ts),
        ) as u64;
        if let Some(ttl) = ttl {
            self.counters.sessions_evicted +=
                self.sessions
                    .expire_idle(self.watermark.saturating_sub(ttl)) as u64;
        }
        let context: Vec<&str> = context.iter().filter_map(|&i| self.covisit.id(i)).collect();
        self.embeddings.observe(&event.item_id, &context);
        if let Some(rec_id) = &event.rec_id
            && matches!(
                event.kind,
                EventKind::Click | EventKind::AddToCart | EventKind::Purchase
            )
        {
            let from = Answerer {
                session_id: &event.session_id,
                user_id: event.user_id.as_deref(),
            };
            match self
                .decisions
                .answer(rec_id, &event.item_id, event.position, from)
            {
                Answer::Rewards(rewards) => {
                    self.counters.attributed += 1;
                    self.learn(rewards);
                }
                Answer::Unknown => self.counters.unattributed += 1,
                Answer::Foreign => self.counters.foreign_rec_id += 1,
            }
        }
        let expired = self.decisions.expire(
            self.watermark.saturating_sub(self.config.decision_ttl_ms),
            self.config.examined_positions,
        );
        self.counters.decisions_expired += expired.decisions;
        self.learn(expired.rewards);
        match late_ms {
            Some(late_ms) => {
                self.counters.late_events += 1;
                Outcome::AppliedLate { late_ms }
            }
            None => Outcome::Applied,
        }
    }

    /// A catalog upsert at items-stream sequence `seq` (a stream of its own).
    pub fn apply_item(&mut self, seq: u64, item: Item) -> Outcome {
        match self
            .catalog
            .upsert(seq, item, self.config.max_catalog_items)
        {
            Upsert::Applied => Outcome::Applied,
            Upsert::Redelivered => Outcome::Redelivered,
            Upsert::Full => {
                self.counters.catalog_full += 1;
                Outcome::Refused
            }
        }
    }

    /// A catalog deletion at items-stream sequence `seq`: the item is never served again
    /// until it is upserted. What the learners learned from its events stays (counts over
    /// every user), but no request sees it.
    pub fn apply_item_deletion(&mut self, seq: u64, item_id: &str) -> Outcome {
        let known = self.covisit.index_of(item_id).is_some();
        match self
            .catalog
            .delete(seq, item_id, known, self.config.max_catalog_items)
        {
            Upsert::Applied => Outcome::Applied,
            Upsert::Redelivered => Outcome::Redelivered,
            Upsert::Full => {
                self.counters.catalog_full += 1;
                Outcome::Refused
            }
        }
    }

    /// Erases, at events-stream sequence `seq`, what the learners keep of one user: the
    /// user's history, the histories of the sessions the user's events named, and the
    /// decisions served to either. Aggregates over every user (popularity, co-visitation
    /// counts, vectors, the bandit) keep what they learned: no one user can be read back
    /// out of them.
    pub fn apply_user_erasure(&mut self, seq: u64, user_id: &str) -> Outcome {
        if !self.advance(seq) {
            return Outcome::Redelivered;
        }
        self.users.remove(user_id);
        let sessions = self.sessions.remove_owned_by(user_id);
        self.decisions.forget_served_to(user_id, &sessions);
        self.windows.forget_user(user_id, &sessions);
        self.counters.users_erased += 1;
        Outcome::Applied
    }

    pub fn apply_impression(&mut self, seq: u64, impression: &Impression) -> Outcome {
        if !self.advance(seq) {
            return Outcome::Redelivered;
        }
        self.counters.impressions += 1;
        let shown: Vec<u32> = impression
            .items
            .iter()
            .filter_map(|i| self.covisit.index_of(&i.item_id))
            .collect();
        self.windows.observe_impression(impression.ts, shown);
        // Drift takes every impression: one stamped behind the watermark (impressions carry
        // the served version's event clock, which trails the newest event) counts at it.
        let at = self
            .windows
            .watermark()
            .current()
            .map_or(impression.ts, |w| impression.ts.max(w));
        self.drift.observe_impression(at, impression);
        let overflow = self
            .decisions
            .insert(impression.clone(), self.config.examined_positions);
        self.learn(overflow);
        Outcome::Applied
    }

    fn learn(&mut self, rewards: Vec<Reward>) {
        for reward in rewards {
            let arm = Arm {
                key: arm_key(&reward.item_id),
                x: nalgebra::DVector::from_vec(reward.features),
            };
            if arm.x.len() == self.bandit.dim() {
                self.bandit.update(&arm, reward.reward);
                self.counters.rewards += 1;
            }
        }
    }

    pub fn popularity_view(&self, limit: usize) -> PopularityView {
        self.popularity.view(limit)
    }

    /// The `n` most popular items with their scores: candidates, in rank order.
    pub fn popular(&self, n: usize) -> Vec<(String, f64)> {
        self.popularity
            .view(n)
            .ranked
            .iter()
            .map(|(id, s)| (id.to_string(), *s))
            .collect()
    }

    /// The session's intent vector: its recent items' vectors, recency-weighted.
    pub fn session_intent(&self, session_id: &str) -> Option<Vec<f32>> {
        let recent = self.sessions.get(session_id)?;
        session_intent(
            recent.recent().filter_map(|i| self.covisit.id(i)),
            &self.embeddings,
            DEFAULT_DECAY,
            DEFAULT_DEPTH,
        )
    }

    /// Every remembered session's history, least recently active first.
    pub fn session_histories(&self) -> impl Iterator<Item = (&str, &ItemHistory)> {
        self.sessions.iter()
    }

    /// What candidate generation reads.
    pub fn sources(&self) -> Sources<'_> {
        Sources { reads: self }
    }

    /// The history that stands for the user: the named user's, or the session's when the
    /// request or event names none.
    pub fn user_role_history(&self, user: Option<&str>, session_id: &str) -> Option<&ItemHistory> {
        match user {
            Some(user) => self.users.get(user),
            None => self.sessions.get(session_id),
        }
    }

    /// The context of a request: the user's history (the session's when no user is named),
    /// most recent first, and the session's intent.
    pub fn context(&self, user: Option<&str>, session_id: &str) -> Context {
        let history = self
            .user_role_history(user, session_id)
            .map(|h| h.recent().collect())
            .unwrap_or_default();
        Context {
            history,
            intent: self.session_intent(session_id),
        }
    }

    /// The items of a history, as ids of the wire.
    pub fn item_ids<'a>(&'a self, history: &'a ItemHistory) -> impl Iterator<Item = &'a str> + 'a {
        history.recent().filter_map(|i| self.covisit.id(i))
    }

    /// The dense id of an item the learners have met.
    pub fn item_index(&self, item: &str) -> Option<u32> {
        self.covisit.index_of(item)
    }

    /// Stage-one candidates for a request (see [`Sources::candidates`]).
    pub fn candidates(
        &self,
        context: &Context,
        ann: &[(u32, f32)],
        popular: &[&str],
        excluded: &dyn Fn(&str) -> bool,
    ) -> Vec<Candidate> {
        self.sources()
            .candidates(context, ann, popular, excluded, &self.config.candidates)
    }

    pub fn sessions(&self) -> &Histories {
        &self.sessions
    }

    pub fn users(&self) -> &Histories {
        &self.users
    }

    pub(crate) fn sessions_mut(&mut self) -> &mut Histories {
        &mut self.sessions
    }

    pub(crate) fn users_mut(&mut self) -> &mut Histories {
        &mut self.users
    }

    /// The event-time windows.
    pub fn windows(&self) -> &WindowedFeatures {
        &self.windows
    }

    pub(crate) fn windows_mut(&mut self) -> &mut WindowedFeatures {
        &mut self.windows
    }

    /// The features' drift, window by window.
    pub fn drift(&self) -> &DriftMonitor {
        &self.drift
    }

    /// The drift alerts raised since the last call (a feature that turned major).
    pub fn take_drift_alerts(&mut self) -> Vec<DriftAlert> {
        self.drift.take_alerts()
    }

    pub(crate) fn drift_mut(&mut self) -> &mut DriftMonitor {
        &mut self.drift
    }

    pub fn pending_decisions(&self) -> usize {
        self.decisions.len()
    }
}

impl CovisitLists for OnlineModels {
    fn neighbours(&self, item: u32) -> &[(u32, f32)] {
        self.covisit.neighbours(item)
    }

    fn transitions(&self, item: u32) -> &[(u32, f32)] {
        self.covisit.transitions(item)
    }
}

impl CandidateReads for OnlineModels {
    fn item(&self, index: u32) -> Option<&str> {
        self.covisit.id(index)
    }

    fn item_index(&self, item: &str) -> Option<u32> {
        self.covisit.index_of(item)
    }

    fn vector(&self, item: &str) -> Option<&[f32]> {
        self.embeddings.vector(item)
    }

    fn popularity(&self, item: &str) -> f64 {
        self.popularity.score(item)
    }

    fn ctr(&self, item: &str) -> f32 {
        ctr_of(&self.bandit, item)
    }

    fn window_inputs(&self, index: u32) -> WindowInputs {
        if self.config.candidates.window_features {
            self.windows.window_inputs(index)
        } else {
            WindowInputs::default()
        }
    }
}

/// Epochs of `epoch` events (0: none) that end between sequence numbers `last` and `seq`.
/// Epochs are spans of sequence numbers, so every replay ends them at the same messages;
/// past two, a learner by epoch has nothing left to count or read.
fn epochs_ended(last: u64, seq: u64, epoch: u64) -> u64 {
    match (
        seq.saturating_sub(1).checked_div(epoch),
        last.saturating_sub(1).checked_div(epoch),
    ) {
        (Some(now), Some(before)) => now.saturating_sub(before).min(2),
        _ => 0,
    }
}

/// Items a session or user history holds: enough for co-visitation's window and for intent.
fn history_capacity(config: &OnlineConfig) -> usize {
    config
        .covisit
        .user_window
        .max(config.session_capacity)
        .max(DEFAULT_DEPTH)
}

fn empty_users() -> Histories {
    let config = OnlineConfig::default();
    Histories::new(config.covisit.max_users, history_capacity(&config))
}
