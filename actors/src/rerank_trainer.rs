//! The re-ranker's trainer, on a thread of its own: it takes the batches the learner cuts
//! from the stream, in stream order, and steps the model, so the learner's apply path never
//! waits for a gradient step. The batches do not depend on the weights, so the weights
//! after batch n are the same whether training runs here, inline, or in an offline replay.
//!
//! The learner waits for it in one place only: a snapshot asks for the weights at the
//! batch count of the state it exports, and the trainer answers once it has got there.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use arc_swap::ArcSwapOption;
use streamrec_learner::online::NamedTensor;
use streamrec_ranker::{ComputeDevice, RerankError, RerankTrainer, Reranker, RerankerConfig};

use streamrec_pipeline::{reranker_config, to_weights, train_batch};

/// Batches waiting for the trainer before the learner is held back: past it, learning
/// slows to the trainer's pace instead of queueing without bound.
const QUEUE: usize = 256;

/// The weights after a number of steps.
#[derive(Debug, Clone)]
pub struct Trained {
    pub steps: u64,
    pub weights: Vec<NamedTensor>,
    pub loss: Option<f32>,
}

enum TrainerMsg {
    Batch(Vec<f32>),
    /// Answer once every batch sent before this one is trained.
    Sync(tokio::sync::oneshot::Sender<Trained>),
}

pub struct TrainerHandle {
    tx: Option<SyncSender<TrainerMsg>>,
    serving: Arc<ArcSwapOption<Reranker>>,
    /// The serving copy's last training loss, as f32 bits (NaN: none yet).
    loss: Arc<AtomicU32>,
    thread: Option<JoinHandle<()>>,
}

struct Worker {
    trainer: RerankTrainer,
    config: RerankerConfig,
    device: ComputeDevice,
    group_len: usize,
    trained: Trained,
    serving: Arc<ArcSwapOption<Reranker>>,
    loss: Arc<AtomicU32>,
}

impl Worker {
    fn step(&mut self, batch: &[f32]) {
        self.trained.steps += 1;
        match train_batch(&mut self.trainer, batch, self.group_len) {
            Ok((mut weights, loss)) => {
                weights.sort_by(|a, b| a.name.cmp(&b.name));
                self.trained.weights = weights;
                self.trained.loss = Some(loss);
                metrics::gauge!("streamrec_reranker_loss").set(f64::from(loss));
                metrics::counter!("streamrec_reranker_steps_total").increment(1);
            }
            // Deterministic too: a replay of the same batch fails the same way.
            Err(error) => tracing::error!(%error, "re-ranker training step failed; batch skipped"),
        }
    }

    /// A new serving copy of the weights, for the request path.
    fn publish(&self) {
        if self.trained.weights.is_empty() {
            return;
        }
        match Reranker::from_weights(
            &self.config,
            &to_weights(&self.trained.weights),
            self.device,
            self.trained.steps,
        ) {
            Ok(reranker) => {
                self.serving.store(Some(Arc::new(reranker)));
                let loss = self.trained.loss.unwrap_or(f32::NAN);
                self.loss.store(loss.to_bits(), Ordering::Relaxed);
            }
            Err(error) => tracing::warn!(%error, "re-ranker not served"),
        }
    }

    fn run(mut self, rx: Receiver<TrainerMsg>) {
        while let Ok(first) = rx.recv() {
            let mut next = Some(first);
            let mut stepped = false;
            // Everything queued, then one serving copy: under load the trainer catches up
            // instead of building a copy per step.
            while let Some(message) = next.take() {
                match message {
                    TrainerMsg::Batch(batch) => {
                        self.step(&batch);
                        stepped = true;
                    }
                    TrainerMsg::Sync(reply) => {
                        let _ = reply.send(self.trained.clone());
                    }
                }
                next = rx.try_recv().ok();
            }
            if stepped {
                self.publish();
            }
        }
    }
}

impl TrainerHandle {
    /// A trainer starting from `start` (the restored weights), on `device`.
    pub fn start(
        start: Trained,
        group_len: usize,
        device: ComputeDevice,
    ) -> Result<Self, RerankError> {
        let config = reranker_config();
        let trainer = RerankTrainer::new(config.clone(), &to_weights(&start.weights), device)?;
        let serving = Arc::new(ArcSwapOption::empty());
        let loss = Arc::new(AtomicU32::new(f32::NAN.to_bits()));
        let worker = Worker {
            trainer,
            config,
            device,
            group_len,
            trained: start,
            serving: Arc::clone(&serving),
            loss: Arc::clone(&loss),
        };
        worker.publish();
        let (tx, rx) = sync_channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("rerank-trainer".to_owned())
            .spawn(move || {
                crate::background::lower_priority();
                worker.run(rx)
            })
            .map_err(|e| RerankError::Runtime(format!("cannot start the trainer thread: {e}")))?;
        Ok(Self {
            tx: Some(tx),
            serving,
            loss,
            thread: Some(thread),
        })
    }

    /// Queues a batch; blocks only while the queue is full.
    pub fn train(&self, batch: Vec<f32>) {
        if let Some(tx) = &self.tx
            && tx.send(TrainerMsg::Batch(batch)).is_err()
        {
            tracing::error!("re-ranker trainer stopped; batch dropped");
        }
    }

    /// The weights once every batch queued so far is trained.
    pub async fn sync(&self) -> Option<Trained> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.tx.as_ref()?.send(TrainerMsg::Sync(reply)).ok()?;
        answer.await.ok()
    }

    /// The latest serving copy of the weights.
    pub fn serving(&self) -> Option<Arc<Reranker>> {
        self.serving.load_full()
    }

    /// The training loss of the step behind the latest serving copy.
    pub fn last_loss(&self) -> Option<f32> {
        Some(f32::from_bits(self.loss.load(Ordering::Relaxed))).filter(|l| !l.is_nan())
    }
}

impl Drop for TrainerHandle {
    fn drop(&mut self) {
        // Closing the queue ends the thread after what it holds.
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
