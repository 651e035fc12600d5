//! The learners fed in stream order: rewards reach the bandit through `rec_id`, and the same
//! stream learned twice gives bit-identical state.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use streamrec_learner::candidates::FEATURES;
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

/// A learner whose re-ranker groups are 4 long, with a history that co-visits i0..i9.
fn learned_for_groups() -> (OnlineModels, u64) {
    let mut config = OnlineConfig::default();
    config.replay.negatives = 3;
    let mut models = OnlineModels::new(config);
    let mut seq = 0;
    for s in 0..30 {
        for step in 0..5 {
            seq += 1;
            let item = format!("i{}", (s + step) % 10);
            let e = event(
                &format!("w{s}-{step}"),
                &format!("walk{s}"),
                EventKind::View,
                &item,
                T0 + seq as i64,
                None,
            );
            models.apply_event(seq, &e);
        }
    }
    // The session the list is served to has met i0 and i1.
    for (n, item) in ["i0", "i1"].iter().enumerate() {
        seq += 1;
        let e = event(
            &format!("s{n}"),
            "s",
            EventKind::View,
            item,
            T0 + seq as i64,
            None,
        );
        models.apply_event(seq, &e);
    }
    (models, seq)
}

fn logged_impression(set: &str) -> Impression {
    use streamrec_proto::{FeatureLog, PackedFeatures, ShownItem, StreamPosition};
    Impression {
        user_id: None,
        traceparent: None,
        logged: Some(FeatureLog {
            set: set.into(),
            as_of: StreamPosition::default(),
        }),
        rec_id: "r-logged".into(),
        session_id: "s".into(),
        ts: T0 + 1_000,
        model_version: "test".into(),
        items: ["i2", "i3", "i4"]
            .iter()
            .enumerate()
            .map(|(p, id)| ShownItem {
                item_id: (*id).into(),
                position: p as u32,
                propensity: 1.0,
                features: vec![1.0],
                candidate_features: Some(PackedFeatures(vec![0.25 * (p + 1) as f32; FEATURES])),
                rerank_score: Some(1.0),
            })
            .collect(),
    }
}

/// The rows of the newest training group.
fn newest_group(models: &OnlineModels) -> Vec<Vec<f32>> {
    let group = models.reranker.groups().last().unwrap_or(&[]);
    group.chunks(FEATURES).map(<[f32]>::to_vec).collect()
}

/// A learner that has just served the logged list `r-logged` (layout `set`) to session `s`.
struct Served {
    models: OnlineModels,
    seq: u64,
}

impl Served {
    fn list(set: &str) -> Self {
        let (mut models, mut seq) = learned_for_groups();
        seq += 1;
        models.apply_impression(seq, &logged_impression(set));
        Self { models, seq }
    }

    /// `kind` on `item` from `session`, answering the list when `rec_id` says so.
    fn event(&mut self, id: &str, session: &str, kind: EventKind, item: &str, rec_id: bool) {
        self.seq += 1;
        let rec_id = rec_id.then_some("r-logged");
        let e = event(
            id,
            session,
            kind,
            item,
            T0 + 2_000 + self.seq as i64,
            rec_id,
        );
        self.models.apply_event(self.seq, &e);
    }

    fn click(&mut self, id: &str, session: &str, item: &str) {
        self.event(id, session, EventKind::Click, item, true);
    }
}

const LAYOUT: &str = streamrec_learner::candidates::FEATURE_SET;

#[test]
fn a_click_answering_a_logged_list_trains_on_the_features_it_was_served_with() {
    let mut served = Served::list(LAYOUT);
    served.click("c", "s", "i3");
    assert_eq!(served.models.counters().logged_groups, 1);
    let rows = newest_group(&served.models);
    assert_eq!(rows.len(), 4);
    // The clicked slot as served, the other shown slots, then stage one's best unshown.
    assert_eq!(rows[0], vec![0.5; FEATURES]);
    assert_eq!(rows[1], vec![0.25; FEATURES]);
    assert_eq!(rows[2], vec![0.75; FEATURES]);
    assert!(![0.25, 0.5, 0.75].contains(&rows[3][0]), "{:?}", rows[3]);
}

#[test]
fn a_list_logged_in_another_layout_or_answered_by_another_session_is_recomputed() {
    let mut served = Served::list("candidates.v0");
    served.click("c", "s", "i3");
    assert_eq!(served.models.counters().logged_groups, 0);

    let mut served = Served::list(LAYOUT);
    // Another session with the same history names the list.
    served.event("o0", "other", EventKind::View, "i0", false);
    served.event("o1", "other", EventKind::View, "i1", false);
    served.click("c", "other", "i3");
    assert_eq!(served.models.counters().logged_groups, 0);
    assert_eq!(served.models.counters().foreign_rec_id, 1);
}

#[test]
fn only_a_first_answer_naming_a_shown_item_trains_on_the_log() {
    // A click naming only a position: no logged row is the clicked item's.
    let mut served = Served::list(LAYOUT);
    served.seq += 1;
    let mut click = event(
        "c",
        "s",
        EventKind::Click,
        "i9",
        T0 + 2_000,
        Some("r-logged"),
    );
    click.position = Some(1);
    served.models.apply_event(served.seq, &click);
    assert_eq!(served.models.counters().logged_groups, 0);
    assert_eq!(
        served.models.counters().attributed,
        1,
        "the bandit still learns it"
    );

    // Two clicks on one list: the first trains on the log, the second is computed.
    let mut served = Served::list(LAYOUT);
    served.click("c0", "s", "i3");
    served.click("c1", "s", "i2");
    assert_eq!(served.models.counters().attributed, 2);
    assert_eq!(served.models.counters().logged_groups, 1);
}

/// A stream of sessions over 60 items, each session walking a few of them.
fn sessions_stream(n: usize) -> Vec<Event> {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    (0..n)
        .map(|i| {
            let session = format!("s{}", rng.random_range(0..40));
            let item = format!("i{}", rng.random_range(0..60));
            event(
                &format!("e{i}"),
                &session,
                EventKind::View,
                &item,
                T0 + i as i64 * 1_000,
                None,
            )
        })
        .collect()
}

/// Applies `stream[span]`, each event at its index + 1 as its sequence number.
fn learn(models: &mut OnlineModels, stream: &[Event], span: std::ops::Range<usize>) {
    for n in span {
        models.apply_event(n as u64 + 1, &stream[n]);
    }
}

/// Co-visitation lists and item2vec vectors by epochs of these many events (0: at once).
fn by_epoch(covisit: u64, embeddings: u64) -> OnlineConfig {
    let mut config = OnlineConfig::default();
    config.covisit.epoch = covisit;
    config.embeddings.epoch = embeddings;
    config
}

/// With lists published by epoch, an epoch's meetings are read once the next epoch has
/// ended: not before, and then as the immediate learner counted them.
#[test]
fn lists_by_epoch_are_read_one_epoch_late_and_as_counted_at_once() {
    let stream = sessions_stream(300);
    let mut deferred = OnlineModels::new(by_epoch(100, 0));
    for (n, e) in stream.iter().take(199).enumerate() {
        deferred.apply_event(n as u64 + 1, e);
    }
    assert!(deferred.covisit.staged().0 > 0);
    assert_eq!(deferred.covisit.open_meetings().len(), 99);
    let counted = |m: &OnlineModels| {
        (0..60)
            .map(|i| m.covisit.neighbours(i).len())
            .sum::<usize>()
    };
    assert_eq!(
        counted(&deferred),
        0,
        "nothing read before the second epoch ends"
    );
    // The first event of the third epoch ends the second: the first epoch's meetings count.
    deferred.apply_event(200, &stream[199]);
    deferred.apply_event(201, &stream[200]);
    assert_eq!(deferred.covisit.open_meetings().len(), 1);
    let mut immediate = OnlineModels::new(OnlineConfig::default());
    for (n, e) in stream.iter().take(100).enumerate() {
        immediate.apply_event(n as u64 + 1, e);
    }
    assert!(counted(&immediate) > 0);
    for i in 0..60 {
        assert_eq!(
            deferred.covisit.neighbours(i),
            immediate.covisit.neighbours(i),
            "item {i}: the first epoch's counts"
        );
        assert_eq!(
            deferred.covisit.transitions(i),
            immediate.covisit.transitions(i)
        );
    }
}

/// A learner saved in the middle of an epoch (meetings not yet counted, lists not yet read)
/// and restored learns on byte for byte, as one that never stopped: both are state.
#[test]
fn lists_by_epoch_restored_mid_epoch_learn_on_byte_for_byte() {
    use streamrec_learner::persist::Persistent;
    let mut stream = sessions_stream(1_000);
    // The stop comes right after an item never met before: interned since the epoch began,
    // not counted yet.
    stream[612].item_id = "never-met-before".into();
    let mut straight = OnlineModels::new(by_epoch(64, 0));
    learn(&mut straight, &stream, 0..stream.len());
    let mut stopped = OnlineModels::new(by_epoch(64, 0));
    learn(&mut stopped, &stream, 0..613);
    assert!(!stopped.covisit.open_meetings().is_empty());
    assert!(stopped.covisit.staged().0 > 0);
    let mut parts = stopped.into_parts();
    let saved = parts.covisit.clone().save().expect("saves");
    parts.covisit = streamrec_learner::covisit::Covisitation::load(saved).expect("loads");
    let mut restored = OnlineModels::from_parts(parts);
    learn(&mut restored, &stream, 613..stream.len());
    assert_eq!(
        serde_json::to_string(&restored).expect("ser"),
        serde_json::to_string(&straight).expect("ser")
    );
    // And deferring changed what was learned, so the comparison above had work to do.
    let mut immediate = OnlineModels::new(OnlineConfig::default());
    learn(&mut immediate, &stream, 0..stream.len());
    assert_ne!(
        serde_json::to_string(&immediate.covisit).expect("ser"),
        serde_json::to_string(&straight.covisit).expect("ser")
    );
}

/// With vectors trained by epoch, an epoch's events are read once the next epoch has
/// ended: not before, and then as the immediate learner trained them.
#[test]
fn vectors_by_epoch_are_read_one_epoch_late_and_as_trained_at_once() {
    let stream = sessions_stream(300);
    let mut deferred = OnlineModels::new(by_epoch(0, 100));
    learn(&mut deferred, &stream, 0..199);
    assert_eq!(deferred.embeddings.waiting(), (100, 99));
    assert!(
        deferred.embeddings.is_empty(),
        "nothing read before the second epoch ends"
    );
    // The first event of the third epoch ends the second: the first epoch's events count.
    learn(&mut deferred, &stream, 199..201);
    assert_eq!(deferred.embeddings.waiting(), (100, 1));
    let mut immediate = OnlineModels::new(OnlineConfig::default());
    learn(&mut immediate, &stream, 0..100);
    let same = |d: &OnlineModels, i: &OnlineModels| {
        let (d, i) = (&d.embeddings, &i.embeddings);
        assert!(!i.is_empty());
        assert_eq!(d.ids(), i.ids());
        assert_eq!(d.matrix(), i.matrix());
        assert_eq!(d.context_matrix(), i.context_matrix());
        assert_eq!(d.updates(), i.updates());
    };
    same(&deferred, &immediate);
    // The next install moves rows that are already read (not only new ones), and says
    // which in the journal the read side follows.
    let updates = deferred.embeddings.updates();
    learn(&mut deferred, &stream, 201..300);
    let known = deferred.embeddings.len();
    let read_before = deferred.embeddings.matrix().to_vec();
    deferred.apply_event(301, &stream[0]);
    learn(&mut immediate, &stream, 100..200);
    same(&deferred, &immediate);
    let moved = deferred
        .embeddings
        .rows_changed_since(updates)
        .expect("journal reaches back");
    let dim = deferred.embeddings.dim();
    let read_after = deferred.embeddings.matrix();
    let mut rows_moved = 0;
    for row in 0..deferred.embeddings.len() {
        let r = row * dim..(row + 1) * dim;
        let changed = row >= known || read_before[r.clone()] != read_after[r];
        if changed {
            rows_moved += usize::from(row < known);
            assert!(
                moved.contains(&(row as u32)),
                "row {row} moved unjournalled"
            );
        }
    }
    assert!(rows_moved > 0, "the install moved rows already read");
}

/// A learner saved in the middle of an epoch (events not yet trained, vectors not yet read)
/// and restored, or cloned, learns on byte for byte, as one that never stopped.
#[test]
fn vectors_by_epoch_restored_mid_epoch_learn_on_byte_for_byte() {
    use streamrec_learner::embeddings::ItemEmbeddings;
    use streamrec_learner::persist::Persistent;
    let mut stream = sessions_stream(1_000);
    stream[612].item_id = "never-met-before".into();
    let config = || by_epoch(64, 64);
    let mut straight = OnlineModels::new(config());
    learn(&mut straight, &stream, 0..stream.len());
    let mut stopped = OnlineModels::new(config());
    learn(&mut stopped, &stream, 0..613);
    let (pending, open) = stopped.embeddings.waiting();
    assert!(pending > 0 && open > 0, "{pending} {open}");
    // A clone (a checkpoint's copy) has no training copy of its own: it makes one.
    let mut cloned = stopped.clone();
    learn(&mut cloned, &stream, 613..stream.len());
    let mut parts = stopped.into_parts();
    let saved = parts.embeddings.clone().save().expect("saves");
    parts.embeddings = ItemEmbeddings::load(saved).expect("loads");
    let mut restored = OnlineModels::from_parts(parts);
    learn(&mut restored, &stream, 613..stream.len());
    let json = |m: &OnlineModels| serde_json::to_string(m).expect("ser");
    assert_eq!(json(&restored), json(&straight));
    assert_eq!(json(&cloned), json(&straight));
    // And deferring changed what was learned, so the comparison above had work to do.
    let mut immediate = OnlineModels::new(OnlineConfig::default());
    learn(&mut immediate, &stream, 0..stream.len());
    assert_ne!(immediate.embeddings.matrix(), straight.embeddings.matrix());
}
