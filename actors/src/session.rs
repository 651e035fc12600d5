//! One actor per live session: owns the session's history and answers reads of it.

use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use streamrec_learner::SessionHistory;
use streamrec_proto::Event;

pub enum SessionMsg {
    /// Events of this session, in stream order.
    Apply(Vec<Event>),
    /// The current history: a shared copy, cloned only when the next event changes it.
    Read(RpcReplyPort<Arc<SessionHistory>>),
    /// Fault injection for the supervision tests.
    #[cfg(test)]
    Panic,
}

pub struct SessionActor;

/// How a session actor starts: empty, or with a history rebuilt from the stream.
pub struct SessionSeed {
    /// Most items remembered per session.
    pub capacity: usize,
    pub history: Option<SessionHistory>,
}

impl Actor for SessionActor {
    type Msg = SessionMsg;
    type State = Arc<SessionHistory>;
    type Arguments = SessionSeed;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        seed: SessionSeed,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(Arc::new(
            seed.history
                .unwrap_or_else(|| SessionHistory::new(seed.capacity)),
        ))
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        history: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            SessionMsg::Apply(events) => {
                let history = Arc::make_mut(history);
                for event in &events {
                    history.apply(event);
                }
            }
            SessionMsg::Read(reply) => {
                // The reader may have timed out; nothing to do then.
                let _ = reply.send(Arc::clone(history));
            }
            #[cfg(test)]
            SessionMsg::Panic => panic!("injected session fault"),
        }
        Ok(())
    }
}
