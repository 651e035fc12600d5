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
}

impl Reason {
    /// Short stable code: used in API error bodies and as the dead-letter subject suffix.
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
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ValidationError::payload(Reason::NotAnObject)),
        Err(e) => Err(ValidationError::payload(Reason::InvalidJson(e.to_string()))),
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
    if s.len() > MAX_ID_BYTES {
        return Err(ValidationError::new(name, Reason::TooLong(s.len())));
    }
    Ok(s.to_owned())
}

pub(crate) fn check_finite(name: &str, x: f64) -> Result<f64, ValidationError> {
    if x.is_finite() {
        Ok(x)
    } else {
        Err(ValidationError::new(name, Reason::NonFinite))
    }
}
