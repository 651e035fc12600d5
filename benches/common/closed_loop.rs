//! The HTTP load both end-to-end benches put on a server: C keep-alive clients, each sending
//! its next `GET /v1/recommendations` as soon as the last one answered, for a fixed time or
//! until told to stop.

#![allow(dead_code, reason = "each bench uses a different subset")]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

pub struct LoadResult {
    /// Latency of each successful request, in microseconds.
    pub histogram: Histogram<u64>,
    pub errors: u64,
    /// Failed requests by why they failed (an HTTP status and error code, a service error).
    pub error_kinds: BTreeMap<String, u64>,
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
        let kinds = if self.error_kinds.is_empty() {
            String::new()
        } else {
            let kinds: Vec<String> = self
                .error_kinds
                .iter()
                .map(|(kind, n)| format!("{n} {kind}"))
                .collect();
            format!(" ({})", kinds.join(", "))
        };
        format!(
            "{} requests in {:.1} s ({:.0} req/s), {} errors{kinds}; latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
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
    spread_until(vec![url], concurrency, stop, session).await
}

/// The same clients spread over several servers (client c asks `urls[c % len]`), until
/// `stop` is set: a load balancer in front of a cluster's nodes.
pub async fn spread_until<F>(
    urls: Vec<String>,
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
    clients_until(concurrency, stop, move |c, i| {
        let request = client
            .get(&urls[c % urls.len()])
            .query(&[("session_id", session(i).as_str()), ("k", "10")]);
        async move {
            let response = request.send().await.map_err(|_| "no answer".to_owned())?;
            if response.status().is_success() {
                return Ok(());
            }
            let status = response.status().as_u16();
            let code = response
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|body| body["error"]["code"].as_str().map(str::to_owned))
                .unwrap_or_default();
            Err(format!("{status} {code}").trim_end().to_owned())
        }
    })
    .await
}

/// `concurrency` clients for `seconds` through the NATS service
/// (`streamrec.rpc.recommendations`, the body of `POST /v1/recommendations`), client c on
/// connection `clients[c % len]`: whichever node of the queue group takes a request answers
/// it (nats-server prefers a member on the requester's own server).
pub async fn nats_closed_loop<F>(
    clients: Vec<async_nats::Client>,
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
    let session = Arc::new(session);
    let result = clients_until(concurrency, stop, move |c, i| {
        let (client, body) = (
            clients[c % clients.len()].clone(),
            serde_json::json!({"session_id": session(i), "k": 10}).to_string(),
        );
        async move {
            // An answer with a service error header (503 while a node catches up) failed.
            let answer = client
                .request("streamrec.rpc.recommendations", body.into())
                .await
                .map_err(|e| format!("no answer ({:?})", e.kind()))?;
            let header = |name: &str| {
                answer
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(name))
                    .map(|v| v.as_str().to_owned())
            };
            match header("Nats-Service-Error-Code") {
                // The same "<status> <code>" as an HTTP failure.
                Some(status) => {
                    let error = header("Nats-Service-Error").unwrap_or_default();
                    let code = error.split(':').next().unwrap_or("");
                    Err(format!("{status} {code}").trim_end().to_owned())
                }
                None => Ok(()),
            }
        }
    })
    .await;
    timer.abort();
    result
}

/// `concurrency` clients until `stop`: client c sends its requests i = c, c + C, … one after
/// another with `ask(c, i)` (`Err(why)` when it failed), each timed.
pub async fn clients_until<A, Fut>(
    concurrency: usize,
    stop: Arc<AtomicBool>,
    ask: A,
) -> anyhow::Result<LoadResult>
where
    A: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let ask = Arc::new(ask);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..concurrency {
        let (stop, ask) = (Arc::clone(&stop), Arc::clone(&ask));
        tasks.push(tokio::spawn(async move {
            let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
            let mut kinds = BTreeMap::<String, u64>::new();
            let mut i = c;
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                match ask(c, i).await {
                    Ok(()) => histogram.saturating_record(sent.elapsed().as_micros() as u64),
                    Err(why) => *kinds.entry(why).or_default() += 1,
                }
                i += concurrency;
            }
            anyhow::Ok((histogram, kinds))
        }));
    }
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut error_kinds = BTreeMap::<String, u64>::new();
    for task in tasks {
        let (h, kinds) = task.await??;
        histogram.add(h)?;
        for (kind, n) in kinds {
            *error_kinds.entry(kind).or_default() += n;
        }
    }
    Ok(LoadResult {
        histogram,
        errors: error_kinds.values().sum(),
        error_kinds,
        elapsed: started.elapsed(),
    })
}
