//! FTRL over the Vowpal Wabbit benchmark file, one pass, timed as VW times itself: reading
//! the text, hashing, learning, progressive log-loss. `scripts/bench-vw` runs it beside VW.
//!
//! `VW_DATA` names the file (default /var/tmp/streamrec-bench/data/lr_1m.vw). Prints JSON.

#[path = "common/vw_text.rs"]
mod vw_text;

use std::io::BufRead;
use std::time::Instant;

use streamrec_learner::{Ftrl, log_loss};

/// Examples per message from the parser thread.
const BATCH: usize = 1_024;

fn main() -> std::io::Result<()> {
    // `cargo bench` passes `--bench`; nothing else is read from the command line.
    let path = std::env::var("VW_DATA")
        .unwrap_or_else(|_| "/var/tmp/streamrec-bench/data/lr_1m.vw".into());
    let alpha: f64 = std::env::var("FTRL_ALPHA")
        .ok()
        .and_then(|a| a.parse().ok())
        .unwrap_or(0.1);
    let config = vw_text::vw_comparable_config(alpha);

    // Parse + learn, streaming from disk, like `vw -d`: a parser thread feeds the learner
    // in batches, as VW's parser thread feeds its learner thread.
    let mut model = Ftrl::new(config.clone());
    let started = Instant::now();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<(f64, streamrec_learner::Example)>>(64);
    let parser = {
        let path = path.clone();
        std::thread::spawn(move || -> std::io::Result<()> {
            let reader = std::io::BufReader::new(std::fs::File::open(&path)?);
            let mut batch = Vec::with_capacity(BATCH);
            for line in reader.lines() {
                if let Some(example) = vw_text::parse_line(&line?) {
                    batch.push(example);
                }
                if batch.len() == BATCH
                    && tx
                        .send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)))
                        .is_err()
                {
                    return Ok(());
                }
            }
            let _ = tx.send(batch);
            Ok(())
        })
    };
    let (mut n, mut loss) = (0usize, 0.0);
    for batch in rx {
        for (y, x) in &batch {
            loss += log_loss(model.update(x, *y), *y);
            n += 1;
        }
    }
    parser
        .join()
        .map_err(|_| std::io::Error::other("parser thread panicked"))??;
    let text_seconds = started.elapsed().as_secs_f64();

    // Learn only, from examples parsed beforehand (VW's cache mode is the closest analogue).
    let examples = vw_text::read(std::path::Path::new(&path), usize::MAX)?;
    let mut model = Ftrl::new(config);
    let started = Instant::now();
    let mut loss_learn = 0.0;
    for (y, x) in &examples {
        loss_learn += log_loss(model.update(x, *y), *y);
    }
    let learn_seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "engine": "streamrec-ftrl",
            "alpha": alpha,
            "examples": n,
            "text_seconds": text_seconds,
            "text_ex_per_s": n as f64 / text_seconds,
            "learn_only_seconds": learn_seconds,
            "learn_only_ex_per_s": examples.len() as f64 / learn_seconds,
            "progressive_log_loss": loss / n.max(1) as f64,
            "progressive_log_loss_learn_only": loss_learn / examples.len().max(1) as f64,
        })
    );
    Ok(())
}
