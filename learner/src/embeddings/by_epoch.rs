//! Vectors by epoch: with `epoch = N`, an epoch's events are trained on a second copy of the
//! model, on another thread, while the next epoch's events are learned; the copy that is read
//! (and snapshotted) takes the rows that training moved when that next epoch ends. The same
//! discipline as co-visitation's lists by epoch (`covisit::Deferred`): what is read lags the
//! stream by N to 2N events, the same lag on every replay, restart and node.
//!
//! The training copy is derived state: it always equals the read copy with the pending
//! epoch trained on top, so a snapshot keeps the read copy and the observations that wait,
//! never the copy, and never waits for the thread.

use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::ItemEmbeddings;

/// One event's input to item2vec: the item and the session's previous items, most recent
/// first (at most the window).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation(pub String, pub Vec<String>);

/// What waits to be learned: the epoch being trained on the copy (read once the epoch under
/// way ends), and the epoch under way.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Deferred {
    #[serde(default, skip_serializing_if = "pending_is_empty")]
    pub pending: Arc<Vec<Observation>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub open: Vec<Observation>,
}

fn pending_is_empty(pending: &Arc<Vec<Observation>>) -> bool {
    pending.is_empty()
}

impl Deferred {
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.open.is_empty()
    }
}

/// Rows a training copy's steps moved since it was last installed.
#[derive(Debug, Clone, Default)]
pub struct Touched {
    pub input: Vec<u32>,
    pub output: Vec<u32>,
}

/// Bookkeeping of the training copy, not model state: never compared.
#[derive(Debug, Clone, Default)]
pub struct TouchedRows(pub Option<Touched>);

impl PartialEq for TouchedRows {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// The training copy and the epoch it has still to train (whoever takes the lock first
/// trains it, so the copy is the same whether the thread or the learner got there first).
#[derive(Debug)]
pub struct Training {
    pub model: ItemEmbeddings,
    pub todo: Option<Arc<Vec<Observation>>>,
}

impl Training {
    /// Trains what it was handed, then leaves the rows it moved sorted and distinct (here,
    /// on the training thread, not in the learner's install).
    pub fn catch_up(&mut self) {
        if let Some(todo) = self.todo.take() {
            for Observation(item, previous) in todo.iter() {
                self.model.learn(item, previous);
            }
            if let Some(touched) = &mut self.model.touched.0 {
                distinct(&mut touched.input);
                distinct(&mut touched.output);
            }
        }
    }
}

/// The training copy, once made. A clone (a checkpoint's copy) starts without one and
/// makes its own from its read copy and what waits, when it next ends an epoch.
#[derive(Debug, Default)]
pub struct Shadow(pub Option<Arc<Mutex<Training>>>);

impl Clone for Shadow {
    fn clone(&self) -> Self {
        Self(None)
    }
}

impl PartialEq for Shadow {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// The copy, poisoned or not: the learner checks for a panicked training before it installs
/// (`ItemEmbeddings::close_epoch`), and a thread that finds it poisoned trains nothing wrong
/// (what it trains is dropped with the copy).
pub fn lock(training: &Mutex<Training>) -> MutexGuard<'_, Training> {
    training.lock().unwrap_or_else(|p| p.into_inner())
}

fn distinct(rows: &mut Vec<u32>) {
    rows.sort_unstable();
    rows.dedup();
}
