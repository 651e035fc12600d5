//! The `streamrec` binary.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    streamrec_api::cli::run(streamrec_api::cli::Cli::parse()).await
}
