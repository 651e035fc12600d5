//! `streamrec evaluate ml100k`: MovieLens-100K replayed in time order through the learners
//! and the request path's stages (candidates, re-ranker, rules, bandit), with each answer's
//! impression learned in stream order as the engine learns it (`streamrec_pipeline`'s
//! offline engine: no actors, no bus, so the figures depend on the log alone), scored as
//! `../shared/baselines/README.md` scores its baselines. ANN neighbours come from an exact
//! scan here; the engine's HNSW index approximates it.
//!
//! - `next-item`: every rating but each user's last is learned; then each user's last item
//!   is the target of one top-10 request for that user's last session, over all items the
//!   user has not rated.
//! - `prequential`: before each rating is learned, its session (and user) asks for a top 10
//!   and the rating's item is looked for in it; reported overall and per slice of the log.

use std::collections::HashMap;
use std::time::Instant;

use clap::{Args, ValueEnum};
use serde::Serialize;
use streamrec_learner::online::{OnlineConfig, OnlineModels};
use streamrec_pipeline::{OfflineEngine, RecommendRequest};
use streamrec_proto::Event;
use streamrec_ranker::ComputeDevice;

use crate::cli::DataArgs;
use crate::learning_curve::CurvePoint;
use crate::movielens;

const K: usize = 10;
/// Items in each published popularity ranking, as the engine's default.
const POPULARITY_VIEW: usize = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    NextItem,
    Prequential,
}

#[derive(Debug, Args)]
pub struct Ml100kArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long, value_enum, default_value_t = Protocol::NextItem)]
    pub protocol: Protocol,
    /// Serve stage one's order only (the re-ranker still trains): the ablation.
    #[arg(long)]
    pub no_rerank: bool,
    /// Prequential: slices of the log the curve is reported in.
    #[arg(long, default_value_t = 10)]
    pub slices: usize,
    /// Prequential: also draw the learning curve (HR@10 per slice) into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub covisit: crate::cli::CovisitArgs,
}

/// Hit metrics at K over some targets.
#[derive(Debug, Default, Clone, Copy)]
struct Hits {
    n: u64,
    hits: u64,
    ndcg: f64,
    mrr: f64,
}

impl Hits {
    /// Records one target found at `rank` (0-based), or not found.
    fn record(&mut self, rank: Option<usize>) {
        self.n += 1;
        if let Some(r) = rank.filter(|&r| r < K) {
            self.hits += 1;
            self.ndcg += 1.0 / ((r + 2) as f64).log2();
            self.mrr += 1.0 / (r + 1) as f64;
        }
    }

    fn hit_rate(&self) -> f64 {
        self.hits as f64 / self.n.max(1) as f64
    }

    fn json(&self) -> serde_json::Value {
        let n = self.n.max(1) as f64;
        serde_json::json!({
            "n": self.n,
            "hr@10": self.hit_rate(),
            "ndcg@10": self.ndcg / n,
            "mrr@10": self.mrr / n,
        })
    }
}

async fn rank_of(
    engine: &mut OfflineEngine,
    event: &Event,
    rec_id: String,
) -> anyhow::Result<Option<usize>> {
    let request = RecommendRequest {
        session_id: event.session_id.clone(),
        user_id: event.user_id.clone(),
        k: K,
        rec_id,
        ..RecommendRequest::default()
    };
    let items = engine.recommend(&request).await?;
    Ok(items.iter().position(|i| i.item_id == event.item_id))
}

fn learn(engine: &mut OfflineEngine, events: &[Event]) -> anyhow::Result<()> {
    for event in events {
        engine.learn(event)?;
    }
    Ok(())
}

pub async fn run(args: Ml100kArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.plot.is_none() || args.protocol == Protocol::Prequential,
        "--plot draws the prequential learning curve: give --protocol prequential"
    );
    let events = movielens::load_events(&args.data.data)?;
    let mut config = OnlineConfig::default();
    args.covisit.apply(&mut config);
    let mut engine = OfflineEngine::new(
        OnlineModels::new(config),
        ComputeDevice::Cpu,
        POPULARITY_VIEW,
        !args.no_rerank,
    )?;
    let started = Instant::now();
    let report = match args.protocol {
        Protocol::NextItem => next_item(&mut engine, &events).await?,
        Protocol::Prequential => {
            let (report, curve, overall) =
                prequential(&mut engine, &events, args.slices.max(1)).await?;
            if let Some(path) = &args.plot {
                crate::learning_curve::draw(path, &curve, overall)?;
                eprintln!("learning curve drawn to {}", path.display());
            }
            report
        }
    };
    let mut report = report;
    report["protocol"] = serde_json::to_value(args.protocol)?;
    report["elapsed_s"] = serde_json::json!(started.elapsed().as_secs_f64());
    report["reranked"] = serde_json::json!(!args.no_rerank);
    report["window_features"] = serde_json::json!(args.covisit.window_features);
    report["reranker_steps"] = serde_json::json!(engine.models().reranker.steps);
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

async fn next_item(
    engine: &mut OfflineEngine,
    events: &[Event],
) -> anyhow::Result<serde_json::Value> {
    // Each user's last event, by position in the time-ordered log.
    let mut last: HashMap<&str, usize> = HashMap::new();
    for (i, e) in events.iter().enumerate() {
        last.insert(e.user_id.as_deref().unwrap_or(&e.session_id), i);
    }
    let mut targets: Vec<usize> = last.into_values().collect();
    targets.sort_unstable();
    let train: Vec<Event> = events
        .iter()
        .enumerate()
        .filter(|(i, _)| targets.binary_search(i).is_err())
        .map(|(_, e)| e.clone())
        .collect();
    learn(engine, &train)?;
    let mut hits = Hits::default();
    for &t in &targets {
        let event = &events[t];
        hits.record(rank_of(engine, event, format!("eval-next-{t}")).await?);
    }
    Ok(hits.json())
}

async fn prequential(
    engine: &mut OfflineEngine,
    events: &[Event],
    slices: usize,
) -> anyhow::Result<(serde_json::Value, Vec<CurvePoint>, f64)> {
    let per_slice = events.len().div_ceil(slices);
    let mut points = Vec::with_capacity(slices);
    let mut overall = Hits::default();
    let mut curve = Vec::with_capacity(slices);
    let mut slice = Hits::default();
    for (i, event) in events.iter().enumerate() {
        let rank = rank_of(engine, event, format!("eval-preq-{i}")).await?;
        overall.record(rank);
        slice.record(rank);
        engine.learn(event)?;
        if (i + 1) % per_slice == 0 || i + 1 == events.len() {
            points.push(CurvePoint {
                events: i as u64 + 1,
                hr_at_10: slice.hit_rate(),
            });
            curve.push(slice.json());
            slice = Hits::default();
        }
    }
    let mut out = overall.json();
    out["curve"] = serde_json::Value::Array(curve);
    Ok((out, points, overall.hit_rate()))
}
