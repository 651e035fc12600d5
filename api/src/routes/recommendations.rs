//! `GET /v1/recommendations?session_id=…&k=10`, with optional `user_id`, `rec_id`,
//! `model_version`, `explain=true`, `mmr_lambda=0.7`, `filter=attr:value` (repeated keys and
//! comma lists all apply), `pin=item:slot`, `boost=item:amount`.

use std::collections::HashMap;
use std::time::Instant;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use streamrec_actors::{MAX_K, RecommendRequest};
use streamrec_proto::{MAX_ID_BYTES, Recommendation, RecommendationResponse, SnapshotVersion};

use crate::app::AppState;
use crate::error::ApiError;

const DEFAULT_K: usize = 10;

pub async fn get(
    State(app): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<RecommendationResponse>, ApiError> {
    let started = Instant::now();
    let Query(pairs_given) =
        query.map_err(|e| ApiError::invalid("invalid_query", e.body_text()))?;
    // Single-valued parameters: the last one given. Rules (`filter`, `pin`, `boost`) take
    // every occurrence, so repeated `filter=` keys all apply.
    let params: HashMap<String, String> = pairs_given.iter().cloned().collect();
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
    let request = RecommendRequest {
        session_id: session_id.to_owned(),
        user_id: optional_id(&params, "user_id", "invalid_user_id")?,
        k,
        rec_id: rec_id.clone(),
        model_version: model_version(&params)?,
        explain: flag(&params, "explain", "invalid_explain")?,
        mmr_lambda: mmr_lambda(&params)?,
        filters: pairs(&pairs_given, "filter", "invalid_filter", |v| {
            Ok(v.to_owned())
        })?,
        pins: pairs(&pairs_given, "pin", "invalid_pin", |v| {
            v.parse::<usize>()
                .map_err(|_| format!("slot {v:?} is not a non-negative integer"))
        })?,
        boosts: pairs(&pairs_given, "boost", "invalid_boost", |v| {
            match v.parse::<f32>() {
                Ok(b) if b.is_finite() => Ok(b),
                _ => Err(format!("boost {v:?} is not a finite number")),
            }
        })?,
    };
    let ranked = app.engine.recommend(&request).await?;
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
                explain: i.explanation.and_then(|e| serde_json::to_value(e).ok()),
            })
            .collect(),
    };
    app.latency.record(started.elapsed());
    Ok(Json(response))
}

/// A snapshot to answer from. Live versions (`online-N`) are never kept, so asking for one
/// is asking for something unknown; anything else must be a snapshot version's form.
fn model_version(params: &HashMap<String, String>) -> Result<Option<SnapshotVersion>, ApiError> {
    let Some(value) = params.get("model_version") else {
        return Ok(None);
    };
    if let Some(n) = value.strip_prefix("online-")
        && !n.is_empty()
        && n.len() <= 20
        && n.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(ApiError::Engine(
            streamrec_actors::EngineError::UnknownVersion(value.clone()),
        ));
    }
    crate::routes::snapshots::parse_version(value).map(Some)
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

fn optional_id(
    params: &HashMap<String, String>,
    name: &str,
    code: &'static str,
) -> Result<Option<String>, ApiError> {
    match params.get(name) {
        None => Ok(None),
        Some(v) if !v.is_empty() && v.len() <= MAX_ID_BYTES => Ok(Some(v.clone())),
        Some(_) => Err(ApiError::invalid(
            code,
            format!("{name} must be 1 to {MAX_ID_BYTES} bytes"),
        )),
    }
}

fn flag(
    params: &HashMap<String, String>,
    name: &str,
    code: &'static str,
) -> Result<bool, ApiError> {
    match params.get(name).map(String::as_str) {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") | Some("") => Ok(true),
        Some(other) => Err(ApiError::invalid(
            code,
            format!("{name} must be true or false, got {other:?}"),
        )),
    }
}

fn mmr_lambda(params: &HashMap<String, String>) -> Result<Option<f32>, ApiError> {
    let Some(raw) = params.get("mmr_lambda") else {
        return Ok(None);
    };
    match raw.parse::<f32>() {
        Ok(l) if (0.0..=1.0).contains(&l) => Ok(Some(l)),
        _ => Err(ApiError::invalid(
            "invalid_mmr_lambda",
            format!("mmr_lambda must be a number in [0, 1], got {raw:?}"),
        )),
    }
}

/// `name=a:x,b:y` as pairs, the right side parsed by `value`.
/// Every `name=key:value` entry of the query, each occurrence a comma list.
fn pairs<T>(
    given: &[(String, String)],
    name: &str,
    code: &'static str,
    value: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<(String, T)>, ApiError> {
    let bad = |message: String| ApiError::invalid(code, message);
    given
        .iter()
        .filter(|(key, _)| key == name)
        .flat_map(|(_, raw)| raw.split(','))
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (left, right) = p
                .rsplit_once(':')
                .ok_or_else(|| bad(format!("{name} entries are key:value, got {p:?}")))?;
            if left.is_empty() || left.len() > MAX_ID_BYTES {
                return Err(bad(format!("{name} key must be 1 to {MAX_ID_BYTES} bytes")));
            }
            Ok((left.to_owned(), value(right).map_err(bad)?))
        })
        .collect()
}
