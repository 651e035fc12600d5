//! The request path without an actor tree: stages over learners replayed by hand.

use std::sync::Arc;

use futures::executor::block_on;
use serde_json::json;
use streamrec_learner::candidates::Source;
use streamrec_learner::online::{OnlineConfig, OnlineModels};
use streamrec_proto::{Event, EventKind, Item};
use streamrec_ranker::{ComputeDevice, RerankTrainer, Reranker};

use super::*;

const T0: i64 = 1_700_000_000_000;

fn click(n: usize, session: &str, item: &str) -> Event {
    Event {
        event_id: format!("e{n}"),
        session_id: session.to_owned(),
        user_id: None,
        kind: EventKind::Click,
        item_id: item.to_owned(),
        ts: T0 + n as i64 * 1_000,
        rec_id: None,
        position: None,
        value: None,
        context: None,
        details: Default::default(),
    }
}

fn item(id: &str, genre: &str, available: bool) -> Item {
    Item {
        item_id: id.to_owned(),
        title: None,
        attributes: json!({ "genre": genre }).as_object().cloned(),
        available,
        expires_at: None,
        details: Default::default(),
    }
}

/// 40 sessions over 12 items, in three clusters of four (a0..a3, b0..b3, c0..c3): each
/// session walks one cluster, so co-visitation ties items within a cluster.
fn learned(rerank: bool) -> OfflineEngine {
    let mut engine = OfflineEngine::new(
        OnlineModels::new(OnlineConfig::default()),
        ComputeDevice::Cpu,
        100,
        rerank,
    )
    .expect("engine");
    for cluster in ["a", "b", "c"] {
        for i in 0..4 {
            let genre = if i % 2 == 0 { "even" } else { "odd" };
            engine.upsert_item(item(&format!("{cluster}{i}"), genre, true));
        }
    }
    let mut n = 0;
    for s in 0..40 {
        let cluster = ["a", "b", "c"][s % 3];
        for step in 0..4 {
            n += 1;
            let id = format!("{cluster}{}", (s + step) % 4);
            engine
                .learn(&click(n, &format!("s{s}"), &id))
                .expect("learn");
        }
    }
    engine
}

fn ask(session: &str) -> RecommendRequest {
    RecommendRequest {
        session_id: session.to_owned(),
        k: 5,
        rec_id: format!("rec-{session}"),
        ..RecommendRequest::default()
    }
}

fn ids(items: &[RankedItem]) -> Vec<&str> {
    items.iter().map(|i| i.item_id.as_str()).collect()
}

/// A session that has met a0 and a1 gets the rest of its cluster first, never what it met,
/// and the same log and request give the same list.
#[test]
fn co_visited_items_lead_and_seen_items_never_return() {
    let mut engine = learned(false);
    engine.learn(&click(1_000, "fresh", "a0")).expect("learn");
    engine.learn(&click(1_001, "fresh", "a1")).expect("learn");
    let mut request = ask("fresh");
    request.explain = true;
    let items = block_on(engine.recommend(&request)).expect("answer");
    let got = ids(&items);
    assert_eq!(got.len(), 5, "{got:?}");
    assert!(!got.contains(&"a0") && !got.contains(&"a1"), "{got:?}");
    let first_two: Vec<&str> = got.iter().take(2).copied().collect();
    assert!(
        first_two.contains(&"a2") && first_two.contains(&"a3"),
        "the cluster's other items lead: {got:?}"
    );
    let explained = items[0].explanation.as_ref().expect("explained");
    assert!(matches!(explained.source, Source::Knn | Source::Transition));
    assert!(
        explained
            .because
            .as_deref()
            .is_some_and(|b| b == "a0" || b == "a1")
    );
    assert!(!explained.features.is_empty());

    let mut again = learned(false);
    again.learn(&click(1_000, "fresh", "a0")).expect("learn");
    again.learn(&click(1_001, "fresh", "a1")).expect("learn");
    let repeated = block_on(again.recommend(&request)).expect("answer");
    assert_eq!(items, repeated);
}

/// Filters keep only matching catalog entries; a pin takes its slot with propensity 1
/// (and is not also ranked); a boost lifts an item to the top of the stages' order.
#[test]
fn filters_pins_and_boosts_shape_the_list() {
    let mut engine = learned(false);
    engine.learn(&click(1_000, "fresh", "a0")).expect("learn");

    let mut filtered = ask("fresh");
    filtered.k = 10;
    filtered.filters = vec![("genre".to_owned(), "odd".to_owned())];
    let items = block_on(engine.recommend(&filtered)).expect("answer");
    assert!(!items.is_empty());
    for i in &items {
        let n: usize = i.item_id[1..].parse().expect("numbered");
        assert_eq!(n % 2, 1, "only odd items pass: {:?}", ids(&items));
    }

    let mut pinned = ask("fresh");
    pinned.explain = true;
    pinned.pins = vec![("c3".to_owned(), 1)];
    let items = block_on(engine.recommend(&pinned)).expect("answer");
    assert_eq!(items[1].item_id, "c3", "{:?}", ids(&items));
    assert_eq!(items[1].propensity, 1.0);
    assert_eq!(
        items[1].explanation.as_ref().map(|e| e.source),
        Some(Source::Pinned)
    );
    assert_eq!(ids(&items).iter().filter(|&&i| i == "c3").count(), 1);

    let mut boosted = ask("fresh");
    boosted.explain = true;
    boosted.boosts = vec![("b2".to_owned(), 1_000.0)];
    let items = block_on(engine.recommend(&boosted)).expect("answer");
    let b2 = items
        .iter()
        .find(|i| i.item_id == "b2")
        .expect("the boosted item is shown");
    let explanation = b2.explanation.as_ref().expect("explained");
    assert_eq!(explanation.pre_bandit_rank, 0);
    assert_eq!(explanation.boost, Some(1_000.0));
}

/// An item made unavailable is never served, and every answer's impression is learned
/// as the next message.
#[test]
fn unavailable_items_are_dropped_and_impressions_learned() {
    let mut engine = learned(false);
    engine.learn(&click(1_000, "fresh", "a0")).expect("learn");
    engine.upsert_item(item("a2", "even", false));
    let before = engine.models().counters().impressions;
    let mut request = ask("fresh");
    request.k = 11;
    let items = block_on(engine.recommend(&request)).expect("answer");
    assert!(!ids(&items).contains(&"a2"), "{:?}", ids(&items));
    assert_eq!(items.len(), 10, "every other item: {:?}", ids(&items));
    assert_eq!(engine.models().counters().impressions, before + 1);
}

/// A re-ranker serving copy with the trainer's initial weights.
fn untrained_reranker() -> Arc<Reranker> {
    let trainer = RerankTrainer::new(reranker_config(), &Default::default(), ComputeDevice::Cpu)
        .expect("trainer");
    let weights = trainer.weights();
    Arc::new(
        Reranker::from_weights(&reranker_config(), &weights, ComputeDevice::Cpu, 0)
            .expect("re-ranker"),
    )
}

#[derive(Debug, thiserror::Error)]
#[error("scorer down")]
struct Down;

struct FailingScorer;

impl Scorer for FailingScorer {
    type Error = Down;

    async fn score(&self, _: Arc<Reranker>, _: Vec<f32>) -> Result<Vec<f32>, Down> {
        Err(Down)
    }
}

/// The stages called directly: a re-ranker scores every candidate through the scorer, a
/// failing scorer leaves stage one's order (and says so), and every stage is reported.
#[test]
fn the_scorer_scores_and_its_failure_falls_back_to_stage_one() {
    let engine = learned(false);
    let mut models = ServingModels::loaded(None, engine.models(), 100, None);
    models.reranker = Some(untrained_reranker());
    let request = ask("s0");
    let inputs = RankInputs {
        models: &models,
        catalog: &models.read,
        request: &request,
        seen: SessionSeen::default(),
        now_ms: T0,
    };
    let mut stages = Vec::new();
    let scored = block_on(rank(
        &inputs,
        &ExactIntent(&models.read),
        Some(&InlineScorer),
        &mut |s| stages.push(s),
    ));
    assert_eq!(stages, Stage::ALL);
    assert!(scored.rerank_error.is_none());
    assert_eq!(scored.items.len(), 5);
    assert_eq!(scored.shown.len(), 5);

    let failed = block_on(rank(
        &inputs,
        &ExactIntent(&models.read),
        Some(&FailingScorer),
        &mut |_| {},
    ));
    assert!(failed.rerank_error.is_some());
    let unscored = block_on(rank(
        &inputs,
        &ExactIntent(&models.read),
        None::<&InlineScorer>,
        &mut |_| {},
    ));
    assert_eq!(
        failed.items, unscored.items,
        "the fallback is stage one's order"
    );
}
