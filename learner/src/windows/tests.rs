//! Every window kind, on random out-of-order streams with random lateness, against a
//! brute-force recomputation from the events that were not late.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

type Key = u8;

/// What a run emitted, `(key, window, count)` in order of closing, and the events it took.
struct Run {
    emitted: Vec<(Key, Window, u64)>,
    in_time: Vec<(Key, i64)>,
    watermark: Option<i64>,
}

fn run_sliding(
    spec: WindowSpec,
    lateness: i64,
    events: &[(Key, i64)],
) -> (Run, SlidingWindows<Key, u64>) {
    let mut watermark = Watermark::new(lateness);
    let mut store = SlidingWindows::new(spec).expect("valid spec");
    let mut run = Run {
        emitted: Vec::new(),
        in_time: Vec::new(),
        watermark: None,
    };
    for &(key, ts) in events {
        let Ok(now) = watermark.observe(ts) else {
            continue;
        };
        store.add(&key, ts, &1);
        run.in_time.push((key, ts));
        store.close_through(now, |k, w, v| run.emitted.push((*k, w, *v)));
    }
    run.watermark = watermark.current();
    (run, store)
}

fn run_sessions(
    gap_ms: i64,
    lateness: i64,
    events: &[(Key, i64)],
) -> (Run, SessionWindows<Key, u64>) {
    let mut watermark = Watermark::new(lateness);
    let mut store = SessionWindows::new(WindowSpec::Session { gap_ms }).expect("valid spec");
    let mut run = Run {
        emitted: Vec::new(),
        in_time: Vec::new(),
        watermark: None,
    };
    for &(key, ts) in events {
        let Ok(now) = watermark.observe(ts) else {
            continue;
        };
        store.add(&key, ts, &1, usize::MAX);
        run.in_time.push((key, ts));
        store.close_through(now, |k, w, v| run.emitted.push((*k, w, *v)));
    }
    run.watermark = watermark.current();
    (run, store)
}

/// Every fixed window with events, and its count, from scratch.
fn brute_fixed(spec: WindowSpec, events: &[(Key, i64)]) -> BTreeMap<(Key, Window), u64> {
    let mut windows = BTreeMap::new();
    for &(key, ts) in events {
        for window in spec.windows_of(ts) {
            *windows.entry((key, window)).or_insert(0) += 1;
        }
    }
    windows
}

/// Every session window and its count, from scratch: a key's events sorted, split where
/// two neighbours are `gap` or more apart.
fn brute_sessions(gap: i64, events: &[(Key, i64)]) -> BTreeMap<(Key, Window), u64> {
    let mut by_key: BTreeMap<Key, Vec<i64>> = BTreeMap::new();
    for &(key, ts) in events {
        by_key.entry(key).or_default().push(ts);
    }
    let mut sessions = BTreeMap::new();
    for (key, mut times) in by_key {
        times.sort_unstable();
        let mut start = times[0];
        let mut last = times[0];
        let mut count = 0;
        for ts in times {
            if ts - last >= gap {
                sessions.insert(
                    (
                        key,
                        Window {
                            start,
                            end: last + gap,
                        },
                    ),
                    count,
                );
                start = ts;
                count = 0;
            }
            last = ts;
            count += 1;
        }
        sessions.insert(
            (
                key,
                Window {
                    start,
                    end: last + gap,
                },
            ),
            count,
        );
    }
    sessions
}

fn closed(
    windows: &BTreeMap<(Key, Window), u64>,
    watermark: Option<i64>,
) -> Vec<(Key, Window, u64)> {
    windows
        .iter()
        .filter(|((_, w), _)| watermark.is_some_and(|wm| w.is_closed(wm)))
        .map(|(&(k, w), &v)| (k, w, v))
        .collect()
}

fn sorted(mut emitted: Vec<(Key, Window, u64)>) -> Vec<(Key, Window, u64)> {
    emitted.sort();
    emitted
}

/// Out-of-order streams: a clock moving forward in small steps, each event stamped up to
/// `disorder` behind it, now and then one much later than that.
fn stream() -> impl Strategy<Value = Vec<(Key, i64)>> {
    (
        prop::collection::vec(
            (0..4_u8, 0..30_i64, 0..80_i64, prop::bool::weighted(0.1)),
            1..150,
        ),
        0..2_000_i64,
    )
        .prop_map(|(steps, origin)| {
            let mut clock = origin;
            steps
                .into_iter()
                .map(|(key, step, behind, very_late)| {
                    clock += step;
                    (key, clock - behind - if very_late { 400 } else { 0 })
                })
                .collect()
        })
}

fn fixed_spec() -> impl Strategy<Value = WindowSpec> {
    prop_oneof![
        (1..60_i64).prop_map(|size_ms| WindowSpec::Tumbling { size_ms }),
        (1..20_i64, 1..6_i64).prop_map(|(slide_ms, n)| WindowSpec::Sliding {
            size_ms: slide_ms * n,
            slide_ms,
        }),
    ]
}

proptest! {
    #[test]
    fn fixed_windows_equal_a_brute_force_recomputation(
        spec in fixed_spec(),
        lateness in 0..120_i64,
        events in stream(),
    ) {
        let (run, store) = run_sliding(spec, lateness, &events);
        let brute = brute_fixed(spec, &run.in_time);
        // Each closed window once, with its final count: nothing changed it after it closed.
        prop_assert_eq!(sorted(run.emitted.clone()), closed(&brute, run.watermark));
        let wm = run.watermark.expect("one event is never late");
        for key in 0..4 {
            let latest = store.latest_closed(&key, wm).map(|(w, v)| (w, *v));
            let expected = brute
                .iter()
                .filter(|((k, w), _)| *k == key && w.end == floor_to(wm, match spec {
                    WindowSpec::Sliding { slide_ms, .. } => slide_ms,
                    WindowSpec::Tumbling { size_ms } => size_ms,
                    WindowSpec::Session { .. } => unreachable!(),
                }))
                .map(|((_, w), v)| (*w, *v))
                .next();
            prop_assert_eq!(latest, expected);
            let open: Vec<(Window, u64)> = brute
                .iter()
                .filter(|((k, w), _)| *k == key && !w.is_closed(wm))
                .map(|((_, w), v)| (*w, *v))
                .collect();
            prop_assert_eq!(store.open(&key), open);
        }
    }

    #[test]
    fn session_windows_equal_a_brute_force_recomputation(
        gap in 1..60_i64,
        lateness in 0..120_i64,
        events in stream(),
    ) {
        let (run, store) = run_sessions(gap, lateness, &events);
        let brute = brute_sessions(gap, &run.in_time);
        prop_assert_eq!(sorted(run.emitted.clone()), closed(&brute, run.watermark));
        let wm = run.watermark.expect("one event is never late");
        for key in 0..4 {
            let open: Vec<(Window, u64)> = store
                .open(&key)
                .iter()
                .map(|s| (Window { start: s.start, end: s.last + gap }, s.value))
                .collect();
            let expected: Vec<(Window, u64)> = brute
                .iter()
                .filter(|((k, w), _)| *k == key && !w.is_closed(wm))
                .map(|((_, w), v)| (*w, *v))
                .collect();
            prop_assert_eq!(open, expected);
        }
    }

    #[test]
    fn late_events_never_change_a_closed_window(
        spec in fixed_spec(),
        gap in 1..60_i64,
        lateness in 0..120_i64,
        events in stream(),
        late in prop::collection::vec((0..4_u8, 1..1_000_i64, any::<prop::sample::Index>()), 0..20),
    ) {
        // The same stream with events stamped behind the watermark slipped in.
        let mut watermark = Watermark::new(lateness);
        let mut with_late = Vec::new();
        let mut slots: Vec<usize> = late.iter().map(|(_, _, at)| at.index(events.len())).collect();
        slots.sort_unstable();
        let mut next = late.iter().zip(slots);
        let mut pending = next.next();
        for (n, &(key, ts)) in events.iter().enumerate() {
            let _ = watermark.observe(ts);
            with_late.push((key, ts));
            while let Some(((late_key, behind, _), slot)) = pending {
                if slot != n {
                    break;
                }
                if let Some(wm) = watermark.current() {
                    with_late.push((*late_key, wm - behind));
                }
                pending = next.next();
            }
        }
        let (plain, plain_store) = run_sliding(spec, lateness, &events);
        let (mixed, mixed_store) = run_sliding(spec, lateness, &with_late);
        prop_assert_eq!(&plain.emitted, &mixed.emitted);
        prop_assert_eq!(plain_store, mixed_store);
        let (plain, plain_store) = run_sessions(gap, lateness, &events);
        let (mixed, mixed_store) = run_sessions(gap, lateness, &with_late);
        prop_assert_eq!(&plain.emitted, &mixed.emitted);
        prop_assert_eq!(plain_store, mixed_store);
    }

    #[test]
    fn advancing_quietly_leaves_what_closing_in_order_leaves(
        spec in fixed_spec(),
        lateness in 0..120_i64,
        events in stream(),
    ) {
        let mut watermark = Watermark::new(lateness);
        let mut closing: SlidingWindows<Key, u64> = SlidingWindows::new(spec).expect("valid spec");
        let mut advancing = closing.clone();
        for &(key, ts) in &events {
            let Ok(now) = watermark.observe(ts) else {
                continue;
            };
            closing.add(&key, ts, &1);
            advancing.add(&key, ts, &1);
            closing.close_through(now, |_, _, _| {});
            advancing.advance_to(now);
            prop_assert_eq!(&advancing, &closing);
            // The read side re-reads the same keys (each once is enough).
            let changed = |store: &mut SlidingWindows<Key, u64>| {
                store.take_changed().map(|mut keys| {
                    keys.sort_unstable();
                    keys.dedup();
                    keys
                })
            };
            prop_assert_eq!(changed(&mut advancing), changed(&mut closing));
            for key in 0..4 {
                prop_assert_eq!(advancing.latest_closed(&key, now), closing.latest_closed(&key, now));
            }
        }
        prop_assert_eq!(
            serde_json::to_string(&advancing).expect("serialises"),
            serde_json::to_string(&closing).expect("serialises")
        );
    }

    #[test]
    fn a_store_saved_and_restored_mid_stream_continues_identically(
        spec in fixed_spec(),
        lateness in 0..120_i64,
        events in stream(),
        cut in any::<prop::sample::Index>(),
    ) {
        let cut = cut.index(events.len());
        let (_, whole) = run_sliding(spec, lateness, &events);
        let (_, head) = run_sliding(spec, lateness, &events[..cut]);
        let json = serde_json::to_string(&head).expect("serialises");
        let mut restored: SlidingWindows<Key, u64> = serde_json::from_str(&json).expect("parses");
        prop_assert_eq!(&restored, &head);
        let mut watermark = Watermark::new(lateness);
        for &(_, ts) in &events[..cut] {
            let _ = watermark.observe(ts);
        }
        for &(key, ts) in &events[cut..] {
            if let Ok(now) = watermark.observe(ts) {
                restored.add(&key, ts, &1);
                restored.close_through(now, |_, _, _| {});
            }
        }
        prop_assert_eq!(restored, whole);
    }
}

#[test]
fn an_out_of_order_event_inside_the_lateness_is_applied() {
    let minute = 60_000;
    let mut watermark = Watermark::new(5 * minute);
    let mut counts: SlidingWindows<&str, u64> =
        SlidingWindows::new(WindowSpec::Tumbling { size_ms: minute }).expect("valid");
    for ts in [10 * minute, 12 * minute, 10 * minute + 30_000] {
        let now = watermark.observe(ts).expect("within the lateness");
        counts.add(&"a", ts, &1);
        counts.close_through(now, |_, _, _| {});
    }
    assert_eq!(watermark.lateness_of(4 * minute), Some(3 * minute));
    let mut closed = Vec::new();
    counts.close_through(20 * minute, |_, w, v| closed.push((w.start, *v)));
    assert_eq!(closed, vec![(10 * minute, 2), (12 * minute, 1)]);
}

#[test]
fn past_its_bound_the_session_ending_first_is_closed_early() {
    let mut sessions: SessionWindows<&str, u64> = SessionWindows::with_gap(10);
    sessions.add(&"a", 0, &1, 2);
    sessions.add(&"b", 5, &1, 2);
    sessions.add(&"a", 3, &1, 2);
    sessions.add(&"c", 6, &1, 2);
    assert!(sessions.open(&"a").is_empty(), "a ends first (13 < 15)");
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions.current(&"b").map(|s| s.value), Some(1));
    sessions.remove(&"b");
    assert_eq!(sessions.len(), 1);
    let mut closed = Vec::new();
    sessions.close_through(100, |k, w, v| closed.push((*k, w, *v)));
    assert_eq!(closed, vec![("c", Window { start: 6, end: 16 }, 1)]);
}

#[test]
fn specs_are_checked() {
    assert!(WindowSpec::Tumbling { size_ms: 0 }.check().is_err());
    assert!(
        WindowSpec::Sliding {
            size_ms: 10,
            slide_ms: 3
        }
        .check()
        .is_err()
    );
    assert_eq!(
        WindowSpec::Sliding {
            size_ms: 10,
            slide_ms: 5
        }
        .windows_of(12),
        vec![Window { start: 10, end: 20 }, Window { start: 5, end: 15 }]
    );
    assert_eq!(
        WindowSpec::Tumbling { size_ms: 10 }.windows_of(-1),
        vec![Window { start: -10, end: 0 }]
    );
}
