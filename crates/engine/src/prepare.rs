//! Turning a data set into tensors the loop trains on: the split, the preprocessing fitted on
//! the training split (per-feature standardization, or a declared image pipeline), and the
//! random image augmentation of training batches.

use candle_core::{Device, Tensor};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::image_prep::ImagePipeline;
use crate::error::{EngineError, Result};
use crate::spec::{DataShape, DataSpec, JobSpec, format_bytes};
use data::{Split, SplitPlan, Standardizer, Table, split};

/// What turns a raw row into the network's input, and an output index into a label. Fixed
/// when a job starts and stored with it, so prediction applies exactly what training did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// The data set's columns, in order: what a raw row holds.
    pub feature_names: Vec<String>,
    /// Standardization fitted on the training split, if the spec asked for it (never with an
    /// image pipeline).
    pub standardizer: Option<Standardizer>,
    /// The data set's label for each output index (JSON numbers or strings).
    pub labels: Vec<serde_json::Value>,
    /// Channels, height and width of the network's input when rows are images (`C x H x W`,
    /// flattened); a CNN reshapes rows to this. Without `image` it is the data set's shape and
    /// standardization stays per feature (per pixel and channel).
    #[serde(default)]
    pub image_shape: Option<[usize; 3]>,
    /// The value of a full-intensity pixel in the data set's rows: 1, or 16 for `digits`.
    /// Images sent for prediction are decoded to [0, 1] and scaled by it.
    #[serde(default = "unit")]
    pub pixel_max: f32,
    /// The spec's `data.preprocessing`, fitted on the training split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImagePipeline>,
}

fn unit() -> f32 {
    1.0
}

impl Preprocessing {
    /// Number of values in a raw row (the data set's columns).
    pub fn n_features(&self) -> usize {
        self.feature_names.len()
    }

    /// Number of values the network takes per row.
    pub fn input_width(&self) -> usize {
        match (&self.image, self.image_shape) {
            (Some(_), Some([c, h, w])) => c * h * w,
            _ => self.n_features(),
        }
    }

    /// The data set's image shape (what raw rows and uploaded images must have), if any.
    pub fn dataset_image_shape(&self) -> Option<[usize; 3]> {
        match &self.image {
            Some(pipeline) => Some(pipeline.input_shape),
            None => self.image_shape,
        }
    }

    /// Whether the spec declared a resize, so images of any size are accepted for prediction.
    pub fn resizes(&self) -> bool {
        self.image.as_ref().is_some_and(|p| p.resize.is_some())
    }

    /// Appends the network's input for a raw row (of [`Preprocessing::n_features`] values),
    /// on the deterministic path: standardization, or resize, normalization and centre crop.
    pub fn transform_into(&self, row: &[f32], out: &mut Vec<f32>) {
        if let Some(pipeline) = &self.image {
            out.extend(pipeline.eval(row));
            return;
        }
        let start = out.len();
        out.extend_from_slice(row);
        if let Some(standardizer) = &self.standardizer {
            standardizer.apply(&mut out[start..]);
        }
    }
}

/// The rows of one split as tensors: inputs `[n, features]` (f32) and class indices `[n]` (u32).
pub struct SplitTensors {
    /// Inputs.
    pub x: Tensor,
    /// Class indices.
    pub y: Tensor,
    /// Number of rows.
    pub len: usize,
}

/// The training images before their random crop and flip.
pub struct Augmentation {
    pipeline: ImagePipeline,
    /// Row-major, normalized; uncropped when the crop is random.
    source: Vec<f32>,
    width: usize,
}

impl Augmentation {
    /// The network's input for training rows `rows`, each randomly transformed with draws
    /// from `rng` in row order.
    pub fn batch(&self, rows: &[u32], rng: &mut ChaCha8Rng) -> Vec<f32> {
        let [c, h, w] = self.pipeline.output_shape();
        let mut out = Vec::with_capacity(rows.len() * c * h * w);
        for &r in rows {
            let r = r as usize;
            let source = &self.source[r * self.width..(r + 1) * self.width];
            self.pipeline.augment(source, rng, &mut out);
        }
        out
    }
}

/// A data set split, preprocessed and on the training device.
pub struct PreparedData {
    /// Rows the optimizer sees (on the evaluation path; see `augment`).
    pub train: SplitTensors,
    /// Rows that choose the best epoch.
    pub val: SplitTensors,
    /// Rows held out for the final estimate, if any.
    pub test: Option<SplitTensors>,
    /// Number of classes.
    pub n_classes: usize,
    /// How rows were transformed.
    pub preprocessing: Preprocessing,
    /// When the spec asks for random crops or flips: where training batches come from.
    pub augment: Option<Augmentation>,
}

/// What the memory estimate needs to know about a loaded table.
pub fn data_shape(table: &Table) -> DataShape {
    let fixed_split = table.splits.as_ref().map(|splits| {
        let mut rows = [0; 3];
        for split in splits {
            rows[match split {
                Split::Train => 0,
                Split::Val => 1,
                Split::Test => 2,
            }] += 1;
        }
        rows
    });
    DataShape {
        rows: table.n_rows(),
        features: table.n_features(),
        image_shape: table.image_shape,
        class_counts: table.class_counts(),
        fixed_split,
    }
}

/// [`prepare`] within a budget: before allocating anything, works out from the table's and
/// the spec's shapes how much preparing the data holds at its peak (the table included; see
/// [`crate::spec::MemoryEstimate::preparation`]) and refuses with an error naming the field
/// to change when that exceeds `max_bytes`.
pub fn prepare_within(
    table: &Table,
    spec: &JobSpec,
    device: &Device,
    max_bytes: u64,
) -> Result<PreparedData> {
    let needed = spec
        .memory_estimate(&data_shape(table), 1)?
        .preparation_peak();
    if needed > max_bytes {
        let field = match &spec.data.preprocessing {
            Some(p) if p.resize.is_some() => "data.preprocessing.resize",
            Some(_) => "data.preprocessing",
            None => "dataset",
        };
        return Err(EngineError::spec(
            field,
            format!(
                "preparing this data set needs about {} of memory ({} rows), over the limit of \
                 {} per job (--max-job-memory); valid: a smaller resize or crop, or a data set \
                 with fewer samples",
                format_bytes(needed),
                table.n_rows(),
                format_bytes(max_bytes)
            ),
        ));
    }
    prepare(table, &spec.data, device)
}

/// Splits the table as the spec says, fits preprocessing on the training split and builds tensors.
pub fn prepare(table: &Table, data: &DataSpec, device: &Device) -> Result<PreparedData> {
    let plan = SplitPlan {
        val_fraction: data.val_fraction,
        test_fraction: data.test_fraction,
        seed: data.split_seed,
    };
    let indices = split(table, &plan)?;
    let labels = (0..table.classes.len() as u32)
        .map(|c| table.label_json(c))
        .collect();
    let Some(spec) = &data.preprocessing else {
        let standardizer = data
            .standardize
            .then(|| Standardizer::fit(table, &indices.train));
        let preprocessing = Preprocessing {
            feature_names: table.feature_names.clone(),
            standardizer,
            labels,
            image_shape: table.image_shape,
            pixel_max: table.pixel_max,
            image: None,
        };
        let tensors = |rows: &[usize]| {
            let mut x = Vec::with_capacity(rows.len() * preprocessing.input_width());
            for &i in rows {
                preprocessing.transform_into(table.row(i), &mut x);
            }
            split_tensors(x, rows, table, preprocessing.input_width(), device)
        };
        return Ok(PreparedData {
            train: tensors(&indices.train)?,
            val: tensors(&indices.val)?,
            test: optional(&indices.test, tensors)?,
            n_classes: table.classes.len(),
            preprocessing,
            augment: None,
        });
    };
    let shape = table.image_shape.ok_or_else(|| {
        EngineError::spec(
            "data.preprocessing",
            "this data set has no images; image preprocessing needs an image data set",
        )
    })?;
    let mut pipeline = ImagePipeline::new(spec, shape, table.pixel_max)?;
    // Resized once; normalized with stats fitted on the training split; then cropped.
    let resized = |rows: &[usize]| -> Vec<Vec<f32>> {
        rows.iter()
            .map(|&i| pipeline.resized(table.row(i)))
            .collect()
    };
    let (mut train, mut val, mut test) = (
        resized(&indices.train),
        resized(&indices.val),
        resized(&indices.test),
    );
    pipeline.fit_normalization(train.iter().map(Vec::as_slice));
    for image in train.iter_mut().chain(&mut val).chain(&mut test) {
        pipeline.normalize(image);
    }
    let [c, h, w] = pipeline.output_shape();
    let width = c * h * w;
    // Sized up front: a growing vector would leave freed blocks behind that the allocator
    // keeps (see `kernels::malloc`), beyond what the memory estimate counts.
    let centred = |images: Vec<Vec<f32>>| -> Vec<f32> {
        let mut out = Vec::with_capacity(images.len() * width);
        for image in images {
            out.extend_from_slice(&pipeline.center(image));
        }
        out
    };
    let augment = pipeline.augments().then(|| {
        let [c, h, w] = pipeline.augment_source_shape();
        Augmentation {
            pipeline: pipeline.clone(),
            source: if pipeline.crop.as_ref().is_some_and(|crop| crop.random) {
                train.concat()
            } else {
                centred(train.clone())
            },
            width: c * h * w,
        }
    });
    let preprocessing = Preprocessing {
        feature_names: table.feature_names.clone(),
        standardizer: None,
        labels,
        image_shape: Some([c, h, w]),
        pixel_max: table.pixel_max,
        image: Some(pipeline.clone()),
    };
    let tensors = |images: Vec<Vec<f32>>, rows: &[usize]| {
        split_tensors(centred(images), rows, table, width, device)
    };
    Ok(PreparedData {
        train: tensors(train, &indices.train)?,
        val: tensors(val, &indices.val)?,
        test: if indices.test.is_empty() {
            None
        } else {
            Some(tensors(test, &indices.test)?)
        },
        n_classes: table.classes.len(),
        preprocessing,
        augment,
    })
}

fn split_tensors(
    x: Vec<f32>,
    rows: &[usize],
    table: &Table,
    width: usize,
    device: &Device,
) -> Result<SplitTensors> {
    let y: Vec<u32> = rows.iter().map(|&i| table.labels[i]).collect();
    Ok(SplitTensors {
        x: Tensor::from_vec(x, (rows.len(), width), device)?,
        y: Tensor::from_vec(y, rows.len(), device)?,
        len: rows.len(),
    })
}

fn optional(
    rows: &[usize],
    tensors: impl Fn(&[usize]) -> Result<SplitTensors>,
) -> Result<Option<SplitTensors>> {
    if rows.is_empty() {
        Ok(None)
    } else {
        tensors(rows).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use data::LabelKind;

    /// `rows` one-pixel grayscale images in two classes, the first class three times larger.
    fn pixels(rows: usize) -> Table {
        Table {
            feature_names: vec!["p0".into()],
            features: (0..rows).map(|i| (i % 7) as f32 / 7.0).collect(),
            labels: (0..rows).map(|i| u32::from(i % 4 == 0)).collect(),
            classes: vec!["a".into(), "b".into()],
            label_kind: LabelKind::String,
            splits: None,
            image_shape: Some([1, 1, 1]),
            pixel_max: 1.0,
        }
    }

    fn spec(json: serde_json::Value) -> JobSpec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_preparation_over_the_budget_is_refused_before_anything_is_allocated() {
        // Resized to 3x1024x1024, 100,000 images would take 1.3 TB, and as much again for the
        // splits: had preparation started,
        // the process would have aborted on the allocation instead of returning.
        let table = pixels(100_000);
        let job = spec(serde_json::json!({
            "dataset": "pixels",
            "data": {"preprocessing": {"resize": 1024, "grayscale_to_rgb": true}},
            "model": {"kind": "mlp", "depth": 1, "width": 1},
        }));
        let err = prepare_within(&table, &job, &Device::Cpu, 64 << 20)
            .err()
            .expect("refused");
        let text = err.to_string();
        assert!(
            text.starts_with(
                "data.preprocessing.resize: preparing this data set needs about 2.3 TiB"
            ),
            "{text}"
        );
        assert!(text.contains("over the limit of 64.0 MiB"), "{text}");
    }

    #[test]
    fn a_preparation_within_the_budget_runs_and_its_split_matches_the_estimate() {
        let table = pixels(203);
        let job = spec(serde_json::json!({
            "dataset": "pixels",
            "data": {"preprocessing": {"resize": 2}},
            "model": {"kind": "mlp"},
        }));
        let shape = data_shape(&table);
        let [train, val, test] = shape.split_rows(&job.data);
        let prepared = prepare_within(&table, &job, &Device::Cpu, 64 << 20).unwrap();
        assert_eq!(prepared.train.len, train);
        assert_eq!(prepared.val.len, val);
        assert_eq!(prepared.test.map_or(0, |t| t.len), test);
        assert_eq!(prepared.train.x.dims(), &[train, 4]);
    }
}
