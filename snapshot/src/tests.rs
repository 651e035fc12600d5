use streamrec_learner::online::{OnlineConfig, OnlineModels, choose_slate};
use streamrec_proto::{Event, EventKind, Impression, ShownItem};

use super::*;

const T0: i64 = 1_700_000_000_000;

fn event(i: u64, session: &str, kind: EventKind, item: &str, rec_id: Option<String>) -> Event {
    Event {
        event_id: format!("e{i}"),
        session_id: session.into(),
        user_id: None,
        kind,
        item_id: item.into(),
        ts: T0 + i as i64 * 1000,
        rec_id,
        position: None,
        value: None,
        context: None,
        details: Default::default(),
    }
}

/// A model that has learned views, impressions and answering clicks.
fn learned(events: u64) -> OnlineModels {
    let mut m = OnlineModels::new(OnlineConfig::default());
    let mut seq = 0;
    for i in 0..events {
        seq += 1;
        let item = format!("i{}", (i * 7) % 23);
        m.apply_event(
            seq,
            &event(i, &format!("s{}", i % 5), EventKind::View, &item, None),
        );
        if i % 7 == 0 {
            let rec_id = format!("r{i}");
            let shown: Vec<ShownItem> = choose_slate(Some(&m.bandit), &m.popular(10), 3, &rec_id)
                .into_iter()
                .map(|slot| slot.shown)
                .collect();
            let clicked = shown.last().map(|s| s.item_id.clone());
            seq += 1;
            m.apply_impression(
                seq,
                &Impression {
                    user_id: None,
                    traceparent: None,
                    logged: None,
                    rec_id: rec_id.clone(),
                    session_id: "s".into(),
                    ts: T0,
                    model_version: "v".into(),
                    items: shown,
                },
            );
            if let Some(item) = clicked {
                seq += 1;
                m.apply_event(
                    seq,
                    &event(100_000 + i, "s", EventKind::Click, &item, Some(rec_id)),
                );
            }
        }
    }
    m
}

#[test]
fn a_snapshot_restores_exactly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SnapshotStore::new(dir.path(), 5);
    let models = learned(300);
    assert!(
        models.bandit.model().arms().count() > 0,
        "the bandit has learned"
    );
    let manifest = store.write(&models).expect("written");
    assert_eq!(manifest.last_seq(), models.last_seq());
    let (read, restored) = store.load(&manifest.version).expect("read back");
    assert_eq!(read, manifest);
    assert!(restored == models, "restored state differs");
    // Writing the restored state again gives the same files: the version is content-derived.
    let again = write_snapshot(&dir.path().join("other"), &restored, None).expect("written");
    assert_eq!(again.learners, manifest.learners);
    assert_eq!(again.version, manifest.version);
}

#[test]
fn a_corrupt_newest_snapshot_is_skipped_and_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SnapshotStore::new(dir.path(), 5);
    let older = store.write(&learned(100)).expect("written");
    let newer = store.write(&learned(200)).expect("written");
    // Truncate a learner file of the newest.
    let victim = store.path(&newer.version).join("embeddings.safetensors");
    let bytes = std::fs::read(&victim).expect("read");
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).expect("truncate");
    let (restored, skipped) = store.restore_latest();
    let (manifest, _) = restored.expect("the older one restores");
    assert_eq!(manifest.version, older.version);
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].to_string().contains("SHA-256"), "{}", skipped[0]);

    // Same bytes length, different content: still caught by the hash.
    let third = store.write(&learned(250)).expect("written");
    let victim = store.path(&third.version).join("popularity.json");
    let mut bytes = std::fs::read(&victim).expect("read");
    let last = bytes.len() - 2;
    bytes[last] ^= 1;
    std::fs::write(&victim, &bytes).expect("flip a bit");
    let (restored, skipped) = store.restore_latest();
    assert_eq!(restored.expect("older restores").0.version, older.version);
    assert_eq!(skipped.len(), 2);
}

#[test]
fn retention_keeps_the_newest_and_the_pinned() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SnapshotStore::new(dir.path(), 2);
    let first = store.write(&learned(10)).expect("written");
    store.pin(&first.version, true).expect("pinned");
    for n in [20, 30, 40] {
        store.write(&learned(n)).expect("written");
    }
    let versions: Vec<_> = store.list().into_iter().map(|i| i.version).collect();
    assert_eq!(versions.len(), 3, "{versions:?}");
    assert_eq!(versions[0], first.version, "the pinned one survives");
}

#[test]
fn a_torn_write_is_never_visible() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SnapshotStore::new(dir.path(), 5);
    let good = store.write(&learned(50)).expect("written");
    // What a crash mid-write leaves: a temp folder with part of the files.
    let torn = dir.path().join(".tmp-000000000999-abc-1");
    std::fs::create_dir_all(&torn).expect("mkdir");
    std::fs::write(torn.join("popularity.json"), b"{").expect("write");
    assert_eq!(store.list().len(), 1);
    assert_eq!(
        store.restore_latest().0.expect("restores").0.version,
        good.version
    );
}

#[test]
fn summaries_and_diffs_report_what_moved() {
    let (old, new) = (learned(100), learned(300));
    for learner in LEARNERS {
        assert!(summarize(&new, learner, Some("i0")).is_some(), "{learner}");
    }
    assert!(summarize(&new, "nope", None).is_none());
    let d = diff(&old, &new);
    assert!(d["popularity"]["l1_score_delta"].as_f64().unwrap_or(0.0) > 0.0);
    assert!(
        d["embeddings"]["shared_items_frobenius_delta"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.0
    );
    assert_eq!(d["stream"]["last_seq_after"], new.last_seq());
}
