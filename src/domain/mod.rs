//! The product's vocabulary: ids, job statuses and the job spec, parsed and validated.

mod ids;
mod json;
mod spec;
mod status;

pub use ids::{DatasetId, JobId};
pub use json::parse_json;
pub use spec::{
    Activation, CheckpointSpec, DataSpec, JobSpec, MlpSpec, ModelSpec, OptimizerSpec, TrainingSpec,
};
pub use status::JobStatus;
