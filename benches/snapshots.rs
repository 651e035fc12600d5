//! Snapshot cost at catalog scale: `cargo bench --bench snapshots`.
//!
//! Builds learners holding 100,000 items × 64-dim embeddings and 20,000 bandit arms, then
//! times a snapshot's write (encode, SHA-256, fsync, rename) and restore (read, verify,
//! decode), reports its size per file, and times replaying 1,000,000 events into the
//! restored learners (the other half of a restart). Medians of 5 repetitions.

use std::time::Instant;

use nalgebra::DVector;
use streamrec_actors::snapshot::SnapshotStore;
use streamrec_learner::bandit::Arm;
use streamrec_learner::bandit::Policy;
use streamrec_learner::online::{OnlineConfig, OnlineModels, arm_key};
use streamrec_proto::{Event, EventKind};

const ITEMS: u64 = 100_000;
const ARMS: u64 = 20_000;
const REPLAY: u64 = 1_000_000;
const REPS: usize = 5;

fn event(i: u64, item: u64) -> Event {
    Event {
        event_id: format!("e{i}"),
        session_id: format!("s{}", i / 10),
        user_id: None,
        kind: EventKind::View,
        item_id: format!("item{item}"),
        ts: 1_700_000_000_000 + i as i64,
        rec_id: None,
        position: None,
        value: None,
        context: None,
        details: Default::default(),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let mut models = OnlineModels::new(OnlineConfig::default());
    // Sessions of ten items walking the catalog: every item gets a vector, twice updated.
    let mut seq = 0;
    for i in 0..2 * ITEMS {
        seq += 1;
        models.apply_event(seq, &event(i, (i * 7_919) % ITEMS));
    }
    for a in 0..ARMS {
        let arm = Arm {
            key: arm_key(&format!("item{a}")),
            x: DVector::from_vec(vec![1.0, (a % 100) as f64 / 100.0]),
        };
        models.bandit.update(&arm, f64::from(u8::from(a % 3 == 0)));
    }
    println!(
        "learners: {} items × {} dims, {} bandit arms, {} events learned",
        models.embeddings.len(),
        models.embeddings.dim(),
        models.bandit.model().arms().count(),
        models.counters().events
    );

    let dir = tempfile::tempdir()?;
    let mut writes = Vec::new();
    let mut restores = Vec::new();
    let mut last = None;
    for rep in 0..REPS {
        let store = SnapshotStore::new(dir.path().join(format!("r{rep}")), 5);
        let started = Instant::now();
        let manifest = store.write(&models)?;
        writes.push(started.elapsed().as_secs_f64());
        let started = Instant::now();
        let (_, restored) = store.load(&manifest.version)?;
        restores.push(started.elapsed().as_secs_f64());
        anyhow::ensure!(restored == models, "restore differs");
        last = Some(manifest);
    }
    let manifest = last.ok_or_else(|| anyhow::anyhow!("no repetition ran"))?;
    let total: u64 = manifest.learners.values().map(|f| f.bytes).sum();
    for (name, file) in &manifest.learners {
        println!("  {name:<10} {:<24} {:>12} bytes", file.file, file.bytes);
    }
    println!(
        "snapshot: {:.1} MB; write median {:.3} s, restore (read + verify + decode) median {:.3} s (of {REPS}: writes {writes:.3?}, restores {restores:.3?})",
        total as f64 / 1e6,
        median(writes.clone()),
        median(restores.clone())
    );

    // Replay: the learning half of a restart, 1M events into the restored learners.
    let (_, mut restored) = SnapshotStore::new(dir.path().join("r0"), 5).load(&manifest.version)?;
    let started = Instant::now();
    for i in 0..REPLAY {
        seq += 1;
        restored.apply_event(seq, &event(10 * ITEMS + i, (i * 104_729) % ITEMS));
    }
    let replay = started.elapsed().as_secs_f64();
    println!(
        "replay: {REPLAY} events learned in {replay:.2} s ({:.0} events/s, one core): restore + replay of 1M events ≈ {:.1} s",
        REPLAY as f64 / replay,
        median(restores) + replay
    );
    Ok(())
}
