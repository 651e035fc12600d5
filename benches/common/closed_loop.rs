//! The HTTP load both end-to-end benches put on a server: C keep-alive clients, each sending
//! its next `GET /v1/recommendations` as soon as the last one answered, for a fixed time or
//! until told to stop.

#![allow(dead_code, reason = "each bench uses a different subset")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

pub struct LoadResult {
    /// Latency of each successful request, in microseconds.
    pub histogram: Histogram<u64>,
    pub errors: u64,
    pub elapsed: Duration,
}

impl LoadResult {
    pub fn per_second(&self) -> f64 {
        self.histogram.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// Latency at quantile `q`, in milliseconds.
    pub fn ms(&self, q: f64) -> f64 {
        ms(&self.histogram, q)
    }

    /// Requests, rate, errors and the latency distribution, on one line.
    pub fn summary(&self) -> String {
        format!(
            "{} requests in {:.1} s ({:.0} req/s), {} errors; latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            self.histogram.len(),
            self.elapsed.as_secs_f64(),
            self.per_second(),
            self.errors,
            self.ms(0.5),
            self.ms(0.99),
            self.ms(0.999),
            self.histogram.max() as f64 / 1000.0
        )
    }
}

/// Quantile `q` of a histogram of microseconds, in milliseconds.
pub fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// An integer setting from the environment, or `default`.
pub fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `concurrency` clients for `seconds` against `url`; request `i` asks for the top 10 of
/// session `session(i)`.
pub async fn closed_loop<F>(
    url: String,
    concurrency: usize,
    seconds: u64,
    session: F,
) -> anyhow::Result<LoadResult>
where
    F: Fn(usize) -> String + Send + Sync + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let timer = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            stop.store(true, Ordering::Relaxed);
        })
    };
    let result = closed_loop_until(url, concurrency, stop, session).await;
    timer.abort();
    result
}

/// The same clients, until `stop` is set.
pub async fn closed_loop_until<F>(
    url: String,
    concurrency: usize,
    stop: Arc<AtomicBool>,
    session: F,
) -> anyhow::Result<LoadResult>
where
    F: Fn(usize) -> String + Send + Sync + 'static,
{
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let session = Arc::new(session);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        let (client, url) = (client.clone(), url.clone());
        let (stop, session) = (Arc::clone(&stop), Arc::clone(&session));
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut errors = 0u64;
            let mut i = c;
            while !stop.load(Ordering::Relaxed) {
                let session = session(i);
                i += concurrency;
                let sent = Instant::now();
                let ok = client
                    .get(&url)
                    .query(&[("session_id", session.as_str()), ("k", "10")])
                    .send()
                    .await
                    .map(|r| r.status().is_success());
                match ok {
                    Ok(true) => histogram.saturating_record(sent.elapsed().as_micros() as u64),
                    _ => errors += 1,
                }
            }
            anyhow::Ok((histogram, errors))
        }));
    }
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = 0;
    for task in tasks {
        let (h, e) = task.await??;
        histogram.add(h)?;
        errors += e;
    }
    Ok(LoadResult {
        histogram,
        errors,
        elapsed: started.elapsed(),
    })
}
