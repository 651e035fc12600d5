//! Bodies of the HTTP API.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `202` answer to `POST /v1/events` and `POST /v1/items`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    pub accepted: usize,
}

/// `202` answer to `DELETE /v1/items/{id}` and `DELETE /v1/users/{id}`: the deletion is on
/// the bus, and applies at its place in the stream (on every node, in every replay).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DeletionAccepted {
    /// `item` or `user`.
    pub kind: String,
    pub id: String,
}

/// One recommended item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Recommendation {
    pub item_id: String,
    /// Final score: the re-ranker's (plus any boost), or stage one's without a re-ranker.
    pub score: f64,
    /// Probability with which the bandit showed this item at this position.
    pub propensity: f64,
    /// With `explain=true`: the source and each stage's score.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub explain: Option<serde_json::Value>,
}

/// `200` answer to `GET /v1/recommendations`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RecommendationResponse {
    /// Id of this list: a later event carrying it is attributed to this decision.
    pub rec_id: String,
    /// The model version that produced the list.
    pub model_version: String,
    /// In served order: the bandit's slate may place an explored item above one with a
    /// higher `score`, so scores need not decrease down the list.
    pub items: Vec<Recommendation>,
    /// Present when fewer than `k` items could be served: says how many, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Every error the API returns has this shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<FieldError>,
}

/// A problem with one field of one element of a request body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    pub index: usize,
    pub field: String,
    pub reason: String,
}

/// `200` answer to `GET /v1/items/{item_id}`: the catalog entry, when there is one, and the
/// item's windowed features, when the learners have met it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ItemDetail {
    pub item_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<serde_json::Map<String, serde_json::Value>>,
    /// Absent: the item has events but no catalog entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    /// Schema version 2: the catalog entry's unit price and its ISO 4217 code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// The item's windowed features as of the watermark; absent before its first event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<crate::ItemFeatures>,
}

impl ItemDetail {
    pub fn new(
        item_id: &str,
        item: Option<&crate::Item>,
        features: Option<crate::ItemFeatures>,
    ) -> Self {
        Self {
            item_id: item.map_or_else(|| item_id.to_owned(), |i| i.item_id.clone()),
            title: item.and_then(|i| i.title.clone()),
            attributes: item.and_then(|i| i.attributes.clone()),
            available: item.map(|i| i.available),
            expires_at: item.and_then(|i| i.expires_at),
            price: item.and_then(|i| i.details.price),
            currency: item.and_then(|i| i.details.currency.clone()),
            features,
        }
    }
}

/// `200` answer to `GET /v1/sessions/{session_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SessionDetail {
    pub session_id: String,
    /// The session's windowed features; absent once its session window has closed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub features: Option<crate::SessionFeatures>,
    /// The items it met, most recent first.
    pub recent: Vec<String>,
}
