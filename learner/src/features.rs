//! Hashed sparse features with namespaces and crosses (the "hashing trick", as in Vowpal
//! Wabbit): a feature's weight lives at `hash(namespace, name) mod 2^bits`, so the model has
//! a fixed size whatever the number of distinct ids, and new ids need no vocabulary.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Multiplier mixing two feature hashes into the hash of their cross.
const CROSS_MIX: u64 = 0x9E37_79B9_7F4A_7C15;
/// Index reserved for the bias (intercept) feature, before masking.
const BIAS_HASH: u64 = 0x5EED_B1A5;

/// One namespace of an example: a letter naming it and its hashed features.
#[derive(Debug, Clone, PartialEq)]
pub struct Namespace {
    pub id: char,
    pub features: Vec<(u64, f32)>,
}

impl Namespace {
    pub fn new(id: char) -> Self {
        Self {
            id,
            features: Vec::new(),
        }
    }

    /// Adds a categorical feature (`name` present, value 1).
    pub fn categorical(mut self, name: &str) -> Self {
        self.push(name, 1.0);
        self
    }

    /// Adds a numeric feature.
    pub fn numeric(mut self, name: &str, value: f32) -> Self {
        self.push(name, value);
        self
    }

    pub fn push(&mut self, name: &str, value: f32) {
        let hash = xxh3_64_with_seed(name.as_bytes(), self.id as u64);
        self.features.push((hash, value));
    }
}

/// An example: its namespaces. Built once, expanded into indices by a [`FeatureSpace`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Example {
    pub namespaces: Vec<Namespace>,
}

impl Example {
    pub fn new(namespaces: Vec<Namespace>) -> Self {
        Self { namespaces }
    }

    fn namespace(&self, id: char) -> Option<&Namespace> {
        self.namespaces.iter().find(|n| n.id == id)
    }
}

/// How examples map to weight indices: table size and the namespace pairs to cross.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSpace {
    /// The weight table has `2^bits` entries.
    pub bits: u32,
    /// Pairs of namespaces whose features are crossed (products of every pair of features).
    pub crosses: Vec<(char, char)>,
}

impl FeatureSpace {
    pub fn new(bits: u32, crosses: Vec<(char, char)>) -> Self {
        Self {
            bits: bits.clamp(1, 31),
            crosses,
        }
    }

    pub fn size(&self) -> usize {
        1 << self.bits
    }

    fn mask(&self, hash: u64) -> u32 {
        (hash & ((1u64 << self.bits) - 1)) as u32
    }

    /// Writes the example's (index, value) pairs, bias first, then raw features, then
    /// crosses, into `out` (cleared first).
    pub fn expand(&self, example: &Example, out: &mut Vec<(u32, f32)>) {
        out.clear();
        out.push((self.mask(BIAS_HASH), 1.0));
        for ns in &example.namespaces {
            out.extend(ns.features.iter().map(|&(h, v)| (self.mask(h), v)));
        }
        for &(a, b) in &self.crosses {
            let (Some(left), Some(right)) = (example.namespace(a), example.namespace(b)) else {
                continue;
            };
            for &(ha, va) in &left.features {
                for &(hb, vb) in &right.features {
                    out.push((self.mask(ha.wrapping_mul(CROSS_MIX) ^ hb), va * vb));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_counts_bias_raw_and_crosses() {
        let space = FeatureSpace::new(18, vec![('u', 'i')]);
        let ex = Example::new(vec![
            Namespace::new('u').categorical("u1").categorical("young"),
            Namespace::new('i')
                .categorical("sku9")
                .numeric("price", 2.0),
            Namespace::new('c').categorical("ios"),
        ]);
        let mut out = Vec::new();
        space.expand(&ex, &mut out);
        assert_eq!(out.len(), 1 + 5 + 4);
        assert!(out.iter().all(|&(i, _)| (i as usize) < space.size()));
        // The cross of "young" with price carries the product of the values.
        assert_eq!(out.iter().filter(|&&(_, v)| v == 2.0).count(), 1 + 2);
    }

    #[test]
    fn hashing_is_stable_and_namespaced() {
        let a = Namespace::new('u').categorical("x");
        let b = Namespace::new('u').categorical("x");
        let c = Namespace::new('i').categorical("x");
        assert_eq!(a, b);
        assert_ne!(a.features[0].0, c.features[0].0);
    }
}
