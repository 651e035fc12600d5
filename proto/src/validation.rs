//! Validation errors and the field readers that produce them.
//!
//! Each error names the offending field and a machine-readable reason code; the code also
//! names the dead-letter subject a rejected bus message goes to.

use serde_json::{Map, Value};

use crate::{MAX_ID_BYTES, MAX_PAYLOAD_BYTES};

/// Why a field (or a whole payload) was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Reason {
    #[error("payload is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("payload must be a JSON object")]
    NotAnObject,
    #[error("payload of {0} bytes exceeds the limit of {MAX_PAYLOAD_BYTES} bytes")]
    PayloadTooLarge(usize),
    #[error("field is required")]
    Missing,
    #[error("field must not be empty")]
    Empty,
    #[error("field must be {expected}")]
    WrongType { expected: &'static str },
    #[error("field of {0} bytes exceeds the limit of {MAX_ID_BYTES} bytes")]
    TooLong(usize),
    #[error("unknown event kind {0:?} (expected view, click, add_to_cart, purchase or rate)")]
    UnknownKind(String),
    #[error("unparsable timestamp: {0}")]
    BadTimestamp(String),
    #[error("timestamp {0} ms is outside 1990-01-01..2100-01-01")]
    AbsurdTimestamp(i64),
    #[error("number must be finite")]
    NonFinite,
    #[error("number {0} is out of range")]
    OutOfRange(String),
    #[error("{0}")]
    DuplicateKey(String),
    #[error("identifier must not be blank")]
    Blank,
    #[error("identifier holds the unprintable character U+{0:04X} (control, bidi or zero-width)")]
    Unprintable(u32),
    #[error("timestamp {ts} ms is more than {skew_ms} ms ahead of its arrival at {arrival} ms")]
    FutureTimestamp { ts: i64, arrival: i64, skew_ms: i64 },
    #[error("subject {subject:?} does not carry this message (expected {expected:?})")]
    SubjectMismatch { subject: String, expected: String },
    #[error("the catalog holds its limit of {0} items; new items are refused")]
    CatalogFull(usize),
    #[error("the learners know their limit of {0} distinct items; events on new items are refused")]
    ItemLimit(usize),
    #[error("schema version {0} is not supported (this server reads versions 1 and 2)")]
    UnsupportedSchema(u64),
}

impl Reason {
    /// Short stable code: used in API error bodies and as the dead-letter subject suffix.
    /// Every code [`Self::code`] answers, for metrics that exist before the first error.
    pub const CODES: [&'static str; 20] = [
        "invalid_json",
        "not_an_object",
        "payload_too_large",
        "missing_field",
        "empty_field",
        "wrong_type",
        "too_long",
        "unknown_kind",
        "bad_timestamp",
        "absurd_timestamp",
        "non_finite",
        "out_of_range",
        "duplicate_key",
        "blank_id",
        "unprintable_id",
        "future_timestamp",
        "subject_mismatch",
        "catalog_full",
        "item_limit",
        "unsupported_schema",
    ];

    pub fn code(&self) -> &'static str {
        match self {
            Reason::InvalidJson(_) => "invalid_json",
            Reason::NotAnObject => "not_an_object",
            Reason::PayloadTooLarge(_) => "payload_too_large",
            Reason::Missing => "missing_field",
            Reason::Empty => "empty_field",
            Reason::WrongType { .. } => "wrong_type",
            Reason::TooLong(_) => "too_long",
            Reason::UnknownKind(_) => "unknown_kind",
            Reason::BadTimestamp(_) => "bad_timestamp",
            Reason::AbsurdTimestamp(_) => "absurd_timestamp",
            Reason::NonFinite => "non_finite",
            Reason::OutOfRange(_) => "out_of_range",
            Reason::DuplicateKey(_) => "duplicate_key",
            Reason::Blank => "blank_id",
            Reason::Unprintable(_) => "unprintable_id",
            Reason::FutureTimestamp { .. } => "future_timestamp",
            Reason::SubjectMismatch { .. } => "subject_mismatch",
            Reason::CatalogFull(_) => "catalog_full",
            Reason::ItemLimit(_) => "item_limit",
            Reason::UnsupportedSchema(_) => "unsupported_schema",
        }
    }
}

/// A rejected payload: which field, and why. `field` is empty for whole-payload problems.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {reason}", if field.is_empty() { "payload" } else { field.as_str() })]
pub struct ValidationError {
    pub field: String,
    pub reason: Reason,
}

impl ValidationError {
    pub fn new(field: &str, reason: Reason) -> Self {
        Self {
            field: field.to_owned(),
            reason,
        }
    }

    /// An error about the payload as a whole rather than one field.
    pub fn payload(reason: Reason) -> Self {
        Self::new("", reason)
    }
}

/// Parses raw bytes into a JSON object, enforcing the payload size limit first.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ValidationError> {
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(ValidationError::payload(Reason::PayloadTooLarge(
            bytes.len(),
        )));
    }
    match crate::unique_json::from_slice(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ValidationError::payload(Reason::NotAnObject)),
        Err(e) => Err(ValidationError::payload(e.into())),
    }
}

impl From<crate::unique_json::JsonError> for Reason {
    fn from(error: crate::unique_json::JsonError) -> Self {
        match error {
            crate::unique_json::JsonError::DuplicateKey(m) => Reason::DuplicateKey(m),
            crate::unique_json::JsonError::Invalid(m) => Reason::InvalidJson(m),
        }
    }
}

/// The object inside a JSON value (an element of an API batch, say).
pub fn as_object(value: &Value) -> Result<&Map<String, Value>, ValidationError> {
    value
        .as_object()
        .ok_or_else(|| ValidationError::payload(Reason::NotAnObject))
}

/// Reads fields out of one JSON object, turning every problem into a [`ValidationError`].
pub(crate) struct Fields<'a>(pub &'a Map<String, Value>);

impl<'a> Fields<'a> {
    /// A present, non-null field.
    fn get(&self, name: &str) -> Option<&'a Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    pub fn required(&self, name: &str) -> Result<&'a Value, ValidationError> {
        self.get(name)
            .ok_or_else(|| ValidationError::new(name, Reason::Missing))
    }

    /// A required identifier: a non-empty string of at most [`MAX_ID_BYTES`] bytes.
    pub fn id(&self, name: &str) -> Result<String, ValidationError> {
        check_id(name, self.required(name)?)
    }

    pub fn optional_id(&self, name: &str) -> Result<Option<String>, ValidationError> {
        self.get(name).map(|v| check_id(name, v)).transpose()
    }

    pub fn optional_string(&self, name: &str) -> Result<Option<String>, ValidationError> {
        self.get(name)
            .map(|v| {
                v.as_str().map(str::to_owned).ok_or_else(|| {
                    ValidationError::new(
                        name,
                        Reason::WrongType {
                            expected: "a string",
                        },
                    )
                })
            })
            .transpose()
    }

    pub fn optional_object(
        &self,
        name: &str,
    ) -> Result<Option<Map<String, Value>>, ValidationError> {
        self.get(name)
            .map(|v| {
                v.as_object().cloned().ok_or_else(|| {
                    ValidationError::new(
                        name,
                        Reason::WrongType {
                            expected: "an object",
                        },
                    )
                })
            })
            .transpose()
    }

    pub fn optional_bool(&self, name: &str) -> Result<Option<bool>, ValidationError> {
        self.get(name)
            .map(|v| {
                v.as_bool().ok_or_else(|| {
                    ValidationError::new(
                        name,
                        Reason::WrongType {
                            expected: "a boolean",
                        },
                    )
                })
            })
            .transpose()
    }

    pub fn optional_u32(&self, name: &str) -> Result<Option<u32>, ValidationError> {
        self.get(name)
            .map(|v| {
                let Some(n) = v.as_number() else {
                    return Err(ValidationError::new(
                        name,
                        Reason::WrongType {
                            expected: "a non-negative integer",
                        },
                    ));
                };
                n.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| ValidationError::new(name, Reason::OutOfRange(n.to_string())))
            })
            .transpose()
    }

    /// The payload's `schema_version`: absent means 1; a version this code does not know
    /// is `unsupported_schema`.
    pub fn schema_version(&self) -> Result<u32, ValidationError> {
        const NAME: &str = "schema_version";
        let Some(value) = self.get(NAME) else {
            return Ok(1);
        };
        let version = value.as_u64().ok_or_else(|| {
            ValidationError::new(
                NAME,
                Reason::WrongType {
                    expected: "a positive integer",
                },
            )
        })?;
        match u32::try_from(version) {
            Ok(v) if crate::SCHEMA_VERSIONS.contains(&v) => Ok(v),
            Ok(0) => Err(ValidationError::new(
                NAME,
                Reason::OutOfRange("0".to_owned()),
            )),
            _ => Err(ValidationError::new(
                NAME,
                Reason::UnsupportedSchema(version),
            )),
        }
    }

    /// Optional identifiers, at most `max` of them.
    pub fn optional_ids(
        &self,
        name: &str,
        max: usize,
    ) -> Result<Option<Vec<String>>, ValidationError> {
        let Some(value) = self.get(name) else {
            return Ok(None);
        };
        let list = value.as_array().ok_or_else(|| {
            ValidationError::new(
                name,
                Reason::WrongType {
                    expected: "an array of identifiers",
                },
            )
        })?;
        if list.len() > max {
            return Err(ValidationError::new(
                name,
                Reason::OutOfRange(format!("{} items (at most {max})", list.len())),
            ));
        }
        list.iter()
            .map(|v| check_id(name, v))
            .collect::<Result<_, _>>()
            .map(Some)
    }

    /// An optional ISO 4217 currency code: three upper-case letters.
    pub fn optional_currency(&self, name: &str) -> Result<Option<String>, ValidationError> {
        let code = self.optional_string(name)?;
        match &code {
            Some(c) if c.len() != 3 || !c.bytes().all(|b| b.is_ascii_uppercase()) => {
                Err(ValidationError::new(
                    name,
                    Reason::WrongType {
                        expected: "an ISO 4217 code (three upper-case letters)",
                    },
                ))
            }
            _ => Ok(code),
        }
    }

    /// An optional finite number, at least 0.
    pub fn optional_non_negative(&self, name: &str) -> Result<Option<f64>, ValidationError> {
        let x = self.optional_f64(name)?;
        match x {
            Some(x) if x < 0.0 => Err(ValidationError::new(
                name,
                Reason::OutOfRange(x.to_string()),
            )),
            _ => Ok(x),
        }
    }

    pub fn optional_f64(&self, name: &str) -> Result<Option<f64>, ValidationError> {
        self.get(name)
            .map(|v| {
                let x = v.as_f64().ok_or_else(|| {
                    ValidationError::new(
                        name,
                        Reason::WrongType {
                            expected: "a number",
                        },
                    )
                })?;
                check_finite(name, x)
            })
            .transpose()
    }
}

fn check_id(name: &str, value: &Value) -> Result<String, ValidationError> {
    let s = value.as_str().ok_or_else(|| {
        ValidationError::new(
            name,
            Reason::WrongType {
                expected: "a string",
            },
        )
    })?;
    if s.is_empty() {
        return Err(ValidationError::new(name, Reason::Empty));
    }
    printable_id(s).map_err(|reason| ValidationError::new(name, reason))
}

/// An identifier as streamrec keeps it: NFC-normalised (so one name has one spelling),
/// within [`MAX_ID_BYTES`], not blank, and free of characters that make two ids look alike or
/// an id look like something else: control characters (NUL included), bidirectional
/// overrides and isolates, zero-width characters.
pub fn printable_id(s: &str) -> Result<String, Reason> {
    use unicode_normalization::UnicodeNormalization;
    if s.len() > MAX_ID_BYTES {
        return Err(Reason::TooLong(s.len()));
    }
    let id: String = s.nfc().collect();
    if id.len() > MAX_ID_BYTES {
        return Err(Reason::TooLong(id.len()));
    }
    if let Some(c) = id.chars().find(|&c| unprintable(c)) {
        return Err(Reason::Unprintable(u32::from(c)));
    }
    if id.trim().is_empty() {
        return Err(Reason::Blank);
    }
    Ok(id)
}

fn unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c,
            // Bidirectional marks, embeddings, overrides and isolates.
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
            // Zero-width space, joiners, word joiner, invisible operators, BOM.
            | '\u{200B}'..='\u{200D}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}')
}

pub(crate) fn check_finite(name: &str, x: f64) -> Result<f64, ValidationError> {
    if x.is_finite() {
        Ok(x)
    } else {
        Err(ValidationError::new(name, Reason::NonFinite))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_code_list_names_every_reason_once() {
        let every = [
            Reason::InvalidJson(String::new()),
            Reason::NotAnObject,
            Reason::PayloadTooLarge(0),
            Reason::Missing,
            Reason::Empty,
            Reason::WrongType { expected: "" },
            Reason::TooLong(0),
            Reason::UnknownKind(String::new()),
            Reason::BadTimestamp(String::new()),
            Reason::AbsurdTimestamp(0),
            Reason::NonFinite,
            Reason::OutOfRange(String::new()),
            Reason::DuplicateKey(String::new()),
            Reason::Blank,
            Reason::Unprintable(0),
            Reason::FutureTimestamp {
                ts: 0,
                arrival: 0,
                skew_ms: 0,
            },
            Reason::SubjectMismatch {
                subject: String::new(),
                expected: String::new(),
            },
            Reason::CatalogFull(0),
            Reason::ItemLimit(0),
            Reason::UnsupportedSchema(3),
        ];
        let codes: Vec<&str> = every.iter().map(Reason::code).collect();
        assert_eq!(codes, Reason::CODES);
    }

    #[test]
    fn ids_are_nfc_and_refuse_blank_control_bidi_and_zero_width() {
        assert_eq!(printable_id("cafe\u{301}"), Ok("caf\u{e9}".to_owned()));
        assert_eq!(printable_id("user 42"), Ok("user 42".to_owned()));
        assert_eq!(printable_id(" \t"), Err(Reason::Unprintable(9)));
        assert_eq!(printable_id("   "), Err(Reason::Blank));
        for (s, c) in [
            ("a\u{0}", 0),
            ("a\u{7f}", 0x7f),
            ("\u{202E}evil", 0x202e),
            ("a\u{2066}b", 0x2066),
            ("a\u{200B}b", 0x200b),
            ("\u{FEFF}a", 0xfeff),
        ] {
            assert_eq!(printable_id(s), Err(Reason::Unprintable(c)), "{s:?}");
        }
        assert_eq!(
            printable_id(&"x".repeat(MAX_ID_BYTES + 1)),
            Err(Reason::TooLong(MAX_ID_BYTES + 1))
        );
    }

    proptest! {
        /// Whatever goes in, what comes out is NFC, printable, and a fixed point.
        #[test]
        fn an_accepted_id_is_its_own_normal_form(s in "\\PC{1,40}") {
            if let Ok(id) = printable_id(&s) {
                prop_assert_eq!(printable_id(&id), Ok(id.clone()));
                prop_assert!(!id.trim().is_empty());
                prop_assert!(!id.chars().any(unprintable));
            }
        }
    }
}
