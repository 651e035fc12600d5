//! Dedicated threads for the work requests must never wait behind: the learner's batches,
//! the intent index's refreshes, the re-ranker's training. They run at a lower CPU priority
//! (a higher nice value), so when the cores are busy the scheduler serves requests first and
//! learning takes what is left; on an idle machine learning runs at full speed. Learning
//! then lags the bus under load instead of serving slowing down, and the lag is measured
//! (`benches/load.rs`).

use std::sync::mpsc;

use tokio::sync::oneshot;

/// Nice value of background threads: CFS gives a nice-0 thread about 10x the CPU of a
/// nice-10 one when both want it.
pub const BACKGROUND_NICE: i32 = 10;

/// Lowers the calling thread's CPU priority to [`BACKGROUND_NICE`]; best effort (a
/// platform or sandbox that refuses leaves it as it was, and says so).
pub fn lower_priority() {
    let tid = rustix::thread::gettid();
    if let Err(error) = rustix::process::setpriority_process(Some(tid), BACKGROUND_NICE) {
        tracing::warn!(%error, "cannot lower a background thread's priority");
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// One background thread running jobs in the order given.
pub struct BackgroundThread {
    jobs: mpsc::Sender<Job>,
}

impl BackgroundThread {
    pub fn spawn(name: &str) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                lower_priority();
                // Ends when every sender is gone.
                while let Ok(job) = queue.recv() {
                    job();
                }
            })?;
        Ok(Self { jobs })
    }

    /// Runs `job` on the thread; its result, or `None` if it panicked (or the thread is gone).
    pub async fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce() -> R + Send + 'static,
    ) -> Option<R> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            let _ = reply.send(result.ok());
        });
        self.jobs.send(job).ok()?;
        answer.await.ok().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_in_order_at_a_lower_priority_and_a_panic_is_an_answer() {
        let thread = BackgroundThread::spawn("test-background").expect("spawned");
        let nice = thread
            .run(|| rustix::process::getpriority_process(Some(rustix::thread::gettid())))
            .await
            .expect("ran");
        // Lowering one's own priority needs no privilege; one already lower stays so.
        assert!(nice.is_ok_and(|n| n >= BACKGROUND_NICE), "{nice:?}");
        assert_eq!(thread.run(|| 1 + 1).await, Some(2));
        assert_eq!(thread.run(|| -> i32 { panic!("boom") }).await, None);
        assert_eq!(
            thread.run(|| 3).await,
            Some(3),
            "the thread survives a panic"
        );
    }
}
