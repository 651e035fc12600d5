use proptest::prelude::*;
use streamrec_proto::{DriftStatus, FeatureDrift};
use streamrec_proto::{FeatureLog, PackedFeatures, ShownItem, StreamPosition};

use super::*;

const HOUR: i64 = 3_600_000;
const T0: i64 = 1_700_000_000_000 / HOUR * HOUR;

fn counts(bins: &[(u32, u64)]) -> BinCounts {
    let mut c = BinCounts::default();
    for (bin, n) in bins {
        for _ in 0..*n {
            c.add(*bin);
        }
    }
    c
}

#[test]
fn psi_is_zero_for_one_distribution_and_finite_for_disjoint_ones() {
    let a = counts(&[(1, 50), (2, 30), (3, 20)]);
    assert!(categorical_psi(&a, &a, 10).abs() < 1e-12);
    assert!(numeric_psi(&a, &a, 10).abs() < 1e-12);
    let b = counts(&[(7, 50), (8, 50)]);
    let psi = categorical_psi(&a, &b, 10);
    assert!(psi.is_finite() && psi > 5.0, "{psi}");
    // The floor bounds an empty bin's term: (1 − 1e-4)·ln(1/1e-4) per side at most.
    let one = counts(&[(1, 10)]);
    let other = counts(&[(2, 10)]);
    let bound = 2.0 * (1.0 - PSI_FLOOR) * (1.0 / PSI_FLOOR).ln();
    assert!((categorical_psi(&one, &other, 10) - bound).abs() < 1e-9);
}

#[test]
fn numeric_bins_span_both_windows_and_a_constant_feature_never_drifts() {
    let constant = counts(&[(fine_bin(0.0).unwrap_or(0), 500)]);
    assert_eq!(numeric_psi(&constant, &constant, 10), 0.0);
    let low: BinCounts = counts(
        &(0..100)
            .map(|i| (fine_bin(f64::from(i) / 1000.0).unwrap_or(0), 5))
            .collect::<Vec<_>>(),
    );
    let high: BinCounts = counts(
        &(0..100)
            .map(|i| (fine_bin(0.5 + f64::from(i) / 1000.0).unwrap_or(0), 5))
            .collect::<Vec<_>>(),
    );
    assert!(numeric_psi(&low, &high, 10) >= MAJOR_PSI);
    assert_eq!(fine_bin(f64::NAN), None);
    assert_eq!(fine_bin(f64::INFINITY), Some(FINE_BINS - 1));
    assert_eq!(fine_bin(f64::NEG_INFINITY), Some(0));
}

proptest! {
    /// PSI is symmetric, never negative, and finite whatever the counts.
    #[test]
    fn psi_is_finite_symmetric_and_not_negative(
        a in proptest::collection::vec((0u32..40, 1u64..50), 1..20),
        b in proptest::collection::vec((0u32..40, 1u64..50), 1..20),
        bins in 2usize..30,
    ) {
        let (a, b) = (counts(&a), counts(&b));
        for psi in [categorical_psi(&a, &b, bins), numeric_psi(&a, &b, bins)] {
            prop_assert!(psi.is_finite() && psi >= -1e-12);
        }
        prop_assert!((categorical_psi(&a, &b, bins) - categorical_psi(&b, &a, bins)).abs() < 1e-9);
        prop_assert!((numeric_psi(&a, &b, bins) - numeric_psi(&b, &a, bins)).abs() < 1e-9);
    }
}

/// `n` events in hour `hour`, on items drawn (deterministically, skewed) from `items`.
fn hour_of_events(monitor: &mut DriftMonitor, hour: i64, n: u64, items: std::ops::Range<u32>) {
    let span = f64::from(items.end - items.start);
    for k in 0..n {
        // A skewed, fixed mix (item i's share falls with i), sampled afresh each hour.
        let draw = (k + hour as u64 * 1_000_003).wrapping_mul(2_654_435_761) % 10_007;
        let u = draw as f64 / 10_007.0;
        let item = items.start + (span * u * u) as u32;
        let ts = T0 + hour * HOUR + (k as i64 * HOUR) / n as i64;
        let kind = if k % 4 == 0 {
            EventKind::View
        } else {
            EventKind::Click
        };
        monitor.observe_event(ts, item, kind);
        monitor.close_through(ts - 5 * 60_000);
    }
}

fn psi_of<'a>(report: &'a DriftReport, name: &str) -> &'a FeatureDrift {
    report
        .features
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("{name} reported"))
}

#[test]
fn a_total_change_of_item_mix_is_major_and_raises_one_alert() {
    let mut monitor = DriftMonitor::default();
    hour_of_events(&mut monitor, 0, 2_000, 0..60);
    hour_of_events(&mut monitor, 1, 2_000, 100..160);
    // Into hour 2, past the lateness: hour 1 closes.
    hour_of_events(&mut monitor, 2, 100, 100..160);
    let report = monitor.report().expect("hour 1 closed").clone();
    assert_eq!(report.window.start, T0 + HOUR);
    let item = psi_of(&report, "item");
    assert_eq!(item.status, DriftStatus::Major, "{item:?}");
    assert!(item.psi.is_some_and(|p| p >= MAJOR_PSI));
    assert_eq!(item.reference.map(|w| w.start), Some(T0));
    assert_eq!(psi_of(&report, "kind").status, DriftStatus::Stable);
    // Impressions never came: their features have nothing to compare.
    assert_eq!(psi_of(&report, "rerank_score").status, DriftStatus::NoData);
    let alerts = monitor.take_alerts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].feature, "item");
    assert_eq!(alerts[0].window.end, report.window.end);
    assert!(monitor.take_alerts().is_empty());
}

#[test]
fn the_same_mix_at_the_same_volume_stays_stable() {
    let mut monitor = DriftMonitor::default();
    for hour in 0..4 {
        hour_of_events(&mut monitor, hour, 2_000, 0..200);
    }
    let report = monitor.report().expect("windows closed");
    for name in ["item", "kind"] {
        let f = psi_of(report, name);
        assert!(f.psi.is_some_and(|p| p < MODERATE_PSI), "{f:?}");
        assert_eq!(f.status, DriftStatus::Stable);
    }
    assert!(monitor.take_alerts().is_empty());
}

#[test]
fn a_feature_that_stays_major_alerts_once_and_a_thin_window_reports_no_data() {
    let mut monitor = DriftMonitor::default();
    hour_of_events(&mut monitor, 0, 1_000, 0..50);
    hour_of_events(&mut monitor, 1, 1_000, 100..150);
    hour_of_events(&mut monitor, 2, 1_000, 200..250);
    hour_of_events(&mut monitor, 3, 1_000, 300..350);
    assert_eq!(
        monitor.take_alerts().len(),
        1,
        "major three windows running"
    );
    hour_of_events(&mut monitor, 4, 50, 300..350);
    hour_of_events(&mut monitor, 5, 50, 300..350);
    let report = monitor.report().expect("closed");
    assert_eq!(psi_of(report, "item").status, DriftStatus::NoData);
}

fn impression(ts: i64, score: f32, feature: f32) -> Impression {
    Impression {
        rec_id: format!("r{ts}"),
        session_id: "s".into(),
        user_id: None,
        ts,
        model_version: "v1".into(),
        items: (0..5)
            .map(|p| ShownItem {
                item_id: format!("i{p}"),
                position: p,
                propensity: 1.0,
                features: Vec::new(),
                candidate_features: Some(PackedFeatures(vec![feature; FEATURES])),
                rerank_score: Some(score + p as f32 * 0.01),
            })
            .collect(),
        traceparent: None,
        logged: Some(FeatureLog {
            set: FEATURE_SET.to_owned(),
            as_of: StreamPosition::default(),
        }),
    }
}

#[test]
fn logged_features_and_scores_are_monitored_and_another_layout_is_not() {
    let mut monitor = DriftMonitor::default();
    for hour in 0..3 {
        for k in 0..100 {
            let ts = T0 + hour * HOUR + k * 30_000;
            let (score, feature) = if hour == 0 { (0.1, 0.2) } else { (3.0, 0.9) };
            monitor.observe_impression(ts, &impression(ts, score + k as f32 * 1e-3, feature));
            let mut other = impression(ts, 99.0, 99.0);
            if let Some(log) = other.logged.as_mut() {
                log.set = "candidates.v0".into();
            }
            // Another layout's vectors and scores are not read as this one's.
            monitor.observe_impression(ts, &other);
        }
        monitor.observe_event(T0 + (hour + 1) * HOUR + 6 * 60_000, 1, EventKind::View);
        monitor.close_through(T0 + (hour + 1) * HOUR + 60_000);
    }
    let report = monitor.report().expect("closed").clone();
    let score = psi_of(&report, "rerank_score");
    assert_eq!(score.count, 500);
    let input = psi_of(&report, "candidate.knn");
    assert_eq!(
        input.count, 500,
        "the other layout's vectors were not counted"
    );
    // Hour 1 against hour 0: both moved.
    let alerts = monitor.take_alerts();
    assert!(
        alerts.iter().any(|a| a.feature == "rerank_score"),
        "{alerts:?}"
    );
    assert!(alerts.iter().any(|a| a.feature == "candidate.knn"));
}

#[test]
fn a_stored_monitor_continues_as_the_live_one_does() {
    let mut live = DriftMonitor::default();
    hour_of_events(&mut live, 0, 500, 0..40);
    let json = serde_json::to_vec(&live).expect("serialises");
    let mut restored: DriftMonitor = serde_json::from_slice(&json).expect("reads back");
    assert_eq!(restored, live);
    for monitor in [&mut live, &mut restored] {
        hour_of_events(monitor, 1, 500, 20..60);
        hour_of_events(monitor, 2, 10, 20..60);
    }
    assert_eq!(restored.report(), live.report());
    assert_eq!(
        serde_json::to_vec(&restored).ok(),
        serde_json::to_vec(&live).ok()
    );
    let mut tampered: serde_json::Value = serde_json::from_slice(&json).expect("json");
    tampered["bins"] = 0.into();
    assert!(serde_json::from_value::<DriftMonitor>(tampered).is_err());
}

#[test]
fn every_monitored_feature_has_a_name() {
    let names = monitored_features();
    assert_eq!(names.len(), FEATURES + 3);
    assert_eq!(names[0], "item");
    assert_eq!(names[2], "candidate.knn");
    assert_eq!(names.last().map(String::as_str), Some("rerank_score"));
}
