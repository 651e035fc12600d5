//! The published read side answers exactly what the learners themselves would: caught up
//! incrementally at random points of a random stream, it equals both the learners and a
//! read side built whole, for every read a request makes.

use proptest::prelude::*;
use streamrec_learner::ReadSide;
use streamrec_learner::candidates::{CandidateReads, Sources};
use streamrec_learner::covisit::CovisitLists;
use streamrec_learner::online::{OnlineConfig, OnlineModels};
use streamrec_proto::{Event, EventKind};

const T0: i64 = 1_700_000_000_000;

fn event(n: usize, session: u8, user: Option<u8>, item: u8, kind: EventKind) -> Event {
    Event {
        event_id: format!("e{n}"),
        session_id: format!("s{session}"),
        user_id: user.map(|u| format!("u{u}")),
        kind,
        item_id: format!("i{item}"),
        ts: T0 + n as i64 * 1_000,
        rec_id: None,
        position: None,
        value: None,
        context: None,
        details: Default::default(),
    }
}

fn config() -> OnlineConfig {
    // Small limits, so eviction and pruning happen inside a short stream.
    let defaults = OnlineConfig::default();
    OnlineConfig {
        max_sessions: 12,
        covisit: streamrec_learner::covisit::CovisitConfig {
            max_users: 6,
            neighbours: 5,
            transitions: 3,
            ..defaults.covisit.clone()
        },
        embeddings: streamrec_learner::embeddings::EmbeddingConfig {
            dim: 8,
            ..defaults.embeddings.clone()
        },
        ..defaults
    }
}

/// Every read the request path makes, for one session (and user).
fn assert_same_reads(
    read: &ReadSide,
    models: &OnlineModels,
    session: &str,
    user: Option<&str>,
) -> Result<(), TestCaseError> {
    let a = read.context(user, session);
    let b = models.context(user, session);
    prop_assert_eq!(&a.history, &b.history);
    prop_assert_eq!(&a.intent, &b.intent);
    for i in 0..models.covisit.len() as u32 {
        prop_assert_eq!(read.neighbours(i), models.neighbours(i));
        prop_assert_eq!(read.transitions(i), models.transitions(i));
        let id = models.item(i);
        prop_assert_eq!(read.item(i), id);
        if let Some(id) = id {
            prop_assert_eq!(read.item_index(id), Some(i));
            prop_assert_eq!(read.vector(id), models.vector(id));
            // By dense id (what a candidate's features read) as by wire id.
            prop_assert_eq!(read.vector_at(i), models.vector(id));
            prop_assert_eq!(
                read.popularity(id).to_bits(),
                models.popularity(id).to_bits()
            );
            prop_assert_eq!(
                read.popularity_at(i).to_bits(),
                models.popularity(id).to_bits()
            );
            prop_assert_eq!(read.ctr(id).to_bits(), models.ctr(id).to_bits());
        }
    }
    let popular: Vec<String> = models.popular(20).into_iter().map(|(id, _)| id).collect();
    let popular: Vec<&str> = popular.iter().map(String::as_str).collect();
    // Some items excluded, so the candidate stage's exclusion is exercised on both sides.
    let some_excluded = |id: &str| id.ends_with('3');
    let config = read.candidate_config();
    let from_read = Sources { reads: read }.candidates(&a, &[], &popular, &some_excluded, config);
    let from_models =
        Sources { reads: models }.candidates(&b, &[], &popular, &some_excluded, config);
    prop_assert!(from_read.iter().all(|c| !c.item_id.ends_with('3')));
    prop_assert_eq!(from_read, from_models);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn caught_up_read_side_equals_the_learners(
        stream in proptest::collection::vec((0u8..20, proptest::option::of(0u8..8), 0u8..40, 0u8..3), 1..400),
        publish_every in 1usize..60,
        // Learners by epoch install what an epoch learned at its end: the read side follows
        // those installs (the vectors' journal) as it follows each event without.
        epoch in proptest::sample::select(vec![0u64, 7, 31]),
    ) {
        let mut config = config();
        config.covisit.epoch = epoch;
        config.embeddings.epoch = epoch;
        let mut models = OnlineModels::new(config);
        let mut read = ReadSide::of(&models);
        for (n, &(session, user, item, kind)) in stream.iter().enumerate() {
            let kind = [EventKind::View, EventKind::Click, EventKind::Purchase][kind as usize];
            models.apply_event(n as u64 + 1, &event(n, session, user, item, kind));
            if n % publish_every == 0 {
                read.catch_up(&mut models, true);
            }
        }
        read.catch_up(&mut models, true);
        let whole = ReadSide::of(&models);
        for session in 0..20u8 {
            let s = format!("s{session}");
            for user in [None, Some(format!("u{}", session % 8))] {
                assert_same_reads(&read, &models, &s, user.as_deref())?;
                assert_same_reads(&whole, &models, &s, user.as_deref())?;
            }
        }
    }
}

#[test]
fn a_published_copy_does_not_move_when_the_learners_do() {
    let mut models = OnlineModels::new(config());
    for n in 0..50 {
        models.apply_event(
            n as u64 + 1,
            &event(n, (n % 3) as u8, None, (n % 7) as u8, EventKind::View),
        );
    }
    let mut read = ReadSide::of(&models);
    read.catch_up(&mut models, true);
    let published = read.clone();
    let before = published.context(None, "s0");
    for n in 50..100 {
        models.apply_event(
            n as u64 + 1,
            &event(n, 0, None, (n % 11) as u8 + 20, EventKind::Click),
        );
    }
    read.catch_up(&mut models, true);
    assert_eq!(published.context(None, "s0").history, before.history);
    assert_ne!(read.context(None, "s0").history, before.history);
}
