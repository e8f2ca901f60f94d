//! The product's vocabulary: ids, job statuses and the job spec, parsed and validated.

mod caller;
mod ids;
mod json;
mod lr_find;
mod pruning;
mod query;
mod spec_json;
mod status;
mod study;
mod sweep;

pub use caller::{Caller, QuotaOverrides, Quotas, Scope};
pub use engine::spec::{
    Activation, CheckpointSpec, CnnSpec, ConvBlockSpec, CropKind, CropSpec, DataShape, DataSpec,
    EarlyStoppingSpec, GradClipSpec, HeadSpec, ImagePreprocessingSpec, ImageSize, InitSpec,
    JobSpec, MAX_PARAMETERS, MemoryEstimate, Metric, MetricMode, MlpSpec, ModelSpec, Normalization,
    OptimizerSpec, ResNetDepth, ResNetSpec, ScheduleSpec, Stem, TrainingSpec, TransferMode,
    TransferSpec, Warmup, format_bytes,
};
pub use ids::{DatasetId, JobId, LrFindId, StudyId, SweepId, WeightsId};
pub use json::parse_json;
pub use lr_find::{LrFindRequest, parse_lr_find_request};
pub use pruning::{PruningRule, PruningSpec};
pub use query::{Clause, Field, Op, parse_field, parse_where};
pub use spec_json::{JobSubmission, parse_job_spec, parse_job_submission};
pub use status::JobStatus;
pub use study::{
    Budget, DataFacts, PartRole, StudyKind, StudyPart, StudyRequest, plan_study, with_source,
};
pub use sweep::{Axis, Distribution, Goal, RankMetric, Search, SweepSpec, Trial};
