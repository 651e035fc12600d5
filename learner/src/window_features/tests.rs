use proptest::prelude::*;
use serde_json::json;
use streamrec_proto::{Event, EventKind, Item};

use super::*;
use crate::windows::WindowSpec;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
/// An hour boundary.
const T0: i64 = 1_700_002_800_000;

fn event(id: &str, session: &str, kind: EventKind, item: &str, ts: i64) -> Event {
    Event {
        event_id: id.into(),
        session_id: session.into(),
        user_id: Some(format!("u-{session}")),
        kind,
        item_id: item.into(),
        ts,
        rec_id: None,
        position: None,
        value: None,
        context: None,
        details: Default::default(),
    }
}

fn counts(features: &ItemFeatures, label: &str) -> (u64, u64, u64, f64) {
    let w = features
        .windows
        .iter()
        .find(|w| w.window == label)
        .expect("every window is reported");
    (w.events, w.clicks, w.impressions, w.ctr)
}

#[test]
fn every_item_window_is_a_valid_spec() {
    for (label, spec) in ITEM_WINDOWS {
        assert!(spec.check().is_ok(), "{label}");
    }
    let features = WindowedFeatures::default();
    assert_eq!(features.item_stores().len(), ITEM_WINDOWS.len());
    assert_eq!(features.total_stores().len(), ITEM_WINDOWS.len());
    assert_eq!(T0.rem_euclid(HOUR), 0);
}

#[test]
fn ctr_is_smoothed_toward_the_stream_and_trend_compares_the_hour_with_the_day() {
    let mut features = WindowedFeatures::new(&WindowConfig {
        ctr_prior_strength: 20.0,
        ..WindowConfig::default()
    });
    // Items 0 and 1 shown ten times each at T0+1m; item 0 clicked five times.
    let ts = T0 + MINUTE;
    for n in 0..10 {
        assert!(features.observe_impression(ts, [0, 1]));
        if n < 5 {
            let click = event(&format!("c{n}"), "s", EventKind::Click, "a", ts);
            assert_eq!(features.observe_event(&click, 0), None);
        }
    }
    // Another item, much later: the watermark passes T0+1h.
    let later = event("z", "t", EventKind::View, "z", T0 + HOUR + 6 * MINUTE);
    assert_eq!(features.observe_event(&later, 2), None);
    assert_eq!(features.watermark().current(), Some(T0 + HOUR + MINUTE));

    let a = features.item_features(0).expect("a watermark");
    let b = features.item_features(1).expect("a watermark");
    // The hour [T0, T0+1h): prior 5 clicks / 20 impressions.
    let (events, clicks, shown, ctr) = counts(&a, "1h");
    assert_eq!((events, clicks, shown), (5, 5, 10));
    assert!(
        (ctr - (5.0 + 20.0 * 0.25) / (10.0 + 20.0)).abs() < 1e-12,
        "{ctr}"
    );
    let (_, _, shown, ctr) = counts(&b, "1h");
    assert_eq!(shown, 10);
    assert!((ctr - (20.0 * 0.25) / 30.0).abs() < 1e-12, "{ctr}");
    // The minute and five minutes ending at the watermark are empty: the stream's prior.
    let (events, _, shown, ctr) = counts(&a, "1m");
    assert_eq!((events, shown, ctr), (0, 0, 0.0));
    // The day ending at T0+1h holds the clicks too: 5 in the hour, 5 in the day.
    assert_eq!(counts(&a, "24h").0, 5);
    assert!((a.trend - (5.0 + 1.0) / (5.0 / 24.0 + 1.0)).abs() < 1e-12);
    assert_eq!(a.watermark, T0 + HOUR + MINUTE);
}

#[test]
fn a_late_event_changes_no_window_and_is_reported_with_its_lateness() {
    let mut features = WindowedFeatures::default();
    let first = event("a", "s", EventKind::View, "a", T0 + 20 * MINUTE);
    assert_eq!(features.observe_event(&first, 0), None);
    let before = features.clone();
    let late = event("b", "s", EventKind::View, "a", T0 + 10 * MINUTE);
    assert_eq!(features.observe_event(&late, 0), Some(5 * MINUTE));
    assert_eq!(features.late_counts(), (1, 0));
    let mut expected = before;
    expected.late_events = 1;
    assert_eq!(features, expected, "only the count moved");
    // Impressions behind the watermark are not counted either.
    assert!(!features.observe_impression(T0, [0]));
    assert_eq!(features.late_counts(), (1, 1));
}

#[test]
fn a_session_mixes_kinds_and_its_items_catalog_categories() {
    use crate::online::{OnlineConfig, OnlineModels};
    use crate::read_side::ReadSide;
    let mut models = OnlineModels::new(OnlineConfig::default());
    let drama = json!({"item_id": "a", "attributes": {"genres": ["Drama", "War"]}});
    let comedy = json!({"item_id": "b", "attributes": {"category": "Comedy"}});
    for (seq, item) in [drama, comedy].iter().enumerate() {
        models.apply_item(seq as u64 + 1, Item::from_value(item).expect("item"));
    }
    models.apply_event(1, &event("1", "s", EventKind::View, "a", T0));
    models.apply_event(2, &event("2", "s", EventKind::Click, "b", T0 + 1_000));
    let read = ReadSide::of(&models);
    let session = read.session_features("s").expect("open");
    assert_eq!(session.events, 2);
    assert_eq!(
        (session.started_at, session.last_event_at),
        (T0, T0 + 1_000)
    );
    assert_eq!(session.kinds["view"], 0.5);
    assert_eq!(session.categories["Drama"], 0.5);
    assert_eq!(session.categories["War"], 0.5);
    assert_eq!(session.categories["Comedy"], 0.5);
    assert_eq!(read.user_features("u-s").map(|u| u.events), Some(2));

    // Another session, far enough ahead to close this one.
    let mut read = read;
    models.apply_event(3, &event("3", "t", EventKind::View, "a", T0 + 2 * HOUR));
    read.catch_up(&mut models, false);
    assert!(
        read.session_features("s").is_none(),
        "closed by the watermark"
    );
    assert_eq!(
        read.session_features("t").map(|s| s.since_last_event_ms),
        Some(0)
    );
    // The user's activity window spans a day: still open.
    assert_eq!(read.user_features("u-s").map(|u| u.events), Some(2));
    assert_eq!(
        read.user_features("u-s").map(|u| u.since_last_event_ms),
        Some(2 * HOUR - 1_000)
    );
}

#[test]
fn categories_come_from_the_first_attribute_present() {
    let attributes = WindowConfig::default().category_attributes;
    let item = |a: serde_json::Value| {
        Item::from_value(&json!({"item_id": "x", "attributes": a})).expect("item")
    };
    assert_eq!(
        categories_of(&item(json!({"category": "Shoes"})), &attributes),
        ["Shoes"]
    );
    assert_eq!(
        categories_of(
            &item(json!({"categories": ["a", "b", "c", "d", "e"]})),
            &attributes
        ),
        ["a", "b", "c", "d"]
    );
    assert!(categories_of(&item(json!({"category": 3})), &attributes).is_empty());
    assert!(categories_of(&item(json!({"colour": "red"})), &attributes).is_empty());
}

proptest! {
    /// The read side brought up to date from the journals at random points answers what
    /// one built whole from the final state answers.
    #[test]
    fn the_read_side_follows_the_journals(
        steps in prop::collection::vec(
            (0..6_u32, 0..4_u8, 0..(10 * MINUTE), 0..(8 * MINUTE), prop::bool::weighted(0.2), prop::bool::weighted(0.15)),
            1..120,
        ),
    ) {
        let mut features = WindowedFeatures::default();
        let mut reads = WindowReads::of(&features);
        let mut clock = T0;
        for (n, (item, session, step, behind, impression, publish)) in steps.into_iter().enumerate() {
            clock += step;
            let ts = clock - behind;
            if impression {
                features.observe_impression(ts, [item, (item + 1) % 6]);
            } else {
                let kind = if n % 3 == 0 { EventKind::Click } else { EventKind::View };
                let e = event(&n.to_string(), &format!("s{session}"), kind, "i", ts);
                features.observe_event(&e, item);
            }
            if publish {
                reads.catch_up(&mut features);
            }
        }
        reads.catch_up(&mut features);
        let whole = WindowReads::of(&features);
        for item in 0..6 {
            prop_assert_eq!(reads.item_by_index(item), whole.item_by_index(item));
            prop_assert_eq!(reads.item_by_index(item), features.item_features(item));
        }
        for session in 0..4 {
            let id = format!("s{session}");
            prop_assert_eq!(reads.session(&id), whole.session(&id));
            let user = format!("u-{id}");
            prop_assert_eq!(reads.user(&user), whole.user(&user));
        }
        let json = serde_json::to_string(&features).expect("serialises");
        let restored: WindowedFeatures = serde_json::from_str(&json).expect("parses");
        prop_assert_eq!(restored, features);
    }
}

#[test]
fn session_specs_reject_fixed_constructors() {
    assert!(
        crate::windows::SlidingWindows::<u8, u64>::new(WindowSpec::Session { gap_ms: 5 }).is_err()
    );
}

#[test]
fn an_erased_user_leaves_no_activity_or_session_window() {
    use crate::online::{OnlineConfig, OnlineModels};
    use crate::read_side::ReadSide;
    let mut models = OnlineModels::new(OnlineConfig::default());
    models.apply_event(1, &event("1", "s", EventKind::View, "a", T0));
    models.apply_event(2, &event("2", "other", EventKind::View, "a", T0 + 1));
    let mut read = ReadSide::of(&models);
    assert!(read.user_features("u-s").is_some() && read.session_features("s").is_some());
    models.apply_user_erasure(3, "u-s");
    read.catch_up(&mut models, false);
    assert!(read.user_features("u-s").is_none());
    assert!(read.session_features("s").is_none());
    assert!(
        read.session_features("other").is_some(),
        "other users keep theirs"
    );
    let json = serde_json::to_string(models.windows()).expect("serialises");
    assert!(!json.contains("u-s") && !json.contains("\"s\""), "{json}");
}

#[test]
fn a_stored_state_of_another_layout_is_refused() {
    let json = serde_json::to_string(&WindowedFeatures::default()).expect("serialises");
    let tampered = json.replacen(
        "\"size_ms\":60000,\"slide_ms\":60000",
        "\"size_ms\":60000,\"slide_ms\":0",
        1,
    );
    assert_ne!(json, tampered, "the minute's spec is in the state");
    assert!(serde_json::from_str::<WindowedFeatures>(&tampered).is_err());
    assert!(serde_json::from_str::<WindowedFeatures>(&json).is_ok());
}
