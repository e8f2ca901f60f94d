//! How much memory a job needs, estimated from its spec and its data set's shape before
//! anything is allocated, so that a job the machine cannot hold is refused at submission (a
//! 422 with the estimate and the limit) instead of aborting the process that trains it.
//!
//! Everything is counted in the dtype the trainer uses (f32 values, u32 labels) and as if on
//! the CPU. Where the code makes a copy, the copy is counted; where a count is approximate it
//! errs high, and the doc comment of the part says so.

use super::footprint::Footprint;
use super::{DataSpec, JobSpec, MAX_PARAMETERS, ModelSpec, OptimizerSpec};
use crate::error::{EngineError, Result};

/// Bytes of one f32 value or u32 label.
const VALUE: u64 = 4;
/// Evaluation batches (`crate::metrics::evaluate`) hold each activation to this many values,
/// but never fewer than `MIN_EVAL_ROWS` rows.
const EVAL_ELEMENTS: u64 = 64 * 1024 - 1;
const MIN_EVAL_ROWS: u64 = 256;
/// The fused MLP path evaluates in chunks of this many rows.
const FUSED_EVAL_ROWS: u64 = 4096;

/// What a job's memory depends on in its data set: the catalog's summary of it, or the table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataShape {
    /// Rows (samples).
    pub rows: usize,
    /// Values per raw row.
    pub features: usize,
    /// `[channels, height, width]` when rows are images.
    pub image_shape: Option<[usize; 3]>,
    /// Rows per class, in class order.
    pub class_counts: Vec<usize>,
    /// `[train, val, test]` rows when the data set comes with its own split.
    pub fixed_split: Option<[usize; 3]>,
}

impl DataShape {
    /// Rows per split, `[train, val, test]`: the data set's own split, or the stratified split
    /// of `data::split` (per class, round(n·val_fraction) to validation,
    /// round(n·test_fraction) to test, the rest to training).
    pub(crate) fn split_rows(&self, data: &DataSpec) -> [usize; 3] {
        if let Some(split) = self.fixed_split {
            return split;
        }
        if self.class_counts.is_empty() {
            return [self.rows, 0, 0];
        }
        let mut rows = [0; 3];
        for &n in &self.class_counts {
            let (val, test) = ::data::class_split(n, data.val_fraction, data.test_fraction);
            rows[0] += n - val - test;
            rows[1] += val;
            rows[2] += test;
        }
        rows
    }
}

/// A job's memory in bytes, by what holds it. The job's peak is [`MemoryEstimate::total`].
/// Memory freed along the way is counted as still held: the allocator is tuned never to
/// return freed memory to the system (`kernels::keep_freed_memory`), and loading, preparation and
/// training run on different threads, whose allocator arenas do not share freed memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// The data set as loaded, every row's values and its label (the catalog keeps it
    /// cached), counted three times: loading also reads the file and decodes its tensors.
    pub table: u64,
    /// What `crate::prepare` allocates beyond the table: the prepared splits; with image
    /// preprocessing also every image resized, the augmentation source and the copy it is
    /// made from, and one image in flight.
    pub preparation: u64,
    /// The data's copies made for training: the shuffled order, and on the fused MLP path its
    /// flat copy of the training split plus the copy each evaluation makes (counted for every
    /// MLP the fused path supports, though it runs only on the CPU).
    pub training_data: u64,
    /// Parameters and batch-norm running statistics, the input layer and classifier included.
    pub parameters: u64,
    /// One gradient per trainable parameter, and a clipped copy when clipping is on.
    pub gradients: u64,
    /// Optimizer state (Adam and AdamW 2 values per parameter, SGD with momentum 1, RMSprop 1
    /// to 3) plus one more copy for the temporaries of an update (an over-count: an update
    /// holds temporaries for one tensor at a time).
    pub optimizer: u64,
    /// A checkpoint: the copies of the model and optimizer state, their encoding, and one
    /// encoding waiting for the writer (a slow disk may queue more, up to 64 MiB).
    pub checkpoint: u64,
    /// The larger of a training step (the input batch, plus every activation autograd keeps,
    /// counted twice for the backward pass, which holds far fewer at once: rounded up) and an
    /// evaluation chunk (every activation of the forward pass).
    pub activations: u64,
    /// im2col matrices: two per training thread, of the largest convolution.
    pub workspace: u64,
}

impl MemoryEstimate {
    /// The peak while preparing data.
    pub(crate) fn preparation_peak(&self) -> u64 {
        self.table.saturating_add(self.preparation)
    }

    /// Parameters, gradients, optimizer state and checkpoint copies.
    pub fn model(&self) -> u64 {
        self.parameters
            .saturating_add(self.gradients)
            .saturating_add(self.optimizer)
            .saturating_add(self.checkpoint)
    }

    /// The job's peak, reached while training.
    pub fn total(&self) -> u64 {
        self.data()
            .saturating_add(self.model())
            .saturating_add(self.activations)
            .saturating_add(self.workspace)
    }

    /// The data's share of the peak.
    pub fn data(&self) -> u64 {
        self.preparation_peak().saturating_add(self.training_data)
    }
}

/// Extra values per parameter that an optimizer keeps.
fn optimizer_slots(optimizer: &OptimizerSpec) -> u64 {
    match optimizer {
        OptimizerSpec::Sgd { momentum, .. } => u64::from(*momentum > 0.0),
        OptimizerSpec::Adam { .. } | OptimizerSpec::Adamw { .. } => 2,
        OptimizerSpec::Rmsprop {
            momentum, centered, ..
        } => 1 + u64::from(*momentum > 0.0) + u64::from(*centered),
    }
}

/// The widths a row has on its way through `crate::prepare`.
struct Widths {
    /// The network's input.
    input: u64,
    /// After grayscale to RGB and resizing, before the crop (the input when not preprocessed).
    resized: u64,
    /// What the augmentation source keeps per training row (0: no augmentation).
    augment: u64,
    /// Whether the augmentation source is copied from the resized images before it is cropped.
    augment_copies_resized: bool,
}

impl JobSpec {
    /// The network's input shape and width for `data` (the width is the row's when the data
    /// set has no images).
    fn input_of(&self, data: &DataShape) -> Result<(Option<[usize; 3]>, u64)> {
        let input = self.input_shape(data.image_shape)?;
        let width = input.map_or(data.features as u64, |s| {
            s.iter().map(|&d| d as u64).product()
        });
        Ok((input, width))
    }

    fn widths(&self, data: &DataShape) -> Result<Widths> {
        let (_, input) = self.input_of(data)?;
        let (Some(spec), Some([c, h, w])) = (&self.data.preprocessing, data.image_shape) else {
            return Ok(Widths {
                input,
                resized: input,
                augment: 0,
                augment_copies_resized: false,
            });
        };
        let c = if spec.grayscale_to_rgb { 3 } else { c };
        let [h, w] = spec.resize.map_or([h, w], |size| size.dims());
        let resized = (c * h * w) as u64;
        let random_crop = spec
            .crop
            .as_ref()
            .is_some_and(|crop| crop.kind == super::CropKind::Random);
        let augments = spec.horizontal_flip > 0.0 || random_crop;
        Ok(Widths {
            input,
            resized,
            augment: match (augments, random_crop) {
                (false, _) => 0,
                (true, true) => resized,
                (true, false) => input,
            },
            augment_copies_resized: augments && !random_crop,
        })
    }

    /// The number of parameters of this spec's network on `data`, every layer counted.
    pub(crate) fn parameter_count(&self, data: &DataShape) -> Result<u64> {
        let (input, width) = self.input_of(data)?;
        Ok(
            Footprint::of(&self.model, width, input, data.class_counts.len() as u64)
                .map_or(0, |f| f.trainable),
        )
    }

    /// The memory this job needs on `data`, training on `threads` cores.
    pub fn memory_estimate(&self, data: &DataShape, threads: usize) -> Result<MemoryEstimate> {
        let widths = self.widths(data)?;
        let (input, _) = self.input_of(data)?;
        let classes = data.class_counts.len().max(1) as u64;
        let [train, val, test] = self.data_rows(data);
        let rows = train + val + test;
        let features = data.features as u64;
        let table = 3 * (data.rows as u64).saturating_mul(features + 1) * VALUE;

        let splits = rows.saturating_mul(widths.input + 1) * VALUE;
        let augment = train.saturating_mul(widths.augment) * VALUE;
        let preparation = if self.data.preprocessing.is_some() {
            let resized_all = rows.saturating_mul(widths.resized) * VALUE;
            let copy = if widths.augment_copies_resized {
                train.saturating_mul(widths.resized) * VALUE
            } else {
                0
            };
            // One row in flight: scaled to [0, 1], repeated to RGB, a plane copied, resized.
            let in_flight = (5 * features + widths.resized) * VALUE;
            resized_all
                .saturating_add(splits)
                .saturating_add(augment)
                .saturating_add(copy)
                .saturating_add(in_flight)
        } else {
            splits.saturating_add(augment)
        };

        let fused = match &self.model {
            ModelSpec::Mlp(mlp) => !mlp.batch_norm && mlp.activation != super::Activation::Gelu,
            _ => false,
        };
        let fused_copies = if fused {
            2 * train.saturating_mul(widths.input) * VALUE
        } else {
            0
        };
        let training_data = fused_copies.saturating_add(train * VALUE);

        let f = Footprint::of(&self.model, widths.input, input, classes).unwrap_or_default();
        let slots = optimizer_slots(&self.training.optimizer);
        let clipped = u64::from(self.training.grad_clip.is_some());
        let state = f
            .trainable
            .saturating_add(f.buffers)
            .saturating_add(slots.saturating_mul(f.trainable));

        let batch = (self.training.batch_size as u64).min(train).max(1);
        let step = batch.saturating_mul(widths.input.saturating_add(2 * f.forward)) * VALUE;
        let largest_split = train.max(val).max(test).max(1);
        let mut eval_rows = (EVAL_ELEMENTS / f.widest.max(1)).max(MIN_EVAL_ROWS);
        if fused {
            eval_rows = eval_rows.max(FUSED_EVAL_ROWS);
        }
        let eval = eval_rows
            .min(largest_split)
            .saturating_mul(f.forward)
            .saturating_mul(VALUE);

        Ok(MemoryEstimate {
            table,
            preparation,
            training_data,
            parameters: f.trainable.saturating_add(f.buffers) * VALUE,
            gradients: f.trainable.saturating_mul(1 + clipped) * VALUE,
            optimizer: f.trainable.saturating_mul(slots + 1) * VALUE,
            checkpoint: state.saturating_mul(3) * VALUE,
            activations: step.max(eval),
            workspace: (2 * threads.max(1) as u64).saturating_mul(f.im2col) * VALUE,
        })
    }

    /// Rows per split as `u64`.
    fn data_rows(&self, data: &DataShape) -> [u64; 3] {
        data.split_rows(&self.data).map(|n| n as u64)
    }

    /// Checks the spec against what the data set makes of it: at most [`MAX_PARAMETERS`]
    /// parameters counting every layer, and an estimated peak within `max_job_memory` bytes
    /// (a 422 that gives both, and names what to change). Returns the estimate.
    pub fn check_resources(
        &self,
        data: &DataShape,
        max_job_memory: u64,
        threads: usize,
    ) -> Result<MemoryEstimate> {
        let parameters = self.parameter_count(data)?;
        if parameters > MAX_PARAMETERS as u64 {
            let (_, inputs) = self.input_of(data)?;
            let (field, what) = match &self.model {
                ModelSpec::Mlp(mlp) => (
                    "model.width",
                    format!(
                        "an MLP with {inputs} inputs, depth {} and width {}",
                        mlp.depth, mlp.width
                    ),
                ),
                ModelSpec::Cnn(_) => ("model", "this CNN".to_string()),
                ModelSpec::Resnet18(_) | ModelSpec::Resnet34(_) => {
                    ("model.width", "this ResNet".to_string())
                }
                ModelSpec::Vit(_) | ModelSpec::Convnext(_) => {
                    ("model", "this backbone's head".to_string())
                }
            };
            let smaller_input = if self.data.preprocessing.is_some() {
                ", or a smaller data.preprocessing.resize"
            } else {
                ""
            };
            return Err(EngineError::spec(
                field,
                format!(
                    "{what} has {parameters} parameters (every layer counted, the input layer \
                     and classifier included); valid: at most {MAX_PARAMETERS}: a smaller width \
                     or depth{smaller_input}"
                ),
            ));
        }
        let estimate = self.memory_estimate(data, threads)?;
        estimate.check(self, max_job_memory)?;
        Ok(estimate)
    }
}

impl MemoryEstimate {
    /// A 422 when the peak exceeds `limit` bytes, giving the estimate, its parts and the
    /// limit, and naming the field that would shrink the largest part.
    pub fn check(&self, spec: &JobSpec, limit: u64) -> Result<()> {
        let total = self.total();
        if total <= limit {
            return Ok(());
        }
        let data = self.data();
        let model = self.model();
        let batch = self.activations.saturating_add(self.workspace);
        let resize = spec
            .data
            .preprocessing
            .as_ref()
            .is_some_and(|p| p.resize.is_some());
        let (field, advice) = if data >= model && data >= batch {
            if resize {
                (
                    "data.preprocessing.resize",
                    "a smaller resize (or crop), or a data set with fewer samples",
                )
            } else {
                ("dataset", "a data set with fewer samples or features")
            }
        } else if model >= batch {
            ("model", "a smaller model (fewer or narrower layers)")
        } else {
            (
                "training.batch_size",
                "a smaller batch size, or a smaller model or input",
            )
        };
        Err(EngineError::spec(
            field,
            format!(
                "this job needs about {} of memory (data {}, model with gradients, optimizer \
                 state and checkpoints {}, activations and workspace {}), over the limit of {} \
                 per job (--max-job-memory); valid: {advice}",
                format_bytes(total),
                format_bytes(data),
                format_bytes(model),
                format_bytes(batch),
                format_bytes(limit),
            ),
        ))
    }
}

/// Bytes in binary units, rounded up to one decimal: `512 B`, `1.5 KiB`, `18.8 GiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{:.1} {}", (value * 10.0).ceil() / 10.0, UNITS[unit])
    }
}

#[cfg(test)]
mod tests;
