//! Who may call what: API keys with scopes, sent as `Authorization: Bearer KEY` or
//! `X-API-Key: KEY`. `read` covers recommendations, items, sessions and stats; `write` events
//! and items; `admin` snapshots, shadow runs and deletes, and implies the other two. With no
//! key configured the API is open (and `serve` says so at start).

use std::fmt;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Read,
    Write,
    Admin,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    fn bit(self) -> u8 {
        match self {
            Scope::Read => 1,
            Scope::Write => 2,
            Scope::Admin => 4,
        }
    }
}

/// The scopes one key holds; `admin` holds them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Scopes(u8);

impl Scopes {
    fn with(self, scope: Scope) -> Self {
        match scope {
            Scope::Admin => Scopes(7),
            other => Scopes(self.0 | other.bit()),
        }
    }

    fn allows(self, scope: Scope) -> bool {
        self.0 & scope.bit() != 0
    }
}

/// Shortest key accepted: a guessable key is no key.
pub const MIN_KEY_LEN: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeysError {
    #[error("API key entry {index} is not KEY:SCOPE[+SCOPE]")]
    Shape { index: usize },
    #[error("API key entry {index}: a key has at least {MIN_KEY_LEN} printable characters")]
    Weak { index: usize },
    #[error("API key entry {index}: unknown scope {scope:?} (read, write, admin)")]
    UnknownScope { index: usize, scope: String },
    #[error("API key entry {index} repeats an earlier key")]
    Repeated { index: usize },
}

/// The configured keys, kept only as SHA-256 digests: a key is never held, printed or
/// logged, and every comparison is over 32 bytes in constant time.
#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: Arc<Vec<([u8; 32], Scopes)>>,
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKeys({} keys, values hidden)", self.keys.len())
    }
}

impl ApiKeys {
    /// `key:scope[+scope],...` (the form of `STREAMREC_API_KEYS`); blank entries are skipped.
    pub fn parse(spec: &str) -> Result<Self, KeysError> {
        let mut keys: Vec<([u8; 32], Scopes)> = Vec::new();
        for (index, entry) in spec.split(',').map(str::trim).enumerate() {
            if entry.is_empty() {
                continue;
            }
            let (key, scopes) = entry.rsplit_once(':').ok_or(KeysError::Shape { index })?;
            if key.len() < MIN_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(KeysError::Weak { index });
            }
            let mut held = Scopes::default();
            for name in scopes.split('+') {
                let scope = Scope::parse(name).ok_or_else(|| KeysError::UnknownScope {
                    index,
                    scope: name.to_owned(),
                })?;
                held = held.with(scope);
            }
            let digest = digest(key.as_bytes());
            if keys.iter().any(|(d, _)| bool::from(d.ct_eq(&digest))) {
                return Err(KeysError::Repeated { index });
            }
            keys.push((digest, held));
        }
        Ok(Self {
            keys: Arc::new(keys),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// The scopes of `presented`, comparing it with every key (no early exit).
    fn scopes_of(&self, presented: &[u8]) -> Option<Scopes> {
        let digest = digest(presented);
        let mut found = None;
        for (key, scopes) in self.keys.iter() {
            if bool::from(key.ct_eq(&digest)) {
                found = Some(*scopes);
            }
        }
        found
    }

    /// Whether `headers` carry a key that holds `scope`; the error to answer otherwise.
    pub fn check(&self, headers: &HeaderMap, scope: Scope) -> Result<(), ApiError> {
        if self.is_empty() {
            return Ok(());
        }
        let Some(presented) = presented_key(headers) else {
            return Err(ApiError::Unauthorized(
                "an API key is required: Authorization: Bearer KEY (or X-API-Key: KEY)",
            ));
        };
        match self.scopes_of(presented) {
            None => Err(ApiError::Unauthorized("unknown API key")),
            Some(scopes) if scopes.allows(scope) => Ok(()),
            Some(_) => Err(ApiError::Forbidden(scope.name())),
        }
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// `Authorization: Bearer KEY`, else `X-API-Key: KEY`.
fn presented_key(headers: &HeaderMap) -> Option<&[u8]> {
    if let Some(value) = headers.get(axum::http::header::AUTHORIZATION) {
        let bytes = value.as_bytes();
        let scheme = bytes.get(..7)?;
        return scheme
            .eq_ignore_ascii_case(b"bearer ")
            .then(|| bytes[7..].trim_ascii())
            .filter(|k| !k.is_empty());
    }
    headers
        .get("x-api-key")
        .map(|v| v.as_bytes().trim_ascii())
        .filter(|k| !k.is_empty())
}

/// Middleware: the request goes on only with a key holding the route's scope.
pub async fn require(
    State((keys, scope)): State<(ApiKeys, Scope)>,
    request: Request,
    next: Next,
) -> Response {
    match keys.check(request.headers(), scope) {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const READER: &str = "reader-key-0123456789";
    const WRITER: &str = "writer-key-0123456789";
    const ADMIN: &str = "admin-key-0123456789";

    fn keys() -> ApiKeys {
        ApiKeys::parse(&format!("{READER}:read, {WRITER}:write+read,{ADMIN}:admin")).expect("valid")
    }

    fn bearer(key: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            axum::http::header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {key}")).expect("header"),
        );
        headers
    }

    #[test]
    fn scopes_follow_the_key_and_admin_implies_the_rest() {
        let keys = keys();
        assert_eq!(keys.len(), 3);
        let allowed = |key: &str, scope| keys.check(&bearer(key), scope).is_ok();
        assert!(allowed(READER, Scope::Read));
        assert!(!allowed(READER, Scope::Write));
        assert!(!allowed(READER, Scope::Admin));
        assert!(allowed(WRITER, Scope::Write) && allowed(WRITER, Scope::Read));
        assert!(!allowed(WRITER, Scope::Admin));
        for scope in [Scope::Read, Scope::Write, Scope::Admin] {
            assert!(allowed(ADMIN, scope));
        }
        assert!(matches!(
            keys.check(&bearer(READER), Scope::Write),
            Err(ApiError::Forbidden("write"))
        ));
        assert!(matches!(
            keys.check(&bearer("not-a-key-0123456789"), Scope::Read),
            Err(ApiError::Unauthorized(_))
        ));
        assert!(matches!(
            keys.check(&HeaderMap::new(), Scope::Read),
            Err(ApiError::Unauthorized(_))
        ));
    }

    #[test]
    fn the_key_may_come_as_x_api_key_and_the_scheme_in_any_case() {
        let keys = keys();
        let mut headers = HeaderMap::new();
        headers.insert("x-api-key", HeaderValue::from_static(READER));
        assert!(keys.check(&headers, Scope::Read).is_ok());
        let mut headers = HeaderMap::new();
        headers.insert(
            axum::http::header::AUTHORIZATION,
            HeaderValue::from_str(&format!("bearer {READER}")).expect("header"),
        );
        assert!(keys.check(&headers, Scope::Read).is_ok());
        // Basic auth is not a key.
        headers.insert(
            axum::http::header::AUTHORIZATION,
            HeaderValue::from_static("Basic cmVhZGVyOnB3"),
        );
        assert!(keys.check(&headers, Scope::Read).is_err());
    }

    #[test]
    fn no_keys_means_open_and_bad_specs_name_the_entry() {
        let open = ApiKeys::parse("").expect("empty is open");
        assert!(open.is_empty());
        assert!(open.check(&HeaderMap::new(), Scope::Admin).is_ok());
        assert_eq!(
            ApiKeys::parse("short:read").expect_err("refused"),
            KeysError::Weak { index: 0 }
        );
        assert_eq!(
            ApiKeys::parse(&format!("{READER}:read,{WRITER}")).expect_err("refused"),
            KeysError::Shape { index: 1 }
        );
        assert_eq!(
            ApiKeys::parse(&format!("{READER}:root")).expect_err("refused"),
            KeysError::UnknownScope {
                index: 0,
                scope: "root".to_owned()
            }
        );
        assert_eq!(
            ApiKeys::parse(&format!("{READER}:read,{READER}:admin")).expect_err("refused"),
            KeysError::Repeated { index: 1 }
        );
        // Never printed.
        assert!(!format!("{:?}", keys()).contains(READER));
    }
}

/// tower-http's CORS layer leaves its method and header lists on a preflight from any
/// origin (only `Access-Control-Allow-Origin` is withheld): an origin that is not allowed gets
/// no CORS header at all.
pub async fn strip_cors_for_other_origins(
    State(allowed): State<Arc<Vec<axum::http::HeaderValue>>>,
    request: Request,
    next: Next,
) -> Response {
    let other = request
        .headers()
        .get(axum::http::header::ORIGIN)
        .is_some_and(|origin| !allowed.contains(origin));
    let mut response = next.run(request).await;
    if other {
        let headers = response.headers_mut();
        let cors: Vec<axum::http::HeaderName> = headers
            .keys()
            .filter(|name| name.as_str().starts_with("access-control-"))
            .cloned()
            .collect();
        for name in cors {
            headers.remove(name);
        }
    }
    response
}

/// Who may call the API and from which browser origins: the keys, and the origins CORS
/// answers. The default is open, with no CORS.
#[derive(Debug, Clone, Default)]
pub struct Access {
    pub keys: ApiKeys,
    pub cors_origins: Vec<axum::http::HeaderValue>,
    /// `/healthz`, `/readyz` and `/metrics` ask for the `read` scope too (they are open by
    /// default, for probes and scrapers that hold no key).
    pub guard_operations: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(transparent)]
    Keys(#[from] KeysError),
    #[error("CORS origin {0:?} is not scheme://host[:port]")]
    Origin(String),
}

impl Access {
    /// From `STREAMREC_API_KEYS` (`key:scope[+scope],...`) and the allowed CORS origins.
    pub fn new(keys: Option<&str>, origins: &[String]) -> Result<Self, AccessError> {
        let keys = ApiKeys::parse(keys.unwrap_or_default())?;
        let cors_origins = origins
            .iter()
            .map(|o| o.trim())
            .filter(|o| !o.is_empty())
            .map(|o| {
                let valid = (o.starts_with("http://") || o.starts_with("https://"))
                    && !o.ends_with('/')
                    && o.bytes().all(|b| b.is_ascii_graphic());
                valid
                    .then(|| axum::http::HeaderValue::from_str(o).ok())
                    .flatten()
                    .ok_or_else(|| AccessError::Origin(o.to_owned()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            keys,
            cors_origins,
            guard_operations: false,
        })
    }

    /// With `/healthz`, `/readyz` and `/metrics` behind the `read` scope.
    pub fn guarding_operations(mut self, guard: bool) -> Self {
        self.guard_operations = guard;
        self
    }

    /// The CORS layer: preflights from the allowed origins are answered; any other origin
    /// gets no CORS header, so a browser refuses it.
    pub fn cors(&self) -> Option<tower_http::cors::CorsLayer> {
        use axum::http::{Method, header};
        if self.cors_origins.is_empty() {
            return None;
        }
        Some(
            tower_http::cors::CorsLayer::new()
                .allow_origin(tower_http::cors::AllowOrigin::list(
                    self.cors_origins.iter().cloned(),
                ))
                .allow_methods([Method::GET, Method::POST, Method::DELETE])
                .allow_headers([
                    header::AUTHORIZATION,
                    header::CONTENT_TYPE,
                    axum::http::HeaderName::from_static("x-api-key"),
                    axum::http::HeaderName::from_static("traceparent"),
                ])
                .max_age(std::time::Duration::from_secs(600)),
        )
    }
}
