//! The `streamrec` binary.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    streamrec_api::cli::run_from_args().await
}
