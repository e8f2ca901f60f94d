use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::dataset::{SplitPlan, Standardizer, Table, split};
use crate::domain::DataSpec;
use crate::error::Result;

/// What turns a raw row into the network's input, and an output index into a label. Fixed
/// when a job starts and stored with it, so prediction applies exactly what training did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preprocessing {
    /// The input columns, in order.
    pub feature_names: Vec<String>,
    /// Standardization fitted on the training split, if the spec asked for it.
    pub standardizer: Option<Standardizer>,
    /// The data set's label for each output index (JSON numbers or strings).
    pub labels: Vec<serde_json::Value>,
    /// Channels, height and width when rows are images (`C x H x W`, flattened); a CNN
    /// reshapes rows to this. Standardization stays per feature (per pixel and channel).
    #[serde(default)]
    pub image_shape: Option<[usize; 3]>,
}

impl Preprocessing {
    /// Number of input values per row.
    pub fn n_features(&self) -> usize {
        self.feature_names.len()
    }

    /// Applies the preprocessing to a row in place.
    pub fn apply(&self, row: &mut [f32]) {
        if let Some(standardizer) = &self.standardizer {
            standardizer.apply(row);
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

/// A data set split, preprocessed and on the training device.
pub struct PreparedData {
    /// Rows the optimizer sees.
    pub train: SplitTensors,
    /// Rows that choose the best epoch.
    pub val: SplitTensors,
    /// Rows held out for the final estimate, if any.
    pub test: Option<SplitTensors>,
    /// Number of classes.
    pub n_classes: usize,
    /// How rows were transformed.
    pub preprocessing: Preprocessing,
}

/// Splits the table as the spec says, fits preprocessing on the training split and builds tensors.
pub fn prepare(table: &Table, data: &DataSpec, device: &Device) -> Result<PreparedData> {
    let plan = SplitPlan {
        val_fraction: data.val_fraction,
        test_fraction: data.test_fraction,
        seed: data.split_seed,
    };
    let indices = split(table, &plan)?;
    let standardizer = data
        .standardize
        .then(|| Standardizer::fit(table, &indices.train));
    let preprocessing = Preprocessing {
        feature_names: table.feature_names.clone(),
        standardizer,
        labels: (0..table.classes.len() as u32)
            .map(|c| table.label_json(c))
            .collect(),
        image_shape: table.image_shape,
    };
    let tensors = |rows: &[usize]| -> Result<SplitTensors> {
        let width = table.n_features();
        let mut x = Vec::with_capacity(rows.len() * width);
        let mut y = Vec::with_capacity(rows.len());
        for &i in rows {
            let start = x.len();
            x.extend_from_slice(table.row(i));
            preprocessing.apply(&mut x[start..]);
            y.push(table.labels[i]);
        }
        Ok(SplitTensors {
            x: Tensor::from_vec(x, (rows.len(), width), device)?,
            y: Tensor::from_vec(y, rows.len(), device)?,
            len: rows.len(),
        })
    };
    Ok(PreparedData {
        train: tensors(&indices.train)?,
        val: tensors(&indices.val)?,
        test: if indices.test.is_empty() {
            None
        } else {
            Some(tensors(&indices.test)?)
        },
        n_classes: table.classes.len(),
        preprocessing,
    })
}
