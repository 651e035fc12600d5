//! The catalog: `POST /v1/items` upserts items through the bus; `GET /v1/items/{id}` reads
//! one and `GET /v1/items?cursor=&limit=` lists them, from the published version.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use streamrec_proto::validation::printable_id;
use streamrec_proto::{Accepted, Item};

use super::{batch_elements, validate_all};
use crate::app::AppState;
use crate::error::ApiError;

pub async fn post(
    State(app): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let elements = batch_elements(body)?;
    let items = validate_all(&elements, "items", Item::from_value)?;
    app.engine.publish_items(&items).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            accepted: items.len(),
        }),
    ))
}

/// Items in a page when `limit` is not given.
const DEFAULT_PAGE: usize = 100;
/// The most items one page holds.
pub const MAX_PAGE: usize = 1_000;

/// `200` answer to `GET /v1/items`: items in id order; `next_cursor` fetches the page after
/// (absent on the last page).
#[derive(Debug, Serialize)]
pub struct ItemPage {
    pub items: Vec<Arc<Item>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

pub async fn list(
    State(app): State<AppState>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<ItemPage>, ApiError> {
    let Query(params) = query.map_err(|e| ApiError::invalid("invalid_query", e.body_text()))?;
    let limit = match params.get("limit") {
        None => DEFAULT_PAGE,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid(
                    "invalid_limit",
                    format!("limit must be an integer between 1 and {MAX_PAGE}, got {raw:?}"),
                ));
            }
        },
    };
    let after = match params.get("cursor").map(String::as_str) {
        None | Some("") => None,
        Some(cursor) => Some(decode_cursor(cursor)?),
    };
    let models = app.engine.models();
    // One more than asked says whether a next page exists.
    let mut items = models.read.catalog_page(after.as_deref(), limit + 1);
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|i| encode_cursor(&i.item_id))
    } else {
        None
    };
    Ok(Json(ItemPage { items, next_cursor }))
}

pub async fn get(
    State(app): State<AppState>,
    Path(item_id): Path<String>,
) -> Result<Json<Arc<Item>>, ApiError> {
    // Looked up in the spelling the catalog keeps (NFC), so any spelling of an id finds it.
    let id = printable_id(&item_id)
        .map_err(|reason| ApiError::invalid("invalid_item_id", format!("item id: {reason}")))?;
    app.engine
        .models()
        .read
        .catalog_item(&id)
        .cloned()
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no item {id:?} in the catalog")))
}

/// The cursor is opaque to clients: the last id of a page, base64url-encoded.
fn encode_cursor(item_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(item_id)
}

fn decode_cursor(cursor: &str) -> Result<String, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| {
            ApiError::invalid(
                "invalid_cursor",
                "cursor is not one this server handed out (use next_cursor as given)",
            )
        })
}
