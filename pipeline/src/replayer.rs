//! The learners and the re-ranker's training, driven by hand in stream order: what the
//! learner actor does, for offline replays (`streamrec train` and `evaluate`, the crash
//! test's reference run, benchmarks). The re-ranker steps inline here; the actor hands the
//! same batches to a trainer thread, so the weights after batch n are the same either way.

use std::sync::Arc;

use streamrec_learner::ReadSide;
use streamrec_learner::online::{NamedTensor, OnlineModels, Outcome};
use streamrec_proto::{Event, Impression, Item};
use streamrec_ranker::{ComputeDevice, RerankError, RerankTrainer, Reranker};

use crate::published::{reranker_config, serving_reranker, to_weights};

pub struct Replayer {
    models: OnlineModels,
    trainer: RerankTrainer,
    device: ComputeDevice,
    /// The serving copy of the weights and the step count it was built at.
    serving: Option<(u64, Arc<Reranker>)>,
}

impl Replayer {
    pub fn new(models: OnlineModels, device: ComputeDevice) -> Result<Self, RerankError> {
        let trainer = RerankTrainer::new(
            reranker_config(),
            &to_weights(&models.reranker.weights),
            device,
        )?;
        Ok(Self {
            models,
            trainer,
            device,
            serving: None,
        })
    }

    pub fn apply_event(&mut self, seq: u64, event: &Event) -> Result<Outcome, RerankError> {
        let outcome = self.models.apply_event(seq, event);
        self.train()?;
        Ok(outcome)
    }

    pub fn apply_impression(&mut self, seq: u64, impression: &Impression) -> Outcome {
        self.models.apply_impression(seq, impression)
    }

    /// A user's erasure at events-stream sequence `seq`.
    pub fn apply_user_erasure(&mut self, seq: u64, user_id: &str) -> Outcome {
        self.models.apply_user_erasure(seq, user_id)
    }

    /// A catalog upsert at items-stream sequence `seq` (a stream of its own).
    pub fn apply_item(&mut self, seq: u64, item: Item) -> Outcome {
        self.models.apply_item(seq, item)
    }

    fn train(&mut self) -> Result<(), RerankError> {
        let group_len = self.models.config().replay.group_len();
        while let Some(batch) = self.models.reranker.next_batch() {
            let (weights, loss) = train_batch(&mut self.trainer, &batch, group_len)?;
            self.models.reranker.trained(weights, Some(loss));
        }
        Ok(())
    }

    /// Brings `read` up to the learners (what the learner actor does when it publishes);
    /// the embedding rows whose vector moved, `None` for all.
    pub fn catch_up(&mut self, read: &mut ReadSide, bandit_changed: bool) -> Option<Vec<u32>> {
        read.catch_up(&mut self.models, bandit_changed)
    }

    /// The re-ranker's serving copy as of the last step, rebuilt only when it has stepped.
    pub fn serving_reranker(&mut self) -> Result<Option<Arc<Reranker>>, RerankError> {
        let steps = self.models.reranker.steps;
        if let Some((at, reranker)) = &self.serving
            && *at == steps
        {
            return Ok(Some(Arc::clone(reranker)));
        }
        let reranker = serving_reranker(&self.models, self.device)?;
        self.serving = reranker.as_ref().map(|r| (steps, Arc::clone(r)));
        Ok(reranker)
    }

    pub fn models(&self) -> &OnlineModels {
        &self.models
    }

    pub fn into_models(self) -> OnlineModels {
        self.models
    }
}

/// One SGD step on a batch of training groups; the weights after it, and its loss.
pub fn train_batch(
    trainer: &mut RerankTrainer,
    batch: &[f32],
    group_len: usize,
) -> Result<(Vec<NamedTensor>, f32), RerankError> {
    let loss = trainer.step(batch, group_len)?;
    let weights = trainer
        .weights()
        .into_iter()
        .map(|(name, shape, values)| NamedTensor {
            name,
            shape,
            values,
        })
        .collect();
    Ok((weights, loss))
}
