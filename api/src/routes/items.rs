//! The catalog: `POST /v1/items` upserts items through the bus; `GET /v1/items/{id}` reads
//! one and `GET /v1/items?cursor=&limit=` lists them, from the published version.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use streamrec_proto::validation::printable_id;
use streamrec_proto::{
    Accepted, DeletionAccepted, ErrorBody, Item, ItemDeletion, ItemDetail, now_millis,
};

use super::{batch_elements, validate_all};
use crate::app::AppState;
use crate::error::ApiError;

#[utoipa::path(post, path = "/v1/items", tag = "items",
    request_body(content = crate::openapi::ItemBatch, description = "One item, or an array of up to 1,000: an upsert replaces the entry of the same id. `expires_at` is epoch milliseconds or an RFC 3339 string."),
    responses((status = 202, description = "Every item validated and stored on the bus", body = Accepted)),
    security(("bearer" = ["write"]), ("api_key" = ["write"])))]
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
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ItemPage {
    #[schema(value_type = Vec<Item>)]
    pub items: Vec<Arc<Item>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/items", tag = "items",
    params(
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        ("limit" = Option<usize>, Query, description = "Items per page, 1 to 1,000 (default 100)", minimum = 1, maximum = 1000),
    ),
    responses((status = 200, description = "Live items (not expired) in id order", body = ItemPage)),
    security(("bearer" = ["read"]), ("api_key" = ["read"])))]
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
    let mut items = models
        .read
        .catalog_page(after.as_deref(), limit + 1, now_millis());
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|i| encode_cursor(&i.item_id))
    } else {
        None
    };
    Ok(Json(ItemPage { items, next_cursor }))
}

#[utoipa::path(get, path = "/v1/items/{item_id}", tag = "items",
    params(("item_id" = String, Path, description = "Any spelling of the id (it is NFC-normalised)")),
    responses(
        (status = 200, description = "The catalog entry (if any) and the item's windowed features as of the watermark (once it has events)", body = ItemDetail),
        (status = 404, description = "Neither in the catalog nor met by the learners, or it expired or was deleted", body = ErrorBody),
    ),
    security(("bearer" = ["read"]), ("api_key" = ["read"])))]
pub async fn get(
    State(app): State<AppState>,
    item_id: Result<Path<String>, PathRejection>,
) -> Result<Json<ItemDetail>, ApiError> {
    let id = item_id_of(&super::path_param(item_id)?)?;
    let models = app.engine.models();
    let read = &models.read;
    let not_found = || ApiError::NotFound(format!("no item {id:?} in the catalog"));
    let entry = match read.catalog_item(&id) {
        Some(item) if item.expired(now_millis()) => return Err(not_found()),
        Some(item) => Some(item),
        None if read.is_deleted(&id) || !read.knows_item(&id) => return Err(not_found()),
        None => None,
    };
    Ok(Json(ItemDetail::new(
        &id,
        entry.map(|i| &**i),
        read.item_features(&id),
    )))
}

/// Deletes an item through the bus: once applied it is not found, listed or recommended,
/// until it is upserted again.
#[utoipa::path(delete, path = "/v1/items/{item_id}", tag = "items",
    params(("item_id" = String, Path)),
    responses((status = 202, description = "The deletion is on the bus: once applied (in stream order, on every node) the item is not found, listed or recommended until it is upserted again", body = DeletionAccepted)),
    security(("bearer" = ["admin"]), ("api_key" = ["admin"])))]
pub async fn delete(
    State(app): State<AppState>,
    item_id: Result<Path<String>, PathRejection>,
) -> Result<(StatusCode, Json<DeletionAccepted>), ApiError> {
    let id = item_id_of(&super::path_param(item_id)?)?;
    app.engine
        .publish_item_deletion(&ItemDeletion {
            item_id: id.clone(),
        })
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(DeletionAccepted {
            kind: "item".to_owned(),
            id,
        }),
    ))
}

/// The id in the spelling the catalog keeps (NFC), so any spelling of an id finds it.
fn item_id_of(raw: &str) -> Result<String, ApiError> {
    printable_id(raw)
        .map_err(|reason| ApiError::invalid("invalid_item_id", format!("item id: {reason}")))
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
