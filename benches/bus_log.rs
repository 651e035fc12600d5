//! The embedded bus's durability cost: `cargo bench --bench bus_log`.
//!
//! The same publishes (batches of B events of about 170 bytes, as `POST /v1/events` hands
//! them over) into the in-memory bus and into the durable one (`--data-dir`: one write and
//! one fsync per batch before it answers), in one run; per-batch latency p50/p99 and the
//! events/s each sustains. Then the durable log is reopened (every record read back and
//! checked) and timed. Settings: `BUS_BATCHES` (2000), `BUS_BATCH` (500).

use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use streamrec_actors::{Bus, InProcessBus, Outbound, Retention};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn batch(n: usize, size: usize) -> Vec<Outbound> {
    (0..size)
        .map(|i| {
            let id = format!("e{n}-{i}");
            let payload = format!(
                r#"{{"event_id":"{id}","session_id":"u{n}-s0","kind":"view","item_id":"i{i}","ts":1700000000000,"context":{{"device":"ios"}}}}"#
            );
            Outbound {
                subject: "streamrec.events.view".to_owned(),
                msg_id: Some(id),
                payload: Bytes::from(payload),
            }
        })
        .collect()
}

async fn run(
    bus: &InProcessBus,
    batches: usize,
    size: usize,
) -> anyhow::Result<(Histogram<u64>, Duration)> {
    let mut latency = Histogram::<u64>::new(3)?;
    let started = Instant::now();
    for n in 0..batches {
        let messages = batch(n, size);
        let t = Instant::now();
        bus.publish(messages).await?;
        latency.record(t.elapsed().as_micros() as u64)?;
    }
    Ok((latency, started.elapsed()))
}

fn line(name: &str, h: &Histogram<u64>, elapsed: Duration, events: usize) -> String {
    format!(
        "{name}: {:.0} events/s; per batch p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        events as f64 / elapsed.as_secs_f64(),
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.max() as f64 / 1000.0
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let batches = env("BUS_BATCHES", 2_000);
    let size = env("BUS_BATCH", 500);
    let events = batches * size;
    let dir = tempfile::tempdir()?;
    println!(
        "{batches} batches of {size} events; durable log in {} ({} cores)",
        dir.path().display(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let memory = InProcessBus::new();
    let (h, t) = run(&memory, batches, size).await?;
    println!("{}", line("in memory", &h, t, events));
    let (durable, _) = InProcessBus::open(dir.path(), Retention::default())?;
    let (h, t) = run(&durable, batches, size).await?;
    println!(
        "{}",
        line("durable (write + fsync per batch)", &h, t, events)
    );
    drop(durable);
    let started = Instant::now();
    let (_, recovery) = InProcessBus::open(dir.path(), Retention::default())?;
    let took = started.elapsed();
    println!(
        "reopen: {} records checked in {:.2} s ({:.0} records/s)",
        recovery.events.records,
        took.as_secs_f64(),
        recovery.events.records as f64 / took.as_secs_f64()
    );
    Ok(())
}
