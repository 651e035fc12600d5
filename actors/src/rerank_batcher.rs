//! Micro-batched re-ranker inference: concurrent requests' candidates are scored in one
//! forward pass. One worker thread takes the first waiting request, then whatever else is
//! queued (up to `max_rows` rows, waiting at most `max_wait` for more), groups them by
//! model version, and answers each.

use std::sync::Arc;
use std::time::{Duration, Instant};

use streamrec_pipeline::Scorer;
use streamrec_ranker::{RerankError, Reranker};
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, Clone, Copy)]
pub struct BatcherConfig {
    /// Most candidate rows in one forward pass.
    pub max_rows: usize,
    /// Longest the worker waits for more requests once it holds one.
    pub max_wait: Duration,
    /// Requests that may queue before callers wait for room.
    pub queue: usize,
}

impl Default for BatcherConfig {
    fn default() -> Self {
        Self {
            max_rows: 4_096,
            max_wait: Duration::from_micros(200),
            queue: 1_024,
        }
    }
}

struct Job {
    model: Arc<Reranker>,
    features: Vec<f32>,
    reply: oneshot::Sender<Result<Vec<f32>, RerankError>>,
}

#[derive(Clone)]
pub struct RerankBatcher {
    jobs: mpsc::Sender<Job>,
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(transparent)]
    Rerank(#[from] RerankError),
    #[error("the re-ranker worker has stopped")]
    Stopped,
}

impl RerankBatcher {
    /// Starts the worker thread; it ends when every handle is dropped.
    pub fn start(config: BatcherConfig) -> Self {
        let (jobs, rx) = mpsc::channel(config.queue.max(1));
        let spawned = std::thread::Builder::new()
            .name("rerank-batcher".to_owned())
            .spawn(move || run(rx, config));
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the re-ranker worker; requests fall back to stage-one order");
        }
        Self { jobs }
    }
}

impl Scorer for RerankBatcher {
    type Error = BatchError;

    /// Scores `features` (rows of `model.inputs()` values) with `model`, batched with
    /// whatever else is being scored.
    async fn score(
        &self,
        model: Arc<Reranker>,
        features: Vec<f32>,
    ) -> Result<Vec<f32>, BatchError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job {
                model,
                features,
                reply,
            })
            .await
            .map_err(|_| BatchError::Stopped)?;
        Ok(answer.await.map_err(|_| BatchError::Stopped)??)
    }
}

fn run(mut rx: mpsc::Receiver<Job>, config: BatcherConfig) {
    while let Some(first) = rx.blocking_recv() {
        let mut rows = first.features.len() / first.model.inputs().max(1);
        let mut batch = vec![first];
        let deadline = Instant::now() + config.max_wait;
        while rows < config.max_rows {
            match rx.try_recv() {
                Ok(job) => {
                    rows += job.features.len() / job.model.inputs().max(1);
                    batch.push(job);
                }
                Err(mpsc::error::TryRecvError::Empty) if Instant::now() < deadline => {
                    std::thread::yield_now();
                }
                Err(_) => break,
            }
        }
        metrics::histogram!("streamrec_rerank_batch_requests").record(batch.len() as f64);
        score_batch(batch);
    }
}

/// One forward pass per model version in the batch.
fn score_batch(mut batch: Vec<Job>) {
    while let Some(lead) = batch.first().map(|j| Arc::clone(&j.model)) {
        let (same, rest): (Vec<Job>, Vec<Job>) = batch
            .into_iter()
            .partition(|j| Arc::ptr_eq(&j.model, &lead));
        batch = rest;
        let lengths: Vec<usize> = same.iter().map(|j| j.features.len()).collect();
        let all: Vec<f32> = same
            .iter()
            .flat_map(|j| j.features.iter().copied())
            .collect();
        let inputs = lead.inputs().max(1);
        match lead.score(&all) {
            Ok(scores) => {
                let mut at = 0;
                for (job, len) in same.into_iter().zip(lengths) {
                    let n = len / inputs;
                    let part = scores.get(at..at + n).map(<[f32]>::to_vec);
                    at += n;
                    let _ = job
                        .reply
                        .send(part.ok_or(RerankError::Shape { got: len, inputs }));
                }
            }
            Err(error) => {
                for job in same {
                    let _ = job.reply.send(Err(error.clone()));
                }
            }
        }
    }
}
