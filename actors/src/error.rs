//! Errors of the actor layer.

/// A failure talking to the bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to NATS at {}: {source}", crate::bus::redact_url(url))]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("NATS credentials or TLS: {0}")]
    Security(String),
    #[error("not a NATS server address: {address:?} ({message})")]
    BadServer { address: String, message: String },
    #[error("JetStream {operation} failed: {message}")]
    JetStream {
        operation: &'static str,
        message: String,
    },
    #[error("publish to {subject} failed: {message}")]
    Publish { subject: String, message: String },
    #[error("the bus is closed")]
    Closed,
    /// The embedded bus's log on disk failed (the detail is logged, not shown to clients).
    #[error("the bus log cannot be {0}")]
    Log(&'static str),
}

impl BusError {
    pub(crate) fn jetstream(operation: &'static str, err: impl std::fmt::Display) -> Self {
        BusError::JetStream {
            operation,
            message: err.to_string(),
        }
    }
}

/// A failure of the engine as a whole.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error("cannot start actor {actor}: {message}")]
    Spawn {
        actor: &'static str,
        message: String,
    },
    #[error("actor {actor} did not answer: {message}")]
    Unavailable {
        actor: &'static str,
        message: String,
    },
    #[error("no model version {0}")]
    UnknownVersion(String),
    #[error("model version {version} cannot be loaded: {message}")]
    BadVersion { version: String, message: String },
}
