//! The intent index's refresher: a background thread that keeps the index in step with the
//! embeddings of each published version.

use std::sync::Arc;
use std::time::Duration;

use streamrec_ranker::HnswParams;

use crate::serving::ServingState;

/// A rebuild takes a core for its whole length; after one that took T, the next waits at
/// least this many times T, so rebuilding holds at most about a tenth of a core however
/// large the catalog grows.
const REBUILD_PACING: u32 = 10;

/// Keeps the serving state's intent index in step with the live embeddings until the engine stops:
/// changed vectors every `every`; a graph rebuild at most every `rebuild_every`, and no
/// sooner than [`REBUILD_PACING`] times the last one's length (the delta is searched exactly
/// meanwhile, so answers stay fresh; a rebuild only restores speed).
pub fn spawn_refresher(
    serving: Arc<ServingState>,
    every: Duration,
    rebuild_every: Duration,
    params: HnswParams,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let thread = match crate::background::BackgroundThread::spawn("streamrec-intent-index") {
            Ok(thread) => thread,
            Err(error) => {
                tracing::error!(%error, "cannot start the intent index refresher");
                return;
            }
        };
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_rebuild = std::time::Instant::now();
        let mut rebuild_gap = rebuild_every;
        loop {
            tick.tick().await;
            let serving = Arc::clone(&serving);
            let rebuild = last_rebuild.elapsed() >= rebuild_gap;
            let started = std::time::Instant::now();
            let done = thread
                .run(move || {
                    serving.intent_index.sync(&serving.models, params);
                    serving.intent_index.grow();
                    rebuild && serving.intent_index.rebuild_if_wanted()
                })
                .await;
            match done {
                Some(true) => {
                    last_rebuild = std::time::Instant::now();
                    rebuild_gap = rebuild_every.max(started.elapsed() * REBUILD_PACING);
                    tracing::debug!(took = ?started.elapsed(), next_in = ?rebuild_gap, "intent index rebuilt");
                }
                Some(false) => {}
                None => {
                    tracing::error!("intent index refresh panicked; retrying at the next tick")
                }
            }
        }
    })
}
