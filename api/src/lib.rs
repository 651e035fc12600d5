//! The edge of streamrec: the HTTP API (axum), the command line, and the demo.

pub mod admission;
pub mod app;
pub mod auth;
mod bus_wait;
pub mod cli;
pub mod config;
pub mod demo;
pub mod error;
pub mod evaluate;
pub mod evaluate_ml100k;
mod explorer;
pub mod learning_curve;
pub mod metric_catalog;
pub mod movielens;
pub mod nats_rpc;
pub mod npy;
pub mod obd_csv;
pub mod openapi;
#[cfg(feature = "otlp")]
mod otlp;
pub mod parquet_export;
mod routes;
pub mod server;
pub mod snapshot_cli;
mod storefront;
pub mod telemetry;
pub mod trace_context;
pub mod train;

pub use app::{AppState, RunningServer, router, serve};
pub use error::ApiError;
