//! Pure functions over stored measurements: downsampling of step series (later comparisons,
//! sweep summaries and diagnoses).

mod downsample;

pub use downsample::{StepPoint, downsample};
