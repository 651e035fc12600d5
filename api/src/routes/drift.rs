//! `GET /v1/drift`: each monitored feature's PSI in the latest closed drift window against
//! the one before, from the published version.

use axum::Json;
use axum::extract::State;
use streamrec_learner::drift::monitored_features;
use streamrec_proto::{DriftResponse, DriftThresholds, DriftWindow, FeatureDrift};

use crate::app::AppState;

#[utoipa::path(get, path = "/v1/drift", tag = "operations", operation_id = "drift",
    responses((status = 200, description = "Each monitored feature's PSI, the latest closed drift window against its previous one: below 0.1 stable, below 0.25 moderate, else major; `no_data` while a window holds too few values", body = DriftResponse)),
    security(("bearer" = ["read"]), ("api_key" = ["read"])))]
pub async fn get(State(app): State<AppState>) -> Json<DriftResponse> {
    let models = app.engine.models();
    let read = &models.read;
    let size_ms = read.drift_window_ms();
    let response = match read.drift() {
        Some(report) => DriftResponse {
            window: Some(DriftWindow {
                start: report.window.start,
                end: report.window.end,
                size_ms,
            }),
            thresholds: DriftThresholds::default(),
            features: report.features.clone(),
        },
        None => DriftResponse {
            window: None,
            thresholds: DriftThresholds::default(),
            features: monitored_features()
                .into_iter()
                .map(FeatureDrift::no_data)
                .collect(),
        },
    };
    Json(response)
}
