//! The API explorer at `/docs`: a page that reads `/openapi.json` and sends requests from
//! the browser. Like the storefront, it is compiled into the binary and loads nothing from
//! elsewhere, so it works offline.

use axum::extract::Path;
use axum::response::Response;

use crate::error::ApiError;
use crate::storefront::{embedded, page};

const INDEX_HTML: &str = include_str!("../explorer/index.html");

const ASSETS: &[(&str, &str, &str)] = &[
    (
        "explorer.js",
        "text/javascript; charset=utf-8",
        include_str!("../explorer/explorer.js"),
    ),
    (
        "explorer.css",
        "text/css; charset=utf-8",
        include_str!("../explorer/explorer.css"),
    ),
];

pub async fn index() -> Response {
    page("text/html; charset=utf-8", INDEX_HTML)
}

pub async fn asset(Path(name): Path<String>) -> Result<Response, ApiError> {
    embedded(ASSETS, &name, "explorer")
}
