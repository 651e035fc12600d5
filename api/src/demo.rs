//! `streamrec demo`: the engine on its embedded bus, serving HTTP while MovieLens-100K is
//! replayed through the bus in event-time order, with a live status line.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use streamrec_actors::{EngineConfig, InProcessBus};
use streamrec_proto::{Event, RecommendationResponse};

use crate::app::RunningServer;
use crate::cli::DataArgs;
use crate::movielens;

/// Most events published in one bus call.
const PUBLISH_CHUNK: usize = 500;
/// How often the demo's own client asks for a recommendation while replaying.
const PROBE_EVERY: Duration = Duration::from_millis(5);

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Replay speed as a multiple of real time (the log spans 7 months; the default replays
    /// it in about 20 s). 0 replays as fast as the engine takes it.
    #[arg(long, default_value_t = 1_000_000.0)]
    pub speed: f64,
    #[command(flatten)]
    pub data: DataArgs,
    /// Address to serve HTTP on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Exit after the replay instead of serving until Ctrl-C.
    #[arg(long)]
    pub exit_when_done: bool,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.speed.is_finite() && args.speed >= 0.0,
        "--speed must be a non-negative number"
    );
    let mut events = movielens::load_events(&args.data.data)?;
    // The log is from 1997-98. Moved to end now, it keeps its spacing, and a visitor's clicks
    // on the storefront continue it in event time instead of arriving 28 years later (which
    // would decay everything the replay taught popularity to nothing).
    let shift = chrono::Utc::now().timestamp_millis() - events.last().map_or(0, |e| e.ts);
    for event in &mut events {
        event.ts = event.ts.saturating_add(shift);
    }
    let items = movielens::load_items(&args.data.data)?;

    let server = RunningServer::start_with(
        Arc::new(InProcessBus::new()),
        EngineConfig::default(),
        args.listen,
        crate::server::HttpLimits::default(),
    )
    .await?;
    println!(
        "streamrec demo serving on http://{} (bus: in-process)",
        server.addr
    );
    println!(
        "replaying {} MovieLens-100K ratings as events ({} items), {}",
        events.len(),
        items.len(),
        if args.speed == 0.0 {
            "as fast as the engine takes them".to_owned()
        } else {
            format!("{}x real time", args.speed)
        }
    );
    server.engine().publish_items(&items).await?;

    let current_session = Arc::new(Mutex::new(events[0].session_id.clone()));
    let probe = tokio::spawn(probe_loop(
        server.url("/v1/recommendations"),
        Arc::clone(&current_session),
    ));
    let started = Instant::now();
    replay(&server, &events, args.speed, &current_session).await?;
    probe.abort();
    let elapsed = started.elapsed();

    let stats = server.engine().stats();
    let latency = server.state.latency.summary();
    println!(
        "replayed {} events in {:.1} s ({:.0} events/s applied); {} duplicates skipped, {} dead-lettered",
        stats.events_applied,
        elapsed.as_secs_f64(),
        stats.events_applied as f64 / elapsed.as_secs_f64(),
        stats.duplicates_skipped,
        stats.dead_lettered
    );
    println!(
        "served {} recommendations while learning: p50 {:?}, p99 {:?}",
        latency.count, latency.p50, latency.p99
    );
    show_example(&server, &events).await?;

    if args.exit_when_done {
        return server.shutdown().await;
    }
    println!(
        "still serving on http://{}; Ctrl-C to stop. Open http://{}/ for the storefront, or try:",
        server.addr, server.addr
    );
    println!(
        "  curl 'http://{}/v1/recommendations?session_id=u1-s0&k=5'",
        server.addr
    );
    crate::cli::shutdown_signal().await;
    server.shutdown().await
}

/// Publishes events through the bus, paced by their event time, and shows progress.
async fn replay(
    server: &RunningServer,
    events: &[Event],
    speed: f64,
    current_session: &Mutex<String>,
) -> anyhow::Result<()> {
    let engine = server.engine();
    let bar = ProgressBar::new(events.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} events  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let first_ts = events[0].ts;
    let started = Instant::now();
    let mut next = 0;
    let mut last_status = Instant::now();
    let mut last_applied = 0;
    while next < events.len() || engine.stats().events_applied < events.len() as u64 {
        let horizon = if speed == 0.0 {
            i64::MAX
        } else {
            first_ts.saturating_add((started.elapsed().as_secs_f64() * 1000.0 * speed) as i64)
        };
        let end = events[next..]
            .iter()
            .take(PUBLISH_CHUNK)
            .take_while(|e| e.ts <= horizon)
            .count()
            + next;
        if end > next {
            engine.publish_events(&events[next..end]).await?;
            if let Ok(mut s) = current_session.lock() {
                s.clone_from(&events[end - 1].session_id);
            }
            next = end;
        } else {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if last_status.elapsed() >= Duration::from_millis(250) {
            let applied = engine.stats().events_applied;
            let rate = (applied - last_applied) as f64 / last_status.elapsed().as_secs_f64();
            let latency = server.state.latency.summary();
            bar.set_position(applied);
            bar.set_message(format!(
                "{rate:>7.0} ev/s | {:>5} live sessions | rec p50 {:>6.2} ms p99 {:>6.2} ms",
                engine.live_sessions(),
                latency.p50.as_secs_f64() * 1e3,
                latency.p99.as_secs_f64() * 1e3,
            ));
            last_applied = applied;
            last_status = Instant::now();
        }
    }
    bar.finish();
    Ok(())
}

/// Asks for the current session's recommendations over HTTP, as a frontend would.
async fn probe_loop(url: String, current_session: Arc<Mutex<String>>) {
    let client = reqwest::Client::new();
    loop {
        let session = current_session
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        if let Err(e) = client
            .get(&url)
            .query(&[("session_id", session.as_str()), ("k", "10")])
            .send()
            .await
        {
            tracing::debug!(error = %e, "probe request failed");
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

async fn show_example(server: &RunningServer, events: &[Event]) -> anyhow::Result<()> {
    let Some(last) = events.last() else {
        return Ok(());
    };
    let response: RecommendationResponse = reqwest::Client::new()
        .get(server.url("/v1/recommendations"))
        .query(&[("session_id", last.session_id.as_str()), ("k", "5")])
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    println!(
        "recommendations for session {} (model {}):",
        last.session_id, response.model_version
    );
    for rec in &response.items {
        let title = server
            .engine()
            .models()
            .read
            .catalog_item(&rec.item_id)
            .and_then(|i| i.title.clone())
            .unwrap_or_default();
        println!("  {:>6}  {:>8.3}  {title}", rec.item_id, rec.score);
    }
    Ok(())
}
