//! Served against replayed: an offline engine answers requests while it learns (publishing
//! its read side at every answer), then a fresh replay of the same streams recomputes every
//! logged vector at its version's position only.

use futures::executor::block_on;
use streamrec_learner::online::{OnlineConfig, OnlineModels};
use streamrec_proto::{Event, EventKind, Impression, Item};
use streamrec_ranker::ComputeDevice;

use super::*;
use crate::offline::OfflineEngine;
use crate::request::RecommendRequest;

const T0: i64 = 1_700_000_000_000;

fn event(n: usize) -> Event {
    // Sessions of a few steps over 40 items, walking neighbourhoods so co-visitation forms.
    let session = n / 6;
    let item = (session * 7 + (n % 6) * 3) % 40;
    Event {
        event_id: format!("e{n}"),
        session_id: format!("s{}", session % 90),
        user_id: session
            .is_multiple_of(4)
            .then(|| format!("u{}", session % 11)),
        kind: if n.is_multiple_of(5) {
            EventKind::View
        } else {
            EventKind::Click
        },
        item_id: format!("i{item}"),
        // 12 s apart: the run spans hours of event time, so hourly windows close.
        ts: T0 + n as i64 * 12_000,
        rec_id: None,
        position: None,
        value: None,
        context: None,
        details: Default::default(),
    }
}

fn config() -> OnlineConfig {
    let mut config = OnlineConfig::default();
    config.candidates.window_features = true;
    // Groups of 8: a list of 6 fills most of one, so clicks train on what was logged.
    config.replay.negatives = 7;
    config.replay.batch = 8;
    config
}

/// The events stream and the items stream, each `(sequence, message)`.
type Streams = (Vec<(u64, StreamEntry)>, Vec<(u64, Item)>);

fn catalog_item(id: String) -> Item {
    Item {
        item_id: id,
        title: None,
        attributes: None,
        available: true,
        expires_at: None,
        details: Default::default(),
    }
}

/// The streams as a live engine would have written them, from an offline engine that
/// answers a request every fourth event; every other answer is clicked (its second slot,
/// carrying its `rec_id`: bandit rewards and logged training groups), and the catalog grows
/// while it serves.
fn served() -> Streams {
    let mut engine = OfflineEngine::new(OnlineModels::new(config()), ComputeDevice::Cpu, 100, true)
        .expect("engine");
    let mut items = Vec::new();
    for i in 0..30 {
        let item = catalog_item(format!("i{i}"));
        engine.upsert_item(item.clone());
        items.push((engine.models().catalog.last_seq(), item));
    }
    let mut events = Vec::new();
    let mut last_impression = 0;
    let mut clicks = 0;
    for n in 0..1_600 {
        if n % 200 == 100 {
            let item = catalog_item(format!("i{}", 30 + n / 200));
            engine.upsert_item(item.clone());
            items.push((engine.models().catalog.last_seq(), item));
        }
        let e = event(n);
        engine.learn(&e).expect("learns");
        events.push((engine.models().last_seq(), StreamEntry::Event(e)));
        if n % 4 == 3 {
            let request = RecommendRequest {
                session_id: format!("s{}", (n / 6) % 90),
                user_id: (n % 8 == 3).then(|| format!("u{}", (n / 6) % 11)),
                k: 6,
                rec_id: format!("rec-{n}"),
                ..RecommendRequest::default()
            };
            block_on(engine.recommend(&request)).expect("answers");
            if let Some((seq, impression)) = engine.last_impression()
                && *seq != last_impression
            {
                last_impression = *seq;
                let impression = impression.clone();
                if n % 8 == 3
                    && let Some(shown) = impression.items.get(1)
                {
                    clicks += 1;
                    let click = Event {
                        event_id: format!("click-{n}"),
                        kind: EventKind::Click,
                        item_id: shown.item_id.clone(),
                        rec_id: Some(impression.rec_id.clone()),
                        session_id: impression.session_id.clone(),
                        user_id: impression.user_id.clone(),
                        ts: event(n).ts + 1,
                        ..event(n)
                    };
                    events.push((*seq, StreamEntry::Impression(impression)));
                    engine.learn(&click).expect("learns");
                    events.push((engine.models().last_seq(), StreamEntry::Event(click)));
                } else {
                    events.push((*seq, StreamEntry::Impression(impression)));
                }
            }
        }
    }
    let counters = engine.models().counters();
    assert!(clicks > 50 && counters.attributed > 50, "{counters:?}");
    assert!(counters.rewards > counters.attributed, "{counters:?}");
    assert!(counters.logged_groups > 0, "{counters:?}");
    (events, items)
}

fn impressions(events: &[(u64, StreamEntry)]) -> impl Iterator<Item = &Impression> {
    events.iter().filter_map(|(_, e)| match e {
        StreamEntry::Impression(i) => Some(i),
        _ => None,
    })
}

#[test]
fn replayed_features_equal_served_features_bit_for_bit() {
    let (events, items) = served();
    let logged: Vec<&Impression> = impressions(&events).collect();
    assert!(logged.len() > 300, "{} impressions", logged.len());
    // The log is the whole vector, scored: the re-ranker trained and served here, and the
    // windowed inputs were live.
    assert!(
        logged
            .iter()
            .flat_map(|i| &i.items)
            .any(|i| i.rerank_score.is_some())
    );
    assert!(logged.iter().flat_map(|i| &i.items).any(|i| {
        i.candidate_features
            .as_ref()
            .is_some_and(|f| f.0[WINDOW_INPUT] != 0.0)
    }));
    let report = replay_logged_features(
        OnlineModels::new(config()),
        ComputeDevice::Cpu,
        &events,
        &items,
    )
    .expect("replays");
    assert_eq!(report.skipped, 0);
    assert_eq!(report.impressions, logged.len());
    assert!(report.vectors >= 5 * logged.len(), "{report:?}");
    assert!(
        report.mismatches.is_empty(),
        "{:?}",
        &report.mismatches[..1]
    );
}

/// An input the windows feed (`events_24h`).
const WINDOW_INPUT: usize = 8;

#[test]
fn a_logged_vector_that_serving_did_not_compute_is_caught() {
    let (mut events, items) = served();
    let tampered = events
        .iter_mut()
        .rev()
        .find_map(|(_, e)| match e {
            StreamEntry::Impression(i) => Some(i),
            _ => None,
        })
        .expect("an impression");
    let features = tampered.items[0]
        .candidate_features
        .as_mut()
        .expect("logged");
    features.0[3] = f32::from_bits(features.0[3].to_bits() ^ 1);
    let item_id = tampered.items[0].item_id.clone();
    let report = replay_logged_features(
        OnlineModels::new(config()),
        ComputeDevice::Cpu,
        &events,
        &items,
    )
    .expect("replays");
    assert_eq!(report.mismatches.len(), 1, "{report:?}");
    assert_eq!(report.mismatches[0].item_id, item_id);
}
