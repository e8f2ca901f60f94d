//! Prometheus metrics: one process-wide recorder behind the `metrics` crate's macros, rendered
//! as text by `GET /metrics`. Every metric the service records is named here.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Requests answered, by `method`, `route` (the route's pattern) and `status`.
pub const HTTP_REQUESTS: &str = "trainserve_http_requests_total";
/// Seconds from a request's arrival to its response's head, by `method` and `route`.
pub const HTTP_SECONDS: &str = "trainserve_http_request_duration_seconds";
/// Requests refused by the access guard, by `code` (`unauthorized`, `forbidden`,
/// `quota_exceeded`, `not_found`).
pub const ACCESS_REFUSED: &str = "trainserve_access_refused_total";
/// Jobs by `state`, read from the database at each scrape.
pub const JOBS: &str = "trainserve_jobs";
/// Seconds of each committed training epoch.
pub const EPOCH_SECONDS: &str = "trainserve_epoch_duration_seconds";
/// Training samples processed; `rate()` of it is samples per second.
pub const TRAINING_SAMPLES: &str = "trainserve_training_samples_total";
/// Cores held by running training jobs (running jobs x threads per job).
pub const TRAINING_THREADS_BUSY: &str = "trainserve_training_threads_busy";
/// Rows predicted.
pub const PREDICTION_ROWS: &str = "trainserve_prediction_rows_total";
/// Seconds a prediction's forward pass took, off the async executor.
pub const PREDICTION_SECONDS: &str = "trainserve_prediction_compute_seconds";
/// Predictions refused because the model's queue was full.
pub const PREDICTION_REFUSED: &str = "trainserve_prediction_queue_full_total";
/// Rows waiting in models' batching queues.
pub const PREDICTION_QUEUE_ROWS: &str = "trainserve_prediction_queue_rows";
/// Seconds a request waited in its model's queue before its batch ran.
pub const PREDICTION_QUEUE_SECONDS: &str = "trainserve_prediction_queue_wait_seconds";
/// Rows per forward pass of the dynamic batcher.
pub const PREDICTION_BATCH_ROWS: &str = "trainserve_prediction_batch_rows";
/// Inference threads running a batch now.
pub const INFERENCE_THREADS_BUSY: &str = "trainserve_inference_threads_busy";
/// Model cache lookups that found a loaded model.
pub const MODEL_CACHE_HITS: &str = "trainserve_model_cache_hits_total";
/// Models loaded from checkpoint files.
pub const MODEL_LOADS: &str = "trainserve_model_loads_total";
/// Models dropped from the cache to make room.
pub const MODEL_EVICTIONS: &str = "trainserve_model_cache_evictions_total";
/// Models held in the cache.
pub const MODELS_CACHED: &str = "trainserve_model_cache_entries";

/// Bucket bounds for request latencies, in seconds: 100 µs to 60 s.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
    15.0, 60.0,
];

/// Bucket bounds for rows per batch.
const BATCH_BUCKETS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, 10000.0,
];

/// Bucket bounds for epoch durations, in seconds: 10 ms to an hour.
const EPOCH_BUCKETS: [f64; 12] = [
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The recorder's handle, installing the recorder on first use; `None` when another
/// recorder was installed first (the metrics then go there).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(EPOCH_SECONDS.into()), &EPOCH_BUCKETS)
                .ok()?
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
                .ok()?
                .set_buckets_for_metric(Matcher::Full(PREDICTION_BATCH_ROWS.into()), &BATCH_BUCKETS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => Some(handle),
                Err(err) => {
                    tracing::warn!(error = %err, "another metrics recorder is installed; GET /metrics has nothing to show");
                    None
                }
            }
        })
        .as_ref()
}

/// The text exposition of every metric.
pub fn render() -> Option<String> {
    let handle = handle()?;
    handle.run_upkeep();
    Some(handle.render())
}
