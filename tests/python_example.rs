//! The documented Python example opens a real snapshot with safetensors and numpy, and its
//! numbers equal what `streamrec snapshot show` prints.

use std::process::Command;

use serde_json::Value;
use streamrec_actors::snapshot::SnapshotStore;
use streamrec_learner::online::{OnlineConfig, OnlineModels, choose_slate};
use streamrec_proto::{Event, EventKind, Impression, ShownItem};

fn event(i: u64, kind: EventKind, item: &str, rec_id: Option<String>) -> Event {
    Event {
        event_id: format!("e{i}"),
        session_id: format!("s{}", i % 9),
        user_id: None,
        kind,
        item_id: item.into(),
        ts: 1_700_000_000_000 + i as i64 * 60_000,
        rec_id,
        position: None,
        value: None,
        context: None,
        details: Default::default(),
    }
}

/// Learners that have seen views, impressions and clicks.
fn learned() -> OnlineModels {
    let mut m = OnlineModels::new(OnlineConfig::default());
    let mut seq = 0;
    for i in 0..2_000u64 {
        seq += 1;
        m.apply_event(
            seq,
            &event(i, EventKind::View, &format!("item{}", (i * i) % 97), None),
        );
        if i % 10 == 0 {
            let rec_id = format!("r{i}");
            let items: Vec<ShownItem> = choose_slate(Some(&m.bandit), &m.popular(20), 5, &rec_id)
                .into_iter()
                .map(|slot| slot.shown)
                .collect();
            let clicked = items[i as usize % items.len()].item_id.clone();
            seq += 1;
            m.apply_impression(
                seq,
                &Impression {
                    user_id: None,
                    traceparent: None,
                    logged: None,
                    rec_id: rec_id.clone(),
                    session_id: "s".into(),
                    ts: 0,
                    model_version: "v".into(),
                    items,
                },
            );
            seq += 1;
            m.apply_event(
                seq,
                &event(10_000 + i, EventKind::Click, &clicked, Some(rec_id)),
            );
        }
    }
    m
}

fn json_of(output: std::process::Output, what: &str) -> Value {
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{what} printed no JSON: {e}"))
}

#[test]
fn the_python_example_reads_what_snapshot_show_prints() {
    let data = tempfile::tempdir().expect("data dir");
    let store = SnapshotStore::new(data.path().join("snapshots"), 5);
    let manifest = store.write(&learned()).expect("snapshot written");

    let show = json_of(
        Command::new(env!("CARGO_BIN_EXE_streamrec"))
            .args(["snapshot", "show", manifest.version.as_str(), "--data-dir"])
            .arg(data.path())
            .output()
            .expect("streamrec runs"),
        "streamrec snapshot show",
    );
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/examples/load_snapshot.py"
    );
    let python = json_of(
        Command::new("python3")
            .arg(script)
            .arg(store.path(&manifest.version))
            .output()
            .expect("python3 runs (scripts/test installs numpy and safetensors)"),
        "docs/examples/load_snapshot.py",
    );

    assert_eq!(python["version"], show["manifest"]["version"]);
    assert_eq!(python["last_seq"], show["learners"]["stream"]["last_seq"]);
    let rust_top = show["learners"]["popularity"]["top"]
        .as_array()
        .expect("top");
    let py_top = python["popularity_top"].as_array().expect("top");
    assert_eq!(rust_top.len(), py_top.len());
    for (r, p) in rust_top.iter().zip(py_top) {
        assert_eq!(r["item_id"], p["item_id"]);
        let (rs, ps) = (
            r["score"].as_f64().unwrap_or(f64::NAN),
            p["score"].as_f64().unwrap_or(0.0),
        );
        assert!((rs - ps).abs() <= 1e-9 * rs.abs().max(1.0), "{rs} vs {ps}");
    }
    let (re, pe) = (&show["learners"]["embeddings"], &python["embeddings"]);
    assert_eq!(re["items"], pe["items"]);
    assert_eq!(re["dim"], pe["dim"]);
    let (rn, pn) = (
        re["mean_vector_norm"].as_f64().unwrap_or(0.0),
        pe["mean_vector_norm"].as_f64().unwrap_or(1.0),
    );
    assert!((rn - pn).abs() < 1e-5, "{rn} vs {pn}");
    assert_eq!(show["learners"]["bandit"]["arms"], python["bandit"]["arms"]);
    assert!(
        python["bandit"]["arms"].as_u64().unwrap_or(0) > 0,
        "the bandit learned something"
    );

    // The same neighbours, computed by numpy and by the engine.
    let first = pe["nearest_of_first_item"].as_array().expect("neighbours");
    let item = learned_first_item(&store, &manifest.version);
    let engine = json_of(
        Command::new(env!("CARGO_BIN_EXE_streamrec"))
            .args([
                "snapshot",
                "show",
                manifest.version.as_str(),
                "--item",
                &item,
                "--data-dir",
            ])
            .arg(data.path())
            .output()
            .expect("streamrec runs"),
        "streamrec snapshot show --item",
    );
    let engine_neighbours: Vec<&Value> = engine["learners"]["embeddings"]["nearest"]
        .as_array()
        .expect("nearest")
        .iter()
        .map(|n| &n["item_id"])
        .collect();
    assert_eq!(engine_neighbours, first.iter().collect::<Vec<_>>());
}

fn learned_first_item(store: &SnapshotStore, version: &streamrec_proto::SnapshotVersion) -> String {
    let (_, models) = store.load(version).expect("loads");
    models.embeddings.ids()[0].clone()
}
