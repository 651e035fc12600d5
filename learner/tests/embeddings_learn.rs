//! Item embeddings learn co-occurrence: items that share sessions end up closer than items
//! that never do, and learning is bit-for-bit reproducible.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use streamrec_learner::embeddings::{EmbeddingConfig, ItemEmbeddings};
use streamrec_learner::intent::session_intent;

const CLUSTERS: usize = 4;
const PER_CLUSTER: usize = 10;

/// Sessions that browse within one cluster of items.
fn sessions(n: usize, seed: u64) -> Vec<Vec<String>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let cluster = rng.random_range(0..CLUSTERS);
            (0..8)
                .map(|_| format!("c{cluster}-i{}", rng.random_range(0..PER_CLUSTER)))
                .collect()
        })
        .collect()
}

fn train(sessions: &[Vec<String>]) -> ItemEmbeddings {
    let mut e = ItemEmbeddings::new(EmbeddingConfig {
        dim: 16,
        ..EmbeddingConfig::default()
    });
    for session in sessions {
        for (t, item) in session.iter().enumerate() {
            let previous: Vec<&str> = session[..t].iter().rev().map(String::as_str).collect();
            e.observe(item, &previous);
        }
    }
    e
}

#[test]
fn items_of_a_cluster_are_closer_than_items_across_clusters() {
    let e = train(&sessions(3_000, 1));
    let (mut within, mut across) = (Vec::new(), Vec::new());
    for c in 0..CLUSTERS {
        for i in 0..PER_CLUSTER {
            for j in (i + 1)..PER_CLUSTER {
                within.push(
                    e.similarity(&format!("c{c}-i{i}"), &format!("c{c}-i{j}"))
                        .expect("known"),
                );
            }
            across.push(
                e.similarity(
                    &format!("c{c}-i{i}"),
                    &format!("c{}-i{i}", (c + 1) % CLUSTERS),
                )
                .expect("known"),
            );
        }
    }
    let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
    println!(
        "mean cosine within {:.3}, across {:.3}",
        mean(&within),
        mean(&across)
    );
    assert!(mean(&within) > mean(&across) + 0.3);
    // Nearest neighbours of an item are of its own cluster.
    let neighbours = e.most_similar("c2-i0", 5);
    assert!(
        neighbours.iter().all(|(id, _)| id.starts_with("c2-")),
        "{neighbours:?}"
    );
    // A session's intent points at its cluster.
    let intent = session_intent(["c3-i1", "c3-i4"], &e, 0.7, 10).expect("known items");
    let best = e
        .ids()
        .iter()
        .max_by(|a, b| {
            let s = |id: &str| {
                streamrec_learner::embeddings::cosine(&intent, e.vector(id).unwrap_or(&[]))
            };
            s(a).total_cmp(&s(b))
        })
        .expect("items");
    assert!(best.starts_with("c3-"), "{best}");
}

#[test]
fn the_same_events_from_the_same_seed_give_identical_state() {
    let data = sessions(300, 9);
    let a = serde_json::to_vec(&train(&data)).expect("serialisable");
    let b = serde_json::to_vec(&train(&data)).expect("serialisable");
    assert!(a == b, "two runs diverged");
}
