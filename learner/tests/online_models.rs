//! The learners fed in stream order: rewards reach the bandit through `rec_id`, and the same
//! stream learned twice gives bit-identical state.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use streamrec_learner::online::{OnlineConfig, OnlineModels, Outcome, choose_slate};
use streamrec_proto::{Event, EventKind, Impression};

const T0: i64 = 1_700_000_000_000;

fn event(
    id: &str,
    session: &str,
    kind: EventKind,
    item: &str,
    ts: i64,
    rec_id: Option<&str>,
) -> Event {
    Event {
        event_id: id.into(),
        session_id: session.into(),
        user_id: None,
        kind,
        item_id: item.into(),
        ts,
        rec_id: rec_id.map(str::to_owned),
        position: None,
        value: None,
        context: None,
        details: Default::default(),
    }
}

/// What the serving path would show for these candidates, as an impression.
fn serve(
    models: &OnlineModels,
    rec_id: &str,
    candidates: &[(String, f64)],
    k: usize,
    ts: i64,
) -> Impression {
    Impression {
        user_id: None,
        traceparent: None,
        logged: None,
        rec_id: rec_id.into(),
        session_id: "s".into(),
        ts,
        model_version: "test".into(),
        items: choose_slate(Some(&models.bandit), candidates, k, rec_id)
            .into_iter()
            .map(|slot| slot.shown)
            .collect(),
    }
}

fn candidates(models: &OnlineModels) -> Vec<(String, f64)> {
    models.popular(10)
}

#[test]
fn a_click_carrying_rec_id_moves_the_clicked_item_up() {
    let mut models = OnlineModels::new(OnlineConfig::default());
    let mut seq = 0;
    let mut next = || {
        seq += 1;
        seq
    };
    for (i, item) in ["a", "a", "a", "b", "b", "c"].iter().enumerate() {
        models.apply_event(
            next(),
            &event(&format!("e{i}"), "crowd", EventKind::View, item, T0, None),
        );
    }
    let shown = serve(&models, "r1", &candidates(&models), 3, T0);
    let order: Vec<&str> = shown.items.iter().map(|i| i.item_id.as_str()).collect();
    assert_eq!(order, ["a", "b", "c"], "a cold bandit ranks by popularity");
    assert_eq!(models.apply_impression(next(), &shown), Outcome::Applied);
    models.apply_event(
        next(),
        &event("click", "s", EventKind::Click, "c", T0 + 1, Some("r1")),
    );
    let counters = models.counters();
    assert_eq!(
        (counters.attributed, counters.rewards),
        (1, 3),
        "c rewarded 1, a and b 0"
    );
    assert_eq!(models.bandit.arm_stats("c"), Some((1, 1.0)));
    assert_eq!(models.bandit.arm_stats("a"), Some((1, 0.0)));
    let again = serve(&models, "r2", &candidates(&models), 3, T0 + 2);
    assert_eq!(again.items[0].item_id, "c", "{:?}", again.items);
}

#[test]
fn redeliveries_and_repeated_ids_are_not_learned_twice() {
    let mut models = OnlineModels::new(OnlineConfig::default());
    let e = event("x", "s", EventKind::View, "a", T0, None);
    assert_eq!(models.apply_event(1, &e), Outcome::Applied);
    assert_eq!(models.apply_event(1, &e), Outcome::Redelivered);
    assert_eq!(models.apply_event(2, &e), Outcome::Duplicate);
    assert_eq!(models.counters().events, 1);
}

/// A random but reproducible stream of events, impressions and answering clicks.
fn replay(seed: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut models = OnlineModels::new(OnlineConfig::default());
    let mut seq = 0;
    for i in 0..3_000 {
        seq += 1;
        let session = format!("s{}", rng.random_range(0..50));
        let item = format!("i{}", rng.random_range(0..200));
        let ts = T0 + i * 1_000;
        models.apply_event(
            seq,
            &event(&format!("e{i}"), &session, EventKind::View, &item, ts, None),
        );
        if i % 10 == 0 {
            let rec_id = format!("r{i}");
            let shown = serve(&models, &rec_id, &candidates(&models), 5, ts);
            seq += 1;
            models.apply_impression(seq, &shown);
            if rng.random_bool(0.3) {
                let clicked = shown.items[rng.random_range(0..shown.items.len())]
                    .item_id
                    .clone();
                seq += 1;
                models.apply_event(
                    seq,
                    &event(
                        &format!("c{i}"),
                        &session,
                        EventKind::Click,
                        &clicked,
                        ts + 1,
                        Some(&rec_id),
                    ),
                );
            }
        }
    }
    assert!(models.counters().rewards > 0);
    serde_json::to_vec(&models).expect("serialisable")
}

#[test]
fn the_same_stream_learned_twice_gives_bit_identical_state() {
    let first = replay(7);
    let second = replay(7);
    assert!(first == second, "two replays of one stream diverged");
    assert!(
        first != replay(8),
        "a different stream gives a different state"
    );
}

#[test]
fn an_idle_session_expires_by_event_time_only_with_a_ttl() {
    let run = |ttl: Option<i64>| {
        let config = OnlineConfig {
            session_ttl_ms: ttl,
            ..OnlineConfig::default()
        };
        let mut models = OnlineModels::new(config);
        models.apply_event(1, &event("e0", "idle", EventKind::View, "a", T0, None));
        // Ten seconds later (event time), enough events for the watermark to follow.
        for n in 0..6 {
            let e = event(
                &format!("e{}", n + 1),
                "busy",
                EventKind::View,
                "b",
                T0 + 10_000,
                None,
            );
            models.apply_event(n + 2, &e);
        }
        models
    };
    let kept = run(None);
    assert!(
        kept.sessions().get("idle").is_some(),
        "no TTL: only the cap bounds sessions"
    );
    let expired = run(Some(5_000));
    assert!(
        expired.sessions().get("idle").is_none(),
        "idle for 10 s past a 5 s TTL"
    );
    assert!(expired.sessions().get("busy").is_some());
    assert_eq!(expired.counters().sessions_evicted, 1);
    // Replayed, the expiry is the same.
    assert_eq!(
        serde_json::to_string(&run(Some(5_000))).expect("ser"),
        serde_json::to_string(&expired).expect("ser")
    );
}
