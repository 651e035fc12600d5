//! The name of a snapshot version, as clients send it in paths, queries and bodies.
//!
//! A version names a folder on the server's disk, so it is parsed into this type before any
//! filesystem call: only `<stream sequence, zero-padded to at least 12 digits>-<12 lowercase
//! hex digits of the content hash>` can be held, which has no separator, no `..` and no
//! room for anything a path could smuggle in.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Digits of the sequence part: zero-padded to 12, and a `u64` has at most 20.
const MIN_SEQ_DIGITS: usize = 12;
const MAX_SEQ_DIGITS: usize = 20;
/// Hex digits of the content-hash part.
const HASH_DIGITS: usize = 12;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SnapshotVersion(String);

/// Why a string is not a snapshot version; says what the form is, never echoes a path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a snapshot version: expected <sequence, 12 to 20 digits>-<12 lowercase hex digits>, e.g. 000000001234-0123456789ab"
)]
pub struct InvalidVersion;

impl SnapshotVersion {
    /// The version of a snapshot at stream position `last_seq` whose content hashes to
    /// `content_hex` (at least 12 lowercase hex digits; the first 12 are kept).
    pub fn new(last_seq: u64, content_hex: &str) -> Result<Self, InvalidVersion> {
        let hash = content_hex.get(..HASH_DIGITS).ok_or(InvalidVersion)?;
        format!("{last_seq:012}-{hash}").parse()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The stream sequence the snapshot has applied (parsing checked it fits a `u64`).
    pub fn seq(&self) -> u64 {
        self.0
            .split_once('-')
            .and_then(|(seq, _)| seq.parse().ok())
            .unwrap_or(0)
    }
}

impl FromStr for SnapshotVersion {
    type Err = InvalidVersion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (seq, hash) = s.split_once('-').ok_or(InvalidVersion)?;
        let seq_ok = (MIN_SEQ_DIGITS..=MAX_SEQ_DIGITS).contains(&seq.len())
            && seq.bytes().all(|b| b.is_ascii_digit())
            && seq.parse::<u64>().is_ok();
        let hash_ok = hash.len() == HASH_DIGITS
            && hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if seq_ok && hash_ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidVersion)
        }
    }
}

impl fmt::Display for SnapshotVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for SnapshotVersion {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for SnapshotVersion {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for SnapshotVersion {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl Serialize for SnapshotVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Deserialising validates too: a manifest naming a version of another form is corrupt.
impl<'de> Deserialize<'de> for SnapshotVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_the_store_writes() {
        let v = SnapshotVersion::new(1234, "0123456789abcdef").expect("valid");
        assert_eq!(v.as_str(), "000000001234-0123456789ab");
        assert_eq!(
            v,
            v.as_str().parse::<SnapshotVersion>().expect("round trip")
        );
        let big = SnapshotVersion::new(u64::MAX, "ffffffffffff").expect("20 digits");
        assert_eq!(big.as_str(), "18446744073709551615-ffffffffffff");
    }

    #[test]
    fn rejects_paths_and_near_misses() {
        for bad in [
            "",
            "..",
            "../../etc",
            "..%2F..%2Fanywhere",
            "/some/path",
            "000000001234-0123456789AB",
            "000000001234-0123456789a",
            "000000001234-0123456789abc",
            "00000001234-0123456789ab",
            "000000001234-0123456789ab/..",
            "000000001234_0123456789ab",
            "99999999999999999999-0123456789ab",
            "online-3",
            "000000001234-01234567\u{0}9ab",
        ] {
            assert!(bad.parse::<SnapshotVersion>().is_err(), "{bad:?}");
        }
    }
}
