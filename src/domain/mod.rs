//! The product's vocabulary: ids, job statuses and the job spec, parsed and validated.

mod ids;
mod json;
mod spec;
mod status;

pub use ids::{DatasetId, JobId};
pub use json::parse_json;
pub use spec::{
    Activation, CheckpointSpec, DataSpec, EarlyStoppingSpec, GradClipSpec, InitSpec, JobSpec,
    MAX_PARAMETERS, Metric, MetricMode, MlpSpec, ModelSpec, OptimizerSpec, ScheduleSpec,
    TrainingSpec, Warmup,
};
pub use status::JobStatus;
