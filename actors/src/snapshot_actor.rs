//! The snapshot actor: writes a snapshot of the learners periodically and on demand.

use std::sync::Arc;
use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use crate::bus::Bus;
use crate::counters::Counters;
use crate::learner::LearnerMsg;
use crate::snapshot::{Manifest, SnapshotStore};

/// Longest wait for the learner's copy of its state.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(60);

pub enum SnapshotMsg {
    /// Write one now and answer with its manifest.
    Take(RpcReplyPort<Result<Manifest, String>>),
    /// The periodic trigger.
    Tick,
}

#[derive(Clone)]
pub struct SnapshotArgs {
    /// The learner whose state is written (this actor restarts with it).
    pub learner: ActorRef<LearnerMsg>,
    /// Where snapshots are written; `None`: disabled.
    pub store: Option<SnapshotStore>,
    pub counters: Arc<Counters>,
    pub bus: Arc<dyn Bus>,
    pub interval: Option<Duration>,
}

pub struct SnapshotActor;

async fn take(args: &SnapshotArgs) -> Result<Manifest, String> {
    let store = args
        .store
        .clone()
        .ok_or("snapshots are disabled: start with a data directory")?;
    let bus = &args.bus;
    let models = match args
        .learner
        .call(LearnerMsg::Export, Some(EXPORT_TIMEOUT))
        .await
    {
        Ok(CallResult::Success(models)) => models,
        Ok(_) | Err(_) => return Err("the learner did not hand over its state".to_owned()),
    };
    let writer = store.clone();
    let manifest = tokio::task::spawn_blocking(move || writer.write(&models))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| {
            // In full for the operator; the answer to a client carries no server path.
            tracing::error!(error = %e, "snapshot write failed");
            e.public_message()
        })?;
    // Beside the bus too (on NATS: the object store), so a node with an empty disk can start
    // from it. Local disk is the source of truth; a failed copy is logged, not fatal.
    let mut files: Vec<String> = manifest.learners.values().map(|f| f.file.clone()).collect();
    files.push(crate::snapshot::MANIFEST.to_owned());
    if let Err(error) = bus
        .store_snapshot(
            &store.path(&manifest.version),
            manifest.version.as_str(),
            &files,
        )
        .await
    {
        tracing::warn!(%error, version = %manifest.version, "snapshot not copied to the bus");
    }
    args.counters.snapshots_written(1);
    tracing::info!(
        version = %manifest.version,
        seq = manifest.last_seq(),
        "snapshot written"
    );
    Ok(manifest)
}

pub struct SnapshotState {
    args: SnapshotArgs,
    /// When the last snapshot finished: ticks that queued up while one was being written
    /// are dropped instead of writing snapshots back to back (a slow write would otherwise
    /// keep the mailbox growing, and an on-demand request would wait behind all of them).
    last_done: std::time::Instant,
}

impl Actor for SnapshotActor {
    type Msg = SnapshotMsg;
    type State = SnapshotState;
    type Arguments = SnapshotArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        if let (Some(interval), Some(_)) = (args.interval, &args.store) {
            myself.send_interval(interval, || SnapshotMsg::Tick);
        }
        Ok(SnapshotState {
            args,
            last_done: std::time::Instant::now(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let args = &state.args;
        match message {
            SnapshotMsg::Take(reply) => {
                let _ = reply.send(take(args).await);
                state.last_done = std::time::Instant::now();
            }
            SnapshotMsg::Tick => {
                let interval = args.interval.unwrap_or_default();
                // Half: a tick comes every interval, and the snapshot before it took time,
                // so a full interval would skip every other tick. An on-demand snapshot
                // within the last half still stands in for the periodic one.
                if state.last_done.elapsed() < interval / 2 {
                    return Ok(());
                }
                if let Err(error) = take(args).await {
                    tracing::warn!(%error, "periodic snapshot failed");
                }
                state.last_done = std::time::Instant::now();
            }
        }
        Ok(())
    }
}
