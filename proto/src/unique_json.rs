//! JSON parsing that refuses an object naming one key twice. serde_json keeps the last of
//! duplicates silently, so `{"item_id":"a","item_id":"b"}` would mean whatever the last
//! parser in a chain decides; two readers of one payload (a proxy that checks the first, the
//! engine that learns the last) must never disagree about what it says.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Start of the error message a duplicate key produces.
const DUPLICATE: &str = "duplicate key";

/// Why bytes are not acceptable JSON.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonError {
    /// Some object names this key twice.
    DuplicateKey(String),
    Invalid(String),
}

/// Parses `bytes` as JSON, rejecting any object with a repeated key.
pub fn from_slice(bytes: &[u8]) -> Result<Value, JsonError> {
    match serde_json::from_slice::<Unique>(bytes) {
        Ok(Unique(value)) => Ok(value),
        Err(error) => {
            let message = error.to_string();
            if message.starts_with(DUPLICATE) {
                Err(JsonError::DuplicateKey(message))
            } else {
                Err(JsonError::Invalid(message))
            }
        }
    }
}

struct Unique(Value);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueVisitor).map(Unique)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1_024));
        while let Some(Unique(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!("{DUPLICATE} {key:?}")));
            }
            let Unique(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_repeated_key_is_refused_at_any_depth() {
        for bad in [
            r#"{"a":1,"a":2}"#,
            r#"{"a":{"b":1,"b":1}}"#,
            r#"[{"x":1},{"y":2,"y":3}]"#,
        ] {
            assert!(
                matches!(from_slice(bad.as_bytes()), Err(JsonError::DuplicateKey(_))),
                "{bad}"
            );
        }
        assert!(matches!(from_slice(b"{\"a\":"), Err(JsonError::Invalid(_))));
    }

    proptest! {
        /// Without duplicates it reads exactly what serde_json reads.
        #[test]
        fn equals_serde_json_on_valid_json(value in json_value()) {
            let text = value.to_string();
            prop_assert_eq!(from_slice(text.as_bytes()), Ok(value));
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-1e9f64..1e9).prop_map(Value::from),
            "[a-z\\u{e9}\\u{4e2d} ]{0,8}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
