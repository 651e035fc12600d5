//! The storefront at `/`: a page that shows streamrec learning from each click. Its assets
//! are compiled into the binary, so it works with no network and no build step.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

const INDEX_HTML: &str = include_str!("../storefront/index.html");

/// The page's assets by file name, with their media types.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../storefront/app.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../storefront/style.css"),
    ),
];

/// The page loads only what it ships: no scripts, styles or connections from elsewhere.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'";

pub async fn index() -> Response {
    page("text/html; charset=utf-8", INDEX_HTML)
}

pub async fn asset(Path(name): Path<String>) -> Result<Response, ApiError> {
    embedded(ASSETS, &name, "storefront")
}

/// The file `name` of `assets` (name, media type, body), or 404 naming `what` it is from.
pub(crate) fn embedded(
    assets: &[(&str, &'static str, &'static str)],
    name: &str,
    what: &str,
) -> Result<Response, ApiError> {
    assets
        .iter()
        .find(|(file, _, _)| *file == name)
        .map(|(_, media_type, body)| page(media_type, body))
        .ok_or_else(|| ApiError::NotFound(format!("no {what} asset {name:?}")))
}

/// An embedded file with its headers: the strict policy above, no caching past the binary.
pub(crate) fn page(media_type: &'static str, body: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    // Assets change with the binary: a browser revalidates rather than keeping a stale copy.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
