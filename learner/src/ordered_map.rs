//! Hash maps on the request path, sorted maps on disk: serialising a map in key order keeps
//! the rule that equal learner states write equal bytes, without paying for ordered lookups
//! (string comparisons down a B-tree) on every candidate of every request.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

/// `#[serde(serialize_with = "crate::ordered_map::serialize")]` for any map whose reference
/// iterates `(&key, &value)`.
pub fn serialize<'a, M, K, V, S>(map: &'a M, serializer: S) -> Result<S::Ok, S::Error>
where
    &'a M: IntoIterator<Item = (&'a K, &'a V)>,
    K: Ord + Serialize + 'a,
    V: Serialize + 'a,
    S: Serializer,
{
    map.into_iter()
        .collect::<BTreeMap<&K, &V>>()
        .serialize(serializer)
}

#[cfg(test)]
mod tests {
    use rustc_hash::FxHashMap;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Holder {
        #[serde(serialize_with = "super::serialize")]
        map: FxHashMap<String, u32>,
    }

    #[test]
    fn equal_maps_serialise_to_equal_sorted_bytes_and_round_trip() {
        let forward: FxHashMap<String, u32> = (0..50).map(|i| (format!("k{i}"), i)).collect();
        let backward: FxHashMap<String, u32> =
            (0..50).rev().map(|i| (format!("k{i}"), i)).collect();
        let a = serde_json::to_string(&Holder { map: forward }).expect("serialises");
        let b = serde_json::to_string(&Holder { map: backward }).expect("serialises");
        assert_eq!(a, b);
        assert!(a.starts_with(r#"{"map":{"k0":0,"k1":1,"k10":10"#));
        let back: Holder = serde_json::from_str(&a).expect("parses");
        assert_eq!(back.map.len(), 50);
    }
}
