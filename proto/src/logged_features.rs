//! Features logged where they were served (point-in-time logging): each impression carries,
//! for every item it showed, the exact input vector the re-ranker scored, and the stream
//! positions of the version that computed it, so an offline replay can recompute the same
//! vector from the same state and training reads what serving saw.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The stream positions a served version was published at: every message of the events
/// stream up to `events_seq` and of the items stream up to `items_seq` learned, none after.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamPosition {
    pub events_seq: u64,
    pub items_seq: u64,
}

/// Which layout a logged vector has, and where it was computed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureLog {
    /// The layout's name (the learner's `FEATURE_SET`): which input is where.
    pub set: String,
    pub as_of: StreamPosition,
}

/// A feature vector as little-endian `f32`s in base64: 4 bytes a value on the wire (a JSON
/// number list takes about 10) and bit-exact, NaN payloads included.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PackedFeatures(pub Vec<f32>);

impl PackedFeatures {
    pub fn encode(&self) -> String {
        let bytes: Vec<u8> = self.0.iter().flat_map(|v| v.to_le_bytes()).collect();
        STANDARD.encode(bytes)
    }

    pub fn decode(text: &str) -> Result<Self, String> {
        let bytes = STANDARD
            .decode(text)
            .map_err(|e| format!("not base64: {e}"))?;
        if bytes.len() % 4 != 0 {
            return Err(format!(
                "{} bytes is not a whole number of f32s",
                bytes.len()
            ));
        }
        Ok(Self(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ))
    }

    /// The values' bit patterns: what "the same features" means when comparing logs.
    pub fn bits(&self) -> Vec<u32> {
        self.0.iter().map(|v| v.to_bits()).collect()
    }
}

impl Serialize for PackedFeatures {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.encode())
    }
}

impl<'de> Deserialize<'de> for PackedFeatures {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::decode(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn packing_keeps_every_bit(bits in proptest::collection::vec(any::<u32>(), 0..40)) {
            let packed = PackedFeatures(bits.iter().map(|b| f32::from_bits(*b)).collect());
            let back = PackedFeatures::decode(&packed.encode()).expect("decodes");
            prop_assert_eq!(back.bits(), bits);
        }
    }

    #[test]
    fn a_vector_is_four_bytes_a_value_on_the_wire() {
        let packed = PackedFeatures(vec![0.25; 11]);
        // 44 bytes of base64: 60 characters.
        assert_eq!(packed.encode().len(), 60);
    }

    #[test]
    fn a_ragged_or_garbled_vector_is_refused() {
        assert!(PackedFeatures::decode("AAAA").is_err_and(|e| e.contains("f32")));
        assert!(PackedFeatures::decode("not base64!").is_err());
    }
}
