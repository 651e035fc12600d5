//! Session intent: a recency-weighted blend of the vectors of the session's recent items,
//! recomputed on every event of the session. Candidate generation queries with it.

use crate::embeddings::ItemEmbeddings;

/// Weight of an item relative to the one after it.
pub const DEFAULT_DECAY: f32 = 0.7;
/// Items of the session that count.
pub const DEFAULT_DEPTH: usize = 10;

/// Σ decayⁱ · v(itemᵢ) over the recent items (most recent first, i = 0), scaled to unit
/// length; `None` when no recent item has a vector yet.
pub fn session_intent<'a>(
    recent: impl IntoIterator<Item = &'a str>,
    embeddings: &ItemEmbeddings,
    decay: f32,
    depth: usize,
) -> Option<Vec<f32>> {
    blend_intent(
        recent,
        embeddings.dim(),
        |item| embeddings.vector(item),
        decay,
        depth,
    )
}

/// [`session_intent`] over any source of item vectors of `dim` dimensions: the learners'
/// and their read side's, so both compute the very same vector.
pub fn blend_intent<'v, K>(
    recent: impl IntoIterator<Item = K>,
    dim: usize,
    vector: impl Fn(K) -> Option<&'v [f32]>,
    decay: f32,
    depth: usize,
) -> Option<Vec<f32>> {
    let mut blend = vec![0.0f32; dim];
    let mut weight = 1.0f32;
    let mut any = false;
    for item in recent.into_iter().take(depth) {
        if let Some(v) = vector(item) {
            for (b, x) in blend.iter_mut().zip(v) {
                *b += weight * x;
            }
            any = true;
        }
        weight *= decay;
    }
    let norm = blend.iter().map(|x| x * x).sum::<f32>().sqrt();
    (any && norm > 0.0).then(|| blend.into_iter().map(|x| x / norm).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embeddings::{EmbeddingConfig, cosine};

    #[test]
    fn the_latest_item_weighs_most() {
        let mut e = ItemEmbeddings::new(EmbeddingConfig {
            dim: 8,
            ..EmbeddingConfig::default()
        });
        e.ensure("old");
        e.ensure("new");
        let intent = session_intent(["new", "old"], &e, 0.5, 10).expect("vectors exist");
        let new = e.vector("new").expect("exists");
        let old = e.vector("old").expect("exists");
        assert!(cosine(&intent, new) > cosine(&intent, old));
        assert!((intent.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn unknown_items_give_no_intent() {
        let e = ItemEmbeddings::new(EmbeddingConfig::default());
        assert!(session_intent(["nope"], &e, 0.7, 10).is_none());
    }
}
