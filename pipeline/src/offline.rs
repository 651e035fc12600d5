//! Learning and answering in one thread, in stream order: what the engine does, without
//! actors, a bus or timing. Each answer publishes the read side first (so it sees every
//! message learned so far), ranks through the same stages as a live request (ANN by exact
//! scan, the re-ranker inline), and learns its impression next, as the engine's would be.
//! Offline evaluation replays a log through it; the answers depend on the log alone.

use streamrec_learner::ReadSide;
use streamrec_learner::online::{OnlineModels, Outcome};
use streamrec_proto::{Event, Impression, Item};
use streamrec_ranker::{ComputeDevice, RerankError};

use crate::published::{RerankerProgress, ServingModels, feature_log, position_of};
use crate::rank::{ExactIntent, InlineScorer, rank};
use crate::replayer::Replayer;
use crate::request::{RankedItem, RecommendRequest};
use crate::stages::{RankInputs, SessionSeen};

pub struct OfflineEngine {
    replayer: Replayer,
    read: ReadSide,
    /// The last stream sequence given out (events and impressions share it).
    seq: u64,
    /// The last items-stream sequence given out.
    items_seq: u64,
    /// Bandit rewards as of the last publish: the read side copies the bandit when they moved.
    rewards: u64,
    version: u64,
    view_size: usize,
    /// Serve the re-ranker's order (it trains either way).
    rerank: bool,
    /// The last impression learned, with its sequence.
    last_impression: Option<(u64, Impression)>,
}

impl OfflineEngine {
    pub fn new(
        models: OnlineModels,
        device: ComputeDevice,
        view_size: usize,
        rerank: bool,
    ) -> Result<Self, RerankError> {
        let read = ReadSide::of(&models);
        let seq = models.last_seq();
        let rewards = models.counters().rewards;
        let items_seq = models.catalog.last_seq();
        Ok(Self {
            replayer: Replayer::new(models, device)?,
            read,
            seq,
            items_seq,
            rewards,
            version: 0,
            view_size,
            rerank,
            last_impression: None,
        })
    }

    /// Learns `event` as the next message of the stream.
    pub fn learn(&mut self, event: &Event) -> Result<Outcome, RerankError> {
        self.seq += 1;
        self.replayer.apply_event(self.seq, event)
    }

    /// Learns a catalog upsert as the next message of the items stream.
    pub fn upsert_item(&mut self, item: Item) -> Outcome {
        self.items_seq += 1;
        self.replayer.apply_item(self.items_seq, item)
    }

    /// The answer to `request` from everything learned so far; its impression is learned
    /// as the next message.
    pub async fn recommend(
        &mut self,
        request: &RecommendRequest,
    ) -> Result<Vec<RankedItem>, RerankError> {
        let models = self.publish()?;
        let inputs = RankInputs {
            models: &models,
            catalog: &models.read,
            request,
            seen: SessionSeen::of(&models.read, &request.session_id),
            // The stream's clock: availability windows are judged on event time here.
            now_ms: models.popularity.as_of,
        };
        let scorer = self.rerank.then_some(&InlineScorer);
        let ranking = rank(&inputs, &ExactIntent(&models.read), scorer, &mut |_| {}).await;
        if let Some(error) = ranking.rerank_error {
            return Err(error);
        }
        if !ranking.shown.is_empty() {
            self.seq += 1;
            let impression = Impression {
                rec_id: request.rec_id.clone(),
                session_id: request.session_id.clone(),
                user_id: request.user_id.clone(),
                ts: models.popularity.as_of,
                model_version: models.version.to_string(),
                items: ranking.shown,
                traceparent: None,
                logged: Some(feature_log(&models)),
            };
            self.replayer.apply_impression(self.seq, &impression);
            self.last_impression = Some((self.seq, impression));
        }
        Ok(ranking.items)
    }

    /// A published version of everything learned so far.
    fn publish(&mut self) -> Result<ServingModels, RerankError> {
        let rewards = self.replayer.models().counters().rewards;
        self.replayer
            .catch_up(&mut self.read, rewards != self.rewards);
        self.rewards = rewards;
        self.version += 1;
        let reranker = self.replayer.serving_reranker()?;
        let models = self.replayer.models();
        Ok(ServingModels {
            version: self.version,
            name: None,
            popularity: models.popularity_view(self.view_size),
            read: self.read.clone(),
            reranker,
            counters: models.counters(),
            training: RerankerProgress::of(models),
            as_of: position_of(models),
        })
    }

    /// The last impression learned (its stream sequence and itself): what a live engine
    /// would have published for its last answer.
    pub fn last_impression(&self) -> Option<&(u64, Impression)> {
        self.last_impression.as_ref()
    }

    pub fn models(&self) -> &OnlineModels {
        self.replayer.models()
    }
}
