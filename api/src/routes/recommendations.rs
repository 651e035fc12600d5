//! `GET /v1/recommendations?session_id=…&k=10`.

use std::collections::HashMap;
use std::time::Instant;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use streamrec_actors::MAX_K;
use streamrec_proto::{MAX_ID_BYTES, Recommendation, RecommendationResponse};

use crate::app::AppState;
use crate::error::ApiError;

const DEFAULT_K: usize = 10;

pub async fn get(
    State(app): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<RecommendationResponse>, ApiError> {
    let started = Instant::now();
    let Query(params) = query.map_err(|e| ApiError::invalid("invalid_query", e.body_text()))?;
    let session_id = session_id(&params)?;
    let k = k(&params)?;
    // A client reproducing an answer passes its rec_id (and model_version) back.
    let rec_id = match params.get("rec_id") {
        Some(id) if !id.is_empty() && id.len() <= MAX_ID_BYTES => id.clone(),
        Some(_) => {
            return Err(ApiError::invalid(
                "invalid_rec_id",
                format!("rec_id must be 1 to {MAX_ID_BYTES} bytes"),
            ));
        }
        None => uuid::Uuid::new_v4().to_string(),
    };
    let pinned = params.get("model_version").map(String::as_str);
    let ranked = app.engine.recommend(session_id, k, &rec_id, pinned).await?;
    let response = RecommendationResponse {
        rec_id,
        model_version: ranked.model_version,
        items: ranked
            .items
            .into_iter()
            .map(|i| Recommendation {
                item_id: i.item_id,
                score: i.score,
                propensity: i.propensity,
            })
            .collect(),
    };
    app.latency.record(started.elapsed());
    Ok(Json(response))
}

fn session_id(params: &HashMap<String, String>) -> Result<&str, ApiError> {
    match params.get("session_id").map(String::as_str) {
        None | Some("") => Err(ApiError::invalid(
            "missing_session_id",
            "query parameter session_id is required",
        )),
        Some(s) if s.len() > MAX_ID_BYTES => Err(ApiError::invalid(
            "invalid_session_id",
            format!("session_id exceeds {MAX_ID_BYTES} bytes"),
        )),
        Some(s) => Ok(s),
    }
}

fn k(params: &HashMap<String, String>) -> Result<usize, ApiError> {
    let Some(raw) = params.get("k") else {
        return Ok(DEFAULT_K);
    };
    match raw.parse::<usize>() {
        Ok(k) if (1..=MAX_K).contains(&k) => Ok(k),
        _ => Err(ApiError::invalid(
            "invalid_k",
            format!("k must be an integer between 1 and {MAX_K}, got {raw:?}"),
        )),
    }
}
