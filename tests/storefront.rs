//! The storefront's server side: the page and its assets come from the binary with a strict
//! content-security policy, and the catalog it browses is listed page by page with a stable
//! cursor and read item by item (the page itself is driven in Chromium by
//! `tests/browser/storefront.test.mjs`).

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{eventually, get};

async fn page(server: &streamrec_api::RunningServer, path: &str) -> reqwest::Response {
    reqwest::get(server.url(path)).await.expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_assets_are_served_from_the_binary() {
    let dir = tempfile::tempdir().expect("dir");
    let server = support::embedded_server(dir.path()).await;
    let index = page(&server, "/").await;
    assert_eq!(index.status(), StatusCode::OK);
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(header(&index, "content-type").starts_with("text/html"));
    let policy = header(&index, "content-security-policy");
    assert!(policy.contains("default-src 'self'"), "{policy}");
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    let html = index.text().await.expect("html");
    // The hooks that tests and scripts rely on.
    for hook in [
        "data-testid=\"recommendations\"",
        "data-testid=\"catalog\"",
        "/storefront/app.js",
        "/storefront/style.css",
    ] {
        assert!(html.contains(hook), "{hook} in the page");
    }
    // Nothing is fetched from elsewhere.
    assert!(!html.contains("https://") && !html.contains("http://"));
    for (path, media_type) in [
        ("/storefront/app.js", "text/javascript"),
        ("/storefront/style.css", "text/css"),
    ] {
        let asset = page(&server, path).await;
        assert_eq!(asset.status(), StatusCode::OK, "{path}");
        assert!(header(&asset, "content-type").starts_with(media_type));
        // The SVG namespace is a name, not an address.
        let body = asset
            .text()
            .await
            .expect("asset")
            .replace("\"http://www.w3.org/2000/svg\"", "");
        assert!(
            !body.contains("https://") && !body.contains("http://"),
            "{path}"
        );
    }
    let (status, body) = get(&server, "/storefront/..%2Fsrc%2Flib.rs").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_is_listed_in_pages_with_a_stable_cursor_and_read_by_id() {
    let dir = tempfile::tempdir().expect("dir");
    let server = support::embedded_server(dir.path()).await;
    let client = reqwest::Client::new();
    let items: Vec<Value> = (0..25)
        .map(|i| {
            json!({"item_id": format!("m{i:02}"), "title": format!("Movie {i}"),
            "attributes": {"genres": ["Drama"]}})
        })
        .collect();
    let status = client
        .post(server.url("/v1/items"))
        .json(&items)
        .send()
        .await
        .expect("post items")
        .status();
    assert_eq!(status, StatusCode::ACCEPTED);
    eventually(
        "the catalog is learned",
        Duration::from_secs(10),
        || async { get(&server, "/v1/stats").await.1["catalog_items"] == 25 },
    )
    .await;

    // Pages of 10 in id order; the cursor of the first still works after items are added
    // before and after it.
    let (status, first) = get(&server, "/v1/items?limit=10").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["item_id"].as_str().expect("id").to_owned())
            .collect()
    };
    let expected: Vec<String> = (0..10).map(|i| format!("m{i:02}")).collect();
    assert_eq!(ids(&first), expected);
    assert_eq!(first["items"][0]["title"], "Movie 0");
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let added =
        json!([{"item_id": "a-first", "title": "Before"}, {"item_id": "z-last", "title": "After"}]);
    client
        .post(server.url("/v1/items"))
        .json(&added)
        .send()
        .await
        .expect("post items");
    eventually(
        "the new items are learned",
        Duration::from_secs(10),
        || async { get(&server, "/v1/stats").await.1["catalog_items"] == 27 },
    )
    .await;
    let mut seen: Vec<String> = ids(&first);
    let mut next = Some(cursor);
    while let Some(cursor) = next {
        let (status, page) = get(&server, &format!("/v1/items?limit=10&cursor={cursor}")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(ids(&page));
        next = page["next_cursor"].as_str().map(str::to_owned);
    }
    // Every item after the cursor once, the one added before it not at all.
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no item twice: {seen:?}");
    assert_eq!(seen.len(), 26, "{seen:?}");
    assert_eq!(seen.last().map(String::as_str), Some("z-last"));
    assert!(!seen.contains(&"a-first".to_owned()));

    // Defaults, and bad input as 400s with codes.
    let (_, all) = get(&server, "/v1/items").await;
    assert_eq!(ids(&all).len(), 27);
    assert!(all.get("next_cursor").is_none(), "{all}");
    for (query, code) in [
        ("limit=0", "invalid_limit"),
        ("limit=1001", "invalid_limit"),
        ("limit=ten", "invalid_limit"),
        ("cursor=***", "invalid_cursor"),
    ] {
        let (status, body) = get(&server, &format!("/v1/items?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"]["code"], code, "{query}");
    }

    // One item by id; unknown is 404, an unprintable id 400.
    let (status, item) = get(&server, "/v1/items/m07").await;
    assert_eq!(status, StatusCode::OK, "{item}");
    assert_eq!(item["title"], "Movie 7");
    assert_eq!(item["attributes"]["genres"], json!(["Drama"]));
    let (status, body) = get(&server, "/v1/items/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    let (status, body) = get(&server, "/v1/items/a%00b").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "invalid_item_id");
    server.shutdown().await.expect("clean shutdown");
}
