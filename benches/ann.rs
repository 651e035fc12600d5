//! The ANN index at catalog scale: `cargo bench --bench ann`.
//!
//! 100,000 vectors of 64 dimensions from a 100-cluster Gaussian mixture (the shape of the
//! reference benchmark in ../shared/baselines/PERFORMANCE.md), 1,000 queries from the same
//! mixture, ground truth by exact search. Reports the graph's build time, then recall@10 and
//! queries/s on one thread for a sweep of ef_search, beside the exact scan.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use streamrec_ranker::{AnnIndex, ExactIndex, FreshIndex, HnswParams};

const DIM: usize = 64;
const ITEMS: usize = 100_000;
const QUERIES: usize = 1_000;
const K: usize = 10;

fn mixture(n: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut centers_rng = ChaCha8Rng::seed_from_u64(0);
    let centers: Vec<Vec<f32>> = (0..100)
        .map(|_| {
            (0..DIM)
                .map(|_| centers_rng.random_range(-1.0..1.0))
                .collect()
        })
        .collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let c = &centers[rng.random_range(0..centers.len())];
            c.iter()
                .map(|x| x + rng.random_range(-0.35..0.35))
                .collect()
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let vectors = mixture(ITEMS, 1);
    let queries = mixture(QUERIES, 2);
    let all = |_: u32| true;

    let exact = ExactIndex::new(DIM, &vectors);
    let started = Instant::now();
    let truth: Vec<Vec<u32>> = queries
        .iter()
        .map(|q| exact.search(q, K, &all).into_iter().map(|h| h.0).collect())
        .collect();
    let exact_qps = QUERIES as f64 / started.elapsed().as_secs_f64();
    println!("exact scan: {exact_qps:.0} queries/s (recall 1.0)");

    let started = Instant::now();
    let mut index = FreshIndex::build(DIM, &vectors, HnswParams::default())?;
    println!(
        "hnsw_rs build: {ITEMS} vectors in {:.1} s (M 16, ef_construction 200, one thread)",
        started.elapsed().as_secs_f64()
    );
    for ef in [16, 32, 64, 128, 256] {
        index = index.with_ef_search(ef);
        let started = Instant::now();
        let found: usize = queries
            .iter()
            .zip(&truth)
            .map(|(q, t)| {
                index
                    .search(q, K, &all)
                    .iter()
                    .filter(|h| t.contains(&h.0))
                    .count()
            })
            .sum();
        let qps = QUERIES as f64 / started.elapsed().as_secs_f64();
        println!(
            "ef_search {ef:>3}: recall@10 {:.4}, {qps:>8.0} queries/s ({:.0}x exact)",
            found as f64 / (QUERIES * K) as f64,
            qps / exact_qps
        );
    }
    Ok(())
}
