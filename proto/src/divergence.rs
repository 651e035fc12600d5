//! A node whose learners differ from the cluster's at the same stream sequence: what
//! `streamrec.alerts.divergence` carries. Every node learns the whole stream, so their
//! states at one sequence must be byte-identical; a difference is a bug or a node on
//! another configuration or build, and is never silent.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DivergenceAlert {
    /// The events-stream sequence both states are at.
    pub seq: u64,
    /// The node that found its state different.
    pub node: String,
    /// The node whose digest was recorded first at that sequence.
    pub reference_node: String,
    /// The learners whose state differs.
    pub learners: Vec<String>,
}

impl DivergenceAlert {
    /// The bus's de-duplication id: one alert per node and sequence.
    pub fn msg_id(&self) -> String {
        format!("divergence:{}:{}", self.seq, self.node)
    }
}
