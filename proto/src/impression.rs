//! Impressions: what a recommendation showed, with the propensities and the features the
//! bandit used. The engine publishes one per answered request onto the event stream, so a
//! later event carrying the `rec_id` is attributed to that decision in stream order, and a
//! replay of the stream re-learns exactly what the live run learned.

use serde::{Deserialize, Serialize};

use crate::logged_features::{FeatureLog, PackedFeatures};
use crate::timestamp::EpochMillis;
use crate::validation::{Reason, ValidationError, parse_object};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShownItem {
    pub item_id: String,
    /// 0-based slot.
    pub position: u32,
    /// Probability with which the policy put this item in this slot.
    pub propensity: f64,
    /// The bandit's context for this item, as used for the decision.
    pub features: Vec<f64>,
    /// The re-ranker's input vector for this item, exactly as served (see
    /// [`Impression::logged`] for its layout); absent for a pinned item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidate_features: Option<PackedFeatures>,
    /// The re-ranker's score of this item, when one scored it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerank_score: Option<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Impression {
    pub rec_id: String,
    pub session_id: String,
    /// The user the request named, if any: a reward must come from them too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    pub ts: EpochMillis,
    pub model_version: String,
    pub items: Vec<ShownItem>,
    /// The W3C `traceparent` of the request that served it, so a trace reaches the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The layout of the items' `candidate_features` and the version that computed them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logged: Option<FeatureLog>,
}

impl Impression {
    pub fn from_json(bytes: &[u8]) -> Result<Self, ValidationError> {
        let object = parse_object(bytes)?;
        let impression: Impression = serde_json::from_value(serde_json::Value::Object(object))
            .map_err(|e| ValidationError::payload(Reason::InvalidJson(e.to_string())))?;
        let bad_number = impression
            .items
            .iter()
            .any(|i| !i.propensity.is_finite() || i.features.iter().any(|f| !f.is_finite()))
            || impression
                .items
                .iter()
                .any(|i| i.rerank_score.is_some_and(|s| !s.is_finite()));
        if bad_number {
            return Err(ValidationError::new("items", Reason::NonFinite));
        }
        if impression.rec_id.is_empty() {
            return Err(ValidationError::new("rec_id", Reason::Empty));
        }
        Ok(impression)
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let imp = Impression {
            user_id: None,
            rec_id: "r".into(),
            session_id: "s".into(),
            ts: 1_700_000_000_000,
            model_version: "v".into(),
            items: vec![ShownItem {
                item_id: "a".into(),
                position: 0,
                propensity: 1.0,
                features: vec![1.0, 0.5],
                candidate_features: Some(PackedFeatures(vec![0.1, -0.0, f32::MIN_POSITIVE])),
                rerank_score: Some(0.75),
            }],
            traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
            logged: Some(FeatureLog {
                set: "candidates.v2".into(),
                as_of: crate::StreamPosition {
                    events_seq: 41,
                    items_seq: 3,
                },
            }),
        };
        assert_eq!(Impression::from_json(&imp.to_json()), Ok(imp));
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(Impression::from_json(b"{\"rec_id\": 3}").is_err());
    }
}
