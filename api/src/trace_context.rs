//! W3C Trace Context: a request's `traceparent` is accepted (or one is started), each
//! answer returns the server's span under the same trace, and a recommendation's impression
//! carries it, so a trace reaches the decision the learners later reward.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

pub const TRACEPARENT: &str = "traceparent";

/// A valid `traceparent`: version 00, a 32-hex trace id and a 16-hex span id (neither all
/// zeros), and 2-hex flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: String,
    pub parent_id: String,
    pub flags: String,
}

impl TraceParent {
    /// Parses a header value; anything not of the form above is `None` (the spec says to
    /// start a new trace then, not to fail the request).
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let (version, trace_id, parent_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, n: usize| {
            s.len() == n
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let zeros = |s: &str| s.bytes().all(|b| b == b'0');
        let valid = parts.next().is_none()
            && version == "00"
            && hex(trace_id, 32)
            && !zeros(trace_id)
            && hex(parent_id, 16)
            && !zeros(parent_id)
            && hex(flags, 2);
        valid.then(|| Self {
            trace_id: trace_id.to_owned(),
            parent_id: parent_id.to_owned(),
            flags: flags.to_owned(),
        })
    }

    /// A child of `parent` (or the root of a new, sampled trace): this server's span.
    pub fn child_of(parent: Option<&TraceParent>) -> Self {
        // A v4 UUID is 122 random bits, never all zeros in its first 16 hex digits (its
        // version nibble is 4).
        let random_hex = || uuid::Uuid::new_v4().simple().to_string();
        Self {
            trace_id: parent.map_or_else(random_hex, |p| p.trace_id.clone()),
            parent_id: random_hex()[..16].to_owned(),
            flags: parent.map_or_else(|| "01".to_owned(), |p| p.flags.clone()),
        }
    }

    pub fn header(&self) -> String {
        format!("00-{}-{}-{}", self.trace_id, self.parent_id, self.flags)
    }
}

/// This request's span, in the request's extensions for handlers to carry on.
#[derive(Debug, Clone)]
pub struct ServerSpan(pub TraceParent);

pub async fn propagate(mut request: Request, next: Next) -> Response {
    let incoming = request
        .headers()
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse);
    // With OTLP export, the request's exported span is the server's span, so the header
    // (and the impression) name the span a collector receives.
    #[cfg(feature = "otlp")]
    let exported = crate::otlp::current_span();
    #[cfg(not(feature = "otlp"))]
    let exported: Option<TraceParent> = None;
    let span = exported.unwrap_or_else(|| TraceParent::child_of(incoming.as_ref()));
    request.extensions_mut().insert(ServerSpan(span.clone()));
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&span.header()) {
        response.headers_mut().insert(TRACEPARENT, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIVEN: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_header_is_continued_and_anything_else_starts_a_trace() {
        let parent = TraceParent::parse(GIVEN).expect("valid");
        let child = TraceParent::child_of(Some(&parent));
        assert_eq!(child.trace_id, parent.trace_id);
        assert_ne!(child.parent_id, parent.parent_id);
        assert_eq!(TraceParent::parse(&child.header()), Some(child));
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
        let root = TraceParent::child_of(None);
        assert!(TraceParent::parse(&root.header()).is_some());
    }
}
