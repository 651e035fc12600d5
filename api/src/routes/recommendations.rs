//! `GET /v1/recommendations?session_id=…&k=10`, with optional `user_id`, `rec_id`,
//! `model_version`, `explain=true`, `mmr_lambda=0.7`, `filter=attr:value` (repeated keys and
//! comma lists all apply), `pin=item:slot`, `boost=item:amount`; and `POST
//! /v1/recommendations` with the same as a JSON body.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Extension, Query, State};
use serde::Deserialize;
use streamrec_actors::{MAX_K, RecommendRequest};
use streamrec_proto::{
    ErrorBody, MAX_ID_BYTES, Recommendation, RecommendationResponse, SnapshotVersion,
};

use crate::app::AppState;
use crate::error::ApiError;
use crate::trace_context::ServerSpan;

const DEFAULT_K: usize = 10;

#[utoipa::path(get, path = "/v1/recommendations", tag = "recommendations",
    params(
        ("session_id" = String, Query),
        ("user_id" = Option<String>, Query, description = "Extends the history and the exclusions to the user's"),
        ("k" = Option<usize>, Query, description = "Items wanted, 1 to 500 (default 10)", minimum = 1, maximum = 500),
        ("rec_id" = Option<String>, Query, description = "Reproduce an earlier answer (with its model_version)"),
        ("model_version" = Option<String>, Query, description = "Answer from this snapshot instead of the live models"),
        ("explain" = Option<bool>, Query),
        ("mmr_lambda" = Option<f32>, Query, description = "Diversity trade-off in [0, 1]; 1: relevance only", minimum = 0, maximum = 1),
        ("filter" = Option<Vec<String>>, Query, description = "attribute:value; repeated keys and comma lists all apply", explode = true),
        ("pin" = Option<Vec<String>>, Query, description = "item:slot", explode = true),
        ("boost" = Option<Vec<String>>, Query, description = "item:amount", explode = true),
    ),
    responses(
        (status = 200, description = "The list, in served order; `note` says when fewer than k could be served", body = RecommendationResponse,
            headers(("traceparent" = String, description = "This server's span, under the request's trace"))),
        (status = 404, description = "Unknown model_version", body = ErrorBody),
    ),
    security(("bearer" = ["read"]), ("api_key" = ["read"])))]
pub async fn get(
    State(app): State<AppState>,
    span: Option<Extension<ServerSpan>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Json<RecommendationResponse>, ApiError> {
    let started = Instant::now();
    let Query(pairs_given) =
        query.map_err(|e| ApiError::invalid("invalid_query", e.body_text()))?;
    // Single-valued parameters: the last one given. Rules (`filter`, `pin`, `boost`) take
    // every occurrence, so repeated `filter=` keys all apply.
    let params: HashMap<String, String> = pairs_given.iter().cloned().collect();
    let k = match params.get("k") {
        None => DEFAULT_K,
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|k| (1..=MAX_K).contains(k))
            .ok_or_else(|| bad_k(raw))?,
    };
    let request = RecommendRequest {
        session_id: session_id(params.get("session_id").map(String::as_str))?,
        user_id: optional_id(
            params.get("user_id").map(String::as_str),
            "user_id",
            "invalid_user_id",
        )?,
        k,
        rec_id: rec_id(params.get("rec_id").map(String::as_str))?,
        model_version: model_version(params.get("model_version").map(String::as_str))?,
        explain: flag(&params, "explain", "invalid_explain")?,
        mmr_lambda: match params.get("mmr_lambda") {
            None => None,
            Some(raw) => Some(
                raw.parse::<f32>()
                    .ok()
                    .filter(|l| (0.0..=1.0).contains(l))
                    .ok_or_else(|| bad_mmr(raw))?,
            ),
        },
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
        traceparent: span.map(|Extension(ServerSpan(s))| s.header()),
    };
    answer(&app, request, started).await.map(Json)
}

/// `POST /v1/recommendations`: the same call with a JSON body, for rules that do not fit a
/// URL (values holding `,` or `:`, long filter lists). Unknown fields are errors.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecommendationBody {
    pub session_id: String,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub k: Option<usize>,
    #[serde(default)]
    pub rec_id: Option<String>,
    #[serde(default)]
    pub model_version: Option<String>,
    #[serde(default)]
    pub explain: bool,
    #[serde(default)]
    pub mmr_lambda: Option<f32>,
    /// Attribute → value, or a list of values, every one of which the item's attribute must
    /// match (as repeated `filter=` keys do).
    #[serde(default)]
    pub filters: BTreeMap<String, OneOrMany>,
    /// Item → the slot (0-based) it is pinned to.
    #[serde(default)]
    pub pins: BTreeMap<String, usize>,
    /// Item → the amount added to its score.
    #[serde(default)]
    pub boosts: BTreeMap<String, f32>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[utoipa::path(post, path = "/v1/recommendations", tag = "recommendations",
    request_body = RecommendationBody,
    responses(
        (status = 200, description = "As GET, for rules that do not fit a URL", body = RecommendationResponse,
            headers(("traceparent" = String, description = "This server's span, under the request's trace"))),
        (status = 404, description = "Unknown model_version", body = ErrorBody),
    ),
    security(("bearer" = ["read"]), ("api_key" = ["read"])))]
pub async fn post(
    State(app): State<AppState>,
    span: Option<Extension<ServerSpan>>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RecommendationResponse>, ApiError> {
    let started = Instant::now();
    let body: RecommendationBody = serde_json::from_value(super::json_body(body)?)
        .map_err(|e| ApiError::invalid("invalid_body", e.to_string()))?;
    let traceparent = span.map(|Extension(ServerSpan(s))| s.header());
    let request = request_of(body, traceparent)?;
    answer(&app, request, started).await.map(Json)
}

/// The request a JSON body asks for (`POST /v1/recommendations`, the NATS service), checked
/// as the query parameters are.
pub(crate) fn request_of(
    body: RecommendationBody,
    traceparent: Option<String>,
) -> Result<RecommendRequest, ApiError> {
    let k = match body.k {
        None => DEFAULT_K,
        Some(k) if (1..=MAX_K).contains(&k) => k,
        Some(k) => return Err(bad_k(&k.to_string())),
    };
    let key = |name: &str, what: &str, code: &'static str| {
        if name.is_empty() || name.len() > MAX_ID_BYTES {
            Err(ApiError::invalid(
                code,
                format!("{what} must be 1 to {MAX_ID_BYTES} bytes"),
            ))
        } else {
            Ok(name.to_owned())
        }
    };
    let mut filters = Vec::new();
    for (attribute, values) in &body.filters {
        let attribute = key(attribute, "a filter's attribute", "invalid_filter")?;
        match values {
            OneOrMany::One(v) => filters.push((attribute, v.clone())),
            OneOrMany::Many(vs) => {
                filters.extend(vs.iter().map(|v| (attribute.clone(), v.clone())))
            }
        }
    }
    let boosts = body
        .boosts
        .iter()
        .map(|(item, &amount)| match amount.is_finite() {
            true => Ok((key(item, "a boosted item", "invalid_boost")?, amount)),
            false => Err(ApiError::invalid(
                "invalid_boost",
                format!("boost of {item:?} is not finite"),
            )),
        })
        .collect::<Result<_, _>>()?;
    let request = RecommendRequest {
        session_id: session_id(Some(&body.session_id))?,
        user_id: optional_id(body.user_id.as_deref(), "user_id", "invalid_user_id")?,
        k,
        rec_id: rec_id(body.rec_id.as_deref())?,
        model_version: model_version(body.model_version.as_deref())?,
        explain: body.explain,
        mmr_lambda: match body.mmr_lambda {
            Some(l) if !(0.0..=1.0).contains(&l) => return Err(bad_mmr(&l.to_string())),
            other => other,
        },
        filters,
        pins: body
            .pins
            .iter()
            .map(|(item, &slot)| Ok((key(item, "a pinned item", "invalid_pin")?, slot)))
            .collect::<Result<_, ApiError>>()?,
        boosts,
        traceparent,
    };
    Ok(request)
}

/// Ranks for `request` and shapes the answer; says so when fewer than `k` items could be
/// served.
pub(crate) async fn answer(
    app: &AppState,
    request: RecommendRequest,
    started: Instant,
) -> Result<RecommendationResponse, ApiError> {
    let ranked = app.engine.recommend(&request).await?;
    let served = ranked.items.len();
    let note = (served < request.k).then(|| {
        format!(
            "fewer than k: {served} of {} items; no more can be served to this session (the \
             rest are unknown, unavailable, expired, filtered out or already seen)",
            request.k
        )
    });
    let response = RecommendationResponse {
        rec_id: request.rec_id,
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
        note,
    };
    app.latency.record(started.elapsed());
    Ok(response)
}

/// A client reproducing an answer passes its rec_id (and model_version) back.
fn rec_id(given: Option<&str>) -> Result<String, ApiError> {
    match given {
        Some(id) if !id.is_empty() && id.len() <= MAX_ID_BYTES => Ok(id.to_owned()),
        Some(_) => Err(ApiError::invalid(
            "invalid_rec_id",
            format!("rec_id must be 1 to {MAX_ID_BYTES} bytes"),
        )),
        None => Ok(uuid::Uuid::new_v4().to_string()),
    }
}

fn bad_k(raw: &str) -> ApiError {
    ApiError::invalid(
        "invalid_k",
        format!("k must be an integer between 1 and {MAX_K}, got {raw:?}"),
    )
}

fn bad_mmr(raw: &str) -> ApiError {
    ApiError::invalid(
        "invalid_mmr_lambda",
        format!("mmr_lambda must be a number in [0, 1], got {raw:?}"),
    )
}

/// A snapshot to answer from. Live versions (`online-N`) are never kept, so asking for one
/// is asking for something unknown; anything else must be a snapshot version's form.
fn model_version(given: Option<&str>) -> Result<Option<SnapshotVersion>, ApiError> {
    let Some(value) = given else {
        return Ok(None);
    };
    if let Some(n) = value.strip_prefix("online-")
        && !n.is_empty()
        && n.len() <= 20
        && n.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(ApiError::Engine(
            streamrec_actors::EngineError::UnknownVersion(value.to_owned()),
        ));
    }
    crate::routes::snapshots::parse_version(value).map(Some)
}

fn session_id(given: Option<&str>) -> Result<String, ApiError> {
    match given {
        None | Some("") => Err(ApiError::invalid(
            "missing_session_id",
            "session_id is required",
        )),
        Some(s) if s.len() > MAX_ID_BYTES => Err(ApiError::invalid(
            "invalid_session_id",
            format!("session_id exceeds {MAX_ID_BYTES} bytes"),
        )),
        Some(s) => Ok(s.to_owned()),
    }
}

fn optional_id(
    given: Option<&str>,
    name: &str,
    code: &'static str,
) -> Result<Option<String>, ApiError> {
    match given {
        None => Ok(None),
        Some(v) if !v.is_empty() && v.len() <= MAX_ID_BYTES => Ok(Some(v.to_owned())),
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
