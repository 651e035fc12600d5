//! Event timestamps: RFC 3339 strings or integer epoch milliseconds, held as epoch millis.

use chrono::DateTime;

use crate::validation::Reason;

/// Milliseconds since the Unix epoch, UTC.
pub type EpochMillis = i64;

/// Earliest accepted event time: 1990-01-01T00:00:00Z. Anything older is a unit mix-up
/// (seconds sent as milliseconds) far more often than a real event.
pub const MIN_EVENT_MILLIS: EpochMillis = 631_152_000_000;
/// Latest accepted event time: 2100-01-01T00:00:00Z (microseconds sent as milliseconds land
/// far beyond it).
pub const MAX_EVENT_MILLIS: EpochMillis = 4_102_444_800_000;

/// The wall clock now, as epoch milliseconds: the instant an expiry is compared with.
pub fn now_millis() -> EpochMillis {
    chrono::Utc::now().timestamp_millis()
}

/// Parses a JSON timestamp value and checks that it is plausible.
pub fn parse_timestamp(value: &serde_json::Value) -> Result<EpochMillis, Reason> {
    let millis = match value {
        serde_json::Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map_err(|e| Reason::BadTimestamp(e.to_string()))?
            .timestamp_millis(),
        serde_json::Value::Number(n) => n.as_i64().ok_or_else(|| {
            Reason::BadTimestamp("epoch milliseconds must be an integer".to_owned())
        })?,
        _ => {
            return Err(Reason::WrongType {
                expected: "RFC 3339 string or integer epoch milliseconds",
            });
        }
    };
    if !(MIN_EVENT_MILLIS..=MAX_EVENT_MILLIS).contains(&millis) {
        return Err(Reason::AbsurdTimestamp(millis));
    }
    Ok(millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc3339_and_millis_agree() {
        let a = parse_timestamp(&json!("1997-09-20T03:05:10Z")).expect("valid");
        let b = parse_timestamp(&json!(874_724_710_000_i64)).expect("valid");
        assert_eq!(a, b);
    }

    #[test]
    fn offsets_are_normalised_to_utc() {
        let a = parse_timestamp(&json!("2024-01-01T01:00:00+01:00")).expect("valid");
        let b = parse_timestamp(&json!("2024-01-01T00:00:00Z")).expect("valid");
        assert_eq!(a, b);
    }

    #[test]
    fn seconds_sent_as_millis_are_absurd() {
        assert!(matches!(
            parse_timestamp(&json!(1_700_000_000_i64)),
            Err(Reason::AbsurdTimestamp(_))
        ));
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(matches!(
            parse_timestamp(&json!("yesterday")),
            Err(Reason::BadTimestamp(_))
        ));
        assert!(matches!(
            parse_timestamp(&json!(1.5e12)),
            Err(Reason::BadTimestamp(_))
        ));
        assert!(matches!(
            parse_timestamp(&json!(true)),
            Err(Reason::WrongType { .. })
        ));
    }
}
