//! The ANN index at catalog scale, each library beside the others on the same vectors:
//! `OMP_NUM_THREADS=1 cargo bench --bench ann --features faiss` (without the feature, hnsw_rs
//! alone). `ANN_ITEMS` sets the catalog (default 100,000).
//!
//! Vectors: 64 dimensions from the reference benchmark's clustered mixture
//! (`streamrec_ranker::synthetic`, the shape of ../shared/baselines/PERFORMANCE.md), 1,000
//! queries from the same mixture, ground truth by exact search. For every backend (and for
//! hnsw_rs with its stock scalar `DistL2`, to show what the distance costs): build time, then
//! recall@10 and queries/s on one thread over a sweep of ef_search, and the best queries/s at
//! recall@10 ≥ 0.95. M 16 and ef_construction 200 everywhere, as in the reference.

use std::time::Instant;

use hnsw_rs::prelude::{DistL2, Hnsw};
use streamrec_ranker::ann::lanes::normalized;
use streamrec_ranker::synthetic::ClusteredMixture;
use streamrec_ranker::{AnnBackend, AnnIndex, ExactIndex, FreshIndex, HnswParams};

const DIM: usize = 64;
const QUERIES: usize = 1_000;
const K: usize = 10;
const EF_SWEEP: [usize; 10] = [10, 16, 24, 32, 48, 64, 96, 128, 192, 256];

/// One point of a sweep: ef_search, recall@10, queries/s.
type Point = (usize, f64, f64);

fn sweep(
    search: &mut dyn FnMut(usize, &[f32]) -> Vec<u32>,
    queries: &[Vec<f32>],
    truth: &[Vec<u32>],
) -> Vec<Point> {
    EF_SWEEP
        .iter()
        .map(|&ef| {
            let started = Instant::now();
            let found: usize = queries
                .iter()
                .zip(truth)
                .map(|(q, t)| search(ef, q).iter().filter(|i| t.contains(i)).count())
                .sum();
            let qps = queries.len() as f64 / started.elapsed().as_secs_f64();
            (ef, found as f64 / (queries.len() * K) as f64, qps)
        })
        .collect()
}

fn report(name: &str, build_s: f64, points: &[Point]) {
    println!("{name}: build {build_s:.1} s");
    for (ef, recall, qps) in points {
        println!("  ef_search {ef:>3}: recall@10 {recall:.4}, {qps:>8.0} queries/s");
    }
    match points
        .iter()
        .filter(|p| p.1 >= 0.95)
        .map(|p| p.2)
        .max_by(f64::total_cmp)
    {
        Some(qps) => println!("  => {name}: {qps:.0} queries/s at recall@10 >= 0.95"),
        None => println!("  => {name}: recall@10 0.95 not reached in the sweep"),
    }
}

fn main() -> anyhow::Result<()> {
    let items: usize = std::env::var("ANN_ITEMS")
        .ok()
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(100_000);
    let mixture = ClusteredMixture::new(DIM, 100, 0);
    let vectors = mixture.sample(items, 1);
    let queries = mixture.sample(QUERIES, 2);
    println!("{items} vectors x {DIM} dims, {QUERIES} queries, one thread");

    let exact = ExactIndex::new(DIM, &vectors);
    let started = Instant::now();
    let truth: Vec<Vec<u32>> = queries
        .iter()
        .map(|q| {
            exact
                .search(q, K, &|_| true)
                .into_iter()
                .map(|h| h.0)
                .collect()
        })
        .collect();
    let exact_qps = QUERIES as f64 / started.elapsed().as_secs_f64();
    println!("exact scan: {exact_qps:.0} queries/s (recall 1.0)");

    for &backend in AnnBackend::available() {
        let params = HnswParams {
            backend,
            ..HnswParams::default()
        };
        let started = Instant::now();
        let mut index = Some(FreshIndex::build(DIM, &vectors, params)?);
        let build_s = started.elapsed().as_secs_f64();
        let mut current_ef = params.ef_search;
        let mut search = |ef: usize, q: &[f32]| -> Vec<u32> {
            if ef != current_ef {
                index = index.take().and_then(|i| i.with_ef_search(ef).ok());
                current_ef = ef;
            }
            index
                .as_ref()
                .map(|i| i.search(q, K, &|_| true).into_iter().map(|h| h.0).collect())
                .unwrap_or_default()
        };
        let points = sweep(&mut search, &queries, &truth);
        report(backend.name(), build_s, &points);
    }

    // hnsw_rs as it ships: its scalar DistL2 over the same unit vectors, searched directly.
    let unit: Vec<Vec<f32>> = vectors.iter().map(|v| normalized(v)).collect();
    let started = Instant::now();
    let stock = Hnsw::<f32, DistL2>::new(16, items, 16, 200, DistL2);
    for (i, v) in unit.iter().enumerate() {
        stock.insert_slice((v, i));
    }
    let build_s = started.elapsed().as_secs_f64();
    let unit_queries: Vec<Vec<f32>> = queries.iter().map(|q| normalized(q)).collect();
    let mut search = |ef: usize, q: &[f32]| -> Vec<u32> {
        stock
            .search(q, K, ef.max(K))
            .into_iter()
            .map(|n| n.d_id as u32)
            .collect()
    };
    let points = sweep(&mut search, &unit_queries, &truth);
    report("hnsw_rs with its stock DistL2", build_s, &points);
    Ok(())
}
