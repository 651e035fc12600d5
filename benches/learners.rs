//! Criterion: per-update cost of the online learners, one core.
//!
//! `cargo bench --bench learners`. FTRL learns the examples of `$VW_DATA` (the Vowpal Wabbit
//! benchmark file made by `scripts/bench-vw`; 59 features each with `-q ui`) when present,
//! else synthetic examples of the same shape. Embeddings learn MovieLens-100K sessions from
//! `data/ml-100k` when present, else synthetic sessions. The event-time window layer and the
//! whole learner (`OnlineModels::apply_event`, windows included) learn MovieLens-100K's
//! events in log order, the log's span added to every timestamp at each pass.

#[path = "common/vw_text.rs"]
mod vw_text;

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use streamrec_learner::embeddings::{EmbeddingConfig, ItemEmbeddings};
use streamrec_learner::{Example, Ftrl, Namespace};

const EXAMPLES: usize = 100_000;

fn ftrl_examples() -> Vec<(f64, Example)> {
    let path = std::env::var("VW_DATA")
        .unwrap_or_else(|_| "/var/tmp/streamrec-bench/data/lr_1m.vw".into());
    if let Ok(examples) = vw_text::read(Path::new(&path), EXAMPLES)
        && !examples.is_empty()
    {
        eprintln!("ftrl: {} examples from {path}", examples.len());
        return examples;
    }
    eprintln!("ftrl: {path} not found; synthetic examples of the same shape");
    (0..EXAMPLES)
        .map(|i| {
            let u = Namespace::new('u')
                .categorical(&format!("uid={}", i * 7919 % 100_000))
                .categorical(&format!("useg={}", i % 100))
                .categorical(&format!("ucty={}", i % 200))
                .categorical(&format!("uage={}", i % 10));
            let mut item = Namespace::new('i')
                .categorical(&format!("iid={}", i * 104_729 % 50_000))
                .categorical(&format!("ibr={}", i % 5_000))
                .categorical(&format!("icat={}", i % 100));
            for t in 0..5 {
                item.push(&format!("t={}", (i + t * 37) % 1_000), 1.0);
            }
            let mut n = Namespace::new('n');
            for j in 0..8 {
                n.push(&format!("x{j}"), ((i * (j + 3)) % 17) as f32 / 17.0);
            }
            (
                f64::from(u8::from(i % 3 == 0)),
                Example::new(vec![u, item, n]),
            )
        })
        .collect()
}

fn ftrl(c: &mut Criterion) {
    let examples = ftrl_examples();
    let mut model = Ftrl::new(vw_text::vw_comparable_config(0.1));
    let mut group = c.benchmark_group("ftrl");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("update", |b| {
        b.iter(|| {
            let (y, x) = &examples[i % examples.len()];
            i += 1;
            black_box(model.update(x, *y))
        })
    });
    group.bench_function("predict", |b| {
        b.iter(|| {
            let (_, x) = &examples[i % examples.len()];
            i += 1;
            black_box(model.predict(x))
        })
    });
    group.finish();
}

fn sessions() -> Vec<Vec<String>> {
    let data = Path::new("data/ml-100k");
    if let Ok(events) = streamrec_api::movielens::load_events(data) {
        let mut by_session: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for e in events {
            by_session.entry(e.session_id).or_default().push(e.item_id);
        }
        eprintln!("embeddings: {} MovieLens-100K sessions", by_session.len());
        return by_session.into_values().collect();
    }
    eprintln!("embeddings: data/ml-100k not found; synthetic sessions");
    (0..10_000)
        .map(|s| {
            (0..10)
                .map(|j| format!("i{}", (s * 31 + j * 7) % 1_682))
                .collect()
        })
        .collect()
}

fn embeddings(c: &mut Criterion) {
    let sessions = sessions();
    let steps: Vec<(usize, usize)> = sessions
        .iter()
        .enumerate()
        .flat_map(|(s, items)| (0..items.len()).map(move |t| (s, t)))
        .collect();
    let mut model = ItemEmbeddings::new(EmbeddingConfig::default());
    let mut group = c.benchmark_group("embeddings");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("observe_dim64_window5_neg5", |b| {
        b.iter(|| {
            let (s, t) = steps[i % steps.len()];
            i += 1;
            let items = &sessions[s];
            let previous: Vec<&str> = items[..t]
                .iter()
                .rev()
                .take(5)
                .map(String::as_str)
                .collect();
            model.observe(&items[t], &previous);
        })
    });
    group.finish();
}

fn ml100k_events() -> Vec<streamrec_proto::Event> {
    if let Ok(events) = streamrec_api::movielens::load_events(Path::new("data/ml-100k")) {
        eprintln!("windows: {} MovieLens-100K events", events.len());
        return events;
    }
    eprintln!("windows: data/ml-100k not found; synthetic events");
    (0..100_000_i64)
        .map(|n| streamrec_proto::Event {
            event_id: format!("e{n}"),
            session_id: format!("s{}", n % 943),
            user_id: None,
            kind: streamrec_proto::EventKind::Rate,
            item_id: format!("i{}", (n * 31) % 1_682),
            ts: 880_000_000_000 + n * 60_000,
            rec_id: None,
            position: None,
            value: None,
            context: None,
            details: Default::default(),
        })
        .collect()
}

/// Event `n` of an endless replay of `events`: each pass later by the log's span, with
/// fresh ids, so nothing is late or a duplicate because the log came round again.
fn replayed(events: &[streamrec_proto::Event], n: usize) -> streamrec_proto::Event {
    let span = events.last().map_or(0, |e| e.ts) - events.first().map_or(0, |e| e.ts) + 1;
    let pass = (n / events.len()) as i64;
    let mut event = events[n % events.len()].clone();
    event.ts += pass * span;
    if pass > 0 {
        event.event_id = format!("{}-{pass}", event.event_id);
    }
    event
}

/// An impression of 10 items around `event`, with logged inputs that vary by item.
fn logged_impression(event: &streamrec_proto::Event, n: usize) -> streamrec_proto::Impression {
    use streamrec_proto::{FeatureLog, PackedFeatures, ShownItem, StreamPosition};
    streamrec_proto::Impression {
        rec_id: format!("r{n}"),
        session_id: event.session_id.clone(),
        user_id: None,
        ts: event.ts,
        model_version: "bench".into(),
        items: (0..10)
            .map(|p| ShownItem {
                item_id: format!("i{}", (n + p) % 1_682),
                position: p as u32,
                propensity: 1.0,
                features: Vec::new(),
                candidate_features: Some(PackedFeatures(
                    (0..11)
                        .map(|f| ((n + p * 7 + f) % 97) as f32 / 97.0)
                        .collect(),
                )),
                rerank_score: Some(((n + p) % 113) as f32 / 50.0),
            })
            .collect(),
        traceparent: None,
        logged: Some(FeatureLog {
            set: streamrec_learner::candidates::FEATURE_SET.into(),
            as_of: StreamPosition::default(),
        }),
    }
}

fn windows(c: &mut Criterion) {
    use streamrec_learner::drift::DriftMonitor;
    use streamrec_learner::online::{OnlineConfig, OnlineModels};
    use streamrec_learner::window_features::WindowedFeatures;

    let events = ml100k_events();
    let mut group = c.benchmark_group("windows");
    group.throughput(Throughput::Elements(1));
    let mut features = WindowedFeatures::default();
    let mut n = 0;
    group.bench_function("window_layer_per_event", |b| {
        b.iter_batched(
            || {
                n += 1;
                (n, replayed(&events, n))
            },
            |(n, event)| black_box(features.observe_event(&event, (n % 1_682) as u32)),
            criterion::BatchSize::SmallInput,
        )
    });
    let mut drift = DriftMonitor::default();
    let mut n = 0;
    group.bench_function("drift_per_event", |b| {
        b.iter_batched(
            || {
                n += 1;
                (n, replayed(&events, n))
            },
            |(n, event)| {
                drift.observe_event(event.ts, (n % 1_682) as u32, event.kind);
                drift.close_through(event.ts - 5 * 60_000);
            },
            criterion::BatchSize::SmallInput,
        )
    });
    // A list of 10 as the engine logs it: every shown item's 11 inputs and its score.
    let mut drift = DriftMonitor::default();
    let mut n = 0;
    group.bench_function("drift_per_impression_of_10", |b| {
        b.iter_batched(
            || {
                n += 1;
                logged_impression(&replayed(&events, n), n)
            },
            |impression| {
                drift.observe_impression(impression.ts, &impression);
                drift.close_through(impression.ts - 5 * 60_000);
            },
            criterion::BatchSize::SmallInput,
        )
    });
    let mut models = OnlineModels::new(OnlineConfig::default());
    let mut seq = 0_u64;
    group.bench_function("whole_learner_per_event", |b| {
        b.iter_batched(
            || {
                seq += 1;
                (seq, replayed(&events, seq as usize))
            },
            |(seq, event)| black_box(models.apply_event(seq, &event)),
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, ftrl, embeddings, windows);
criterion_main!(benches);
