//! Spawns a session actor on a session's first event, restarts one that fails, and stops
//! sessions that are idle past their TTL or, past the cap on live sessions, least recently
//! used first.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::rpc::CallResult;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use streamrec_learner::SessionHistory;
use streamrec_proto::Event;

use crate::learner::LearnerMsg;
use crate::session::{SessionActor, SessionMsg, SessionSeed};
use crate::shared::Shared;

pub enum SessionSupervisorMsg {
    /// Events in stream order; each goes to its session's actor.
    Route(Vec<Event>),
    /// Stop sessions idle for longer than the TTL.
    Sweep,
    LiveCount(RpcReplyPort<usize>),
}

#[derive(Clone)]
pub struct SessionSupervisorArgs {
    pub shared: Arc<Shared>,
    pub idle_ttl: Duration,
    pub max_sessions: usize,
    pub session_capacity: usize,
}

struct Live {
    actor: ActorRef<SessionMsg>,
    /// Position in the recency order (`by_recency` key).
    tick: u64,
    last_active: Instant,
}

pub struct SessionSupervisorState {
    args: SessionSupervisorArgs,
    live: HashMap<String, Live>,
    /// Least recently active first.
    by_recency: BTreeMap<u64, String>,
    by_actor: HashMap<ActorId, String>,
    next_tick: u64,
}

impl SessionSupervisorState {
    fn touch(&mut self, session_id: &str) {
        self.next_tick += 1;
        if let Some(live) = self.live.get_mut(session_id) {
            self.by_recency.remove(&live.tick);
            live.tick = self.next_tick;
            live.last_active = Instant::now();
            self.by_recency.insert(live.tick, session_id.to_owned());
        }
    }

    async fn spawn(
        &mut self,
        myself: &ActorRef<SessionSupervisorMsg>,
        session_id: &str,
        history: Option<SessionHistory>,
    ) -> Result<ActorRef<SessionMsg>, ActorProcessingErr> {
        let seed = SessionSeed {
            capacity: self.args.session_capacity,
            history,
        };
        let (actor, _) = Actor::spawn_linked(None, SessionActor, seed, myself.get_cell()).await?;
        self.next_tick += 1;
        self.by_actor.insert(actor.get_id(), session_id.to_owned());
        self.by_recency
            .insert(self.next_tick, session_id.to_owned());
        self.live.insert(
            session_id.to_owned(),
            Live {
                actor: actor.clone(),
                tick: self.next_tick,
                last_active: Instant::now(),
            },
        );
        self.args
            .shared
            .sessions
            .insert(session_id.to_owned(), actor.clone());
        Ok(actor)
    }

    /// Forgets a session and stops its actor.
    fn stop(&mut self, session_id: &str) {
        if let Some(live) = self.live.remove(session_id) {
            self.by_recency.remove(&live.tick);
            self.by_actor.remove(&live.actor.get_id());
            self.args.shared.sessions.remove(session_id);
            live.actor.stop(Some("evicted".to_owned()));
            self.args.shared.stats.sessions_evicted(1);
        }
    }

    fn least_recent(&self) -> Option<String> {
        self.by_recency.first_key_value().map(|(_, s)| s.clone())
    }

    fn evict_over_cap(&mut self) {
        while self.live.len() > self.args.max_sessions {
            let Some(oldest) = self.least_recent() else {
                break;
            };
            self.stop(&oldest);
        }
    }

    fn sweep(&mut self) {
        while let Some(oldest) = self.least_recent() {
            match self.live.get(&oldest) {
                Some(live) if live.last_active.elapsed() < self.args.idle_ttl => break,
                Some(_) => self.stop(&oldest),
                // Every ordered entry belongs to a live session; never spin on one that doesn't.
                None => {
                    self.by_recency.pop_first();
                }
            }
        }
    }
}

pub struct SessionSupervisor;

impl Actor for SessionSupervisor {
    type Msg = SessionSupervisorMsg;
    type State = SessionSupervisorState;
    type Arguments = SessionSupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let sweep_every = (args.idle_ttl / 4).max(Duration::from_millis(10));
        myself.send_interval(sweep_every, || SessionSupervisorMsg::Sweep);
        // Sessions of a previous incarnation of this supervisor died with it.
        args.shared.sessions.clear();
        Ok(SessionSupervisorState {
            args,
            live: HashMap::new(),
            by_recency: BTreeMap::new(),
            by_actor: HashMap::new(),
            next_tick: 0,
        })
    }

    /// Rebuilds the sessions the learner remembers (after a restore: as of the snapshot),
    /// most recent last, so the replay that follows continues their histories.
    async fn post_start(
        &self,
        myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let Some(learner) = state.args.shared.learner.load_full() else {
            return Ok(());
        };
        let histories = match learner
            .call(LearnerMsg::SessionHistories, Some(Duration::from_secs(30)))
            .await
        {
            Ok(CallResult::Success(histories)) => histories,
            _ => {
                tracing::warn!("the learner gave no session histories; sessions start empty");
                return Ok(());
            }
        };
        let skip = histories.len().saturating_sub(state.args.max_sessions);
        let mut seeded = 0;
        for (session_id, history) in histories.into_iter().skip(skip) {
            if history.events() > 0 {
                state.spawn(&myself, &session_id, Some(history)).await?;
                seeded += 1;
            }
        }
        if seeded > 0 {
            tracing::info!(
                seeded,
                "session actors rebuilt from the learner's histories"
            );
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SessionSupervisorMsg::Route(events) => {
                let mut groups: Vec<(String, Vec<Event>)> = Vec::new();
                for event in events {
                    match groups.iter_mut().find(|(s, _)| *s == event.session_id) {
                        Some((_, batch)) => batch.push(event),
                        None => groups.push((event.session_id.clone(), vec![event])),
                    }
                }
                for (session_id, batch) in groups {
                    let actor = match state.live.get(&session_id) {
                        Some(live) => live.actor.clone(),
                        None => state.spawn(&myself, &session_id, None).await?,
                    };
                    state.touch(&session_id);
                    if let Err(e) = actor.cast(SessionMsg::Apply(batch)) {
                        tracing::warn!(session_id, error = %e, "session actor gone; events dropped from its history");
                    }
                }
                state.evict_over_cap();
            }
            SessionSupervisorMsg::Sweep => state.sweep(),
            SessionSupervisorMsg::LiveCount(reply) => {
                let _ = reply.send(state.live.len());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<Self::Msg>,
        event: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        // A failed session is restarted, empty, under the same id; the others are untouched.
        // Its history comes back from the stream once snapshots and replay exist.
        if let SupervisionEvent::ActorFailed(cell, error) = event {
            let Some(session_id) = state.by_actor.get(&cell.get_id()).cloned() else {
                return Ok(());
            };
            tracing::warn!(session_id, %error, "session actor failed; restarting it");
            if let Some(live) = state.live.remove(&session_id) {
                state.by_recency.remove(&live.tick);
            }
            state.by_actor.remove(&cell.get_id());
            state.spawn(&myself, &session_id, None).await?;
            state.args.shared.stats.session_restarts(1);
        }
        Ok(())
    }
}
