//! A model loaded for serving, and what it answers for a batch of rows: labels, confidences,
//! probabilities and, on request, logits and the top k.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use super::batcher::{BatchConfig, Batcher};
use crate::domain::JobId;
use crate::error::{Error, Result};
use engine::checkpoint::FileStamp;
use engine::spec::ModelSpec;
use engine::{InferenceNetwork, Preprocessing};

/// Which loaded model: a registry version or a job's checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ModelKey {
    /// Version `1` of `name`.
    Version(String, i64),
    /// A job's checkpoint of one epoch.
    Checkpoint(JobId, i64),
}

/// A network loaded for serving (never the weights being trained), with its preprocessing and
/// its own queue of requests for the inference threads.
pub struct LoadedModel {
    pub(super) network: InferenceNetwork,
    pub(super) preprocessing: Preprocessing,
    pub(super) batcher: Batcher,
    /// The checkpoint file it came from and that file's stamp (a job's checkpoint can be
    /// rewritten; registry versions never are).
    pub(super) stamp: Option<(PathBuf, FileStamp)>,
    /// For a registry version made from a job: the job and its checkpoint's epoch.
    pub(super) lineage: Option<(String, i64)>,
    /// Bytes its weights take in memory.
    pub(super) bytes: u64,
    /// Its number of parameters.
    pub(super) parameters: u64,
    /// Its `model` label in metrics: the registry name, or `job` for every job's checkpoint
    /// (job ids would grow the metrics without bound).
    pub(super) metric_name: String,
}

impl LoadedModel {
    /// The network `spec` describes with `tensors`, checked and run once on zeros (warmed).
    pub fn new(
        spec: &ModelSpec,
        preprocessing: Preprocessing,
        tensors: &HashMap<String, Tensor>,
        batching: BatchConfig,
        stamp: Option<(PathBuf, FileStamp)>,
    ) -> engine::Result<Self> {
        let network = InferenceNetwork::from_tensors(spec, &preprocessing, tensors)?;
        let bytes = network.bytes()? as u64;
        let parameters = network.parameters()? as u64;
        let width = preprocessing.input_width();
        network.logits(vec![0.0; width], 1, width)?;
        Ok(LoadedModel {
            network,
            preprocessing,
            batcher: Batcher::new(batching),
            stamp,
            lineage: None,
            bytes,
            parameters,
            metric_name: "job".into(),
        })
    }

    /// Loads a checkpoint's or an upload's tensors (safetensors bytes already verified).
    pub fn tensors(bytes: &[u8]) -> engine::Result<HashMap<String, Tensor>> {
        Ok(candle_core::safetensors::load_buffer(bytes, &Device::Cpu)?)
    }

    /// False when the checkpoint file it was loaded from has changed since (one `stat`).
    pub fn unchanged_on_disk(&self) -> bool {
        match &self.stamp {
            None => true,
            Some((path, stamp)) => FileStamp::of(path).is_ok_and(|now| now == *stamp),
        }
    }

    /// The engine's preprocessing of rows.
    pub fn preprocessing(&self) -> &Preprocessing {
        &self.preprocessing
    }

    /// Number of classes it scores.
    pub fn classes(&self) -> usize {
        self.preprocessing.labels.len()
    }
}

/// Extra outputs a request may ask for.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub struct OutputOptions {
    /// Include each row's raw scores (before softmax), in label order.
    #[serde(default)]
    pub logits: bool,
    /// Include the `k` most probable labels of each row, most probable first.
    #[serde(default)]
    pub top_k: Option<usize>,
}

/// The prediction for one row.
#[derive(Clone, Debug)]
pub struct Prediction {
    /// Index of the most probable label.
    pub best: usize,
    /// Its probability.
    pub confidence: f32,
    /// Probability of every label, in label order.
    pub probabilities: Vec<f32>,
    /// Raw scores, when asked for.
    pub logits: Option<Vec<f32>>,
    /// How many of the most probable labels to list.
    pub top_k: Option<usize>,
    /// The model's labels (shared by every row).
    pub labels: std::sync::Arc<Vec<serde_json::Value>>,
}

impl Prediction {
    /// The most probable label as text (a number label written as JSON writes it).
    pub fn label_text(&self) -> String {
        match &self.labels[self.best] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

impl Serialize for Prediction {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let fields = 3 + usize::from(self.logits.is_some()) + usize::from(self.top_k.is_some());
        let mut map = serializer.serialize_map(Some(fields))?;
        map.serialize_entry("label", &self.labels[self.best])?;
        map.serialize_entry("confidence", &self.confidence)?;
        map.serialize_entry(
            "probabilities",
            &LabelMap {
                labels: &self.labels,
                values: &self.probabilities,
            },
        )?;
        if let Some(logits) = &self.logits {
            map.serialize_entry("logits", logits)?;
        }
        if let Some(k) = self.top_k {
            let mut order: Vec<usize> = (0..self.probabilities.len()).collect();
            order.sort_by(|&a, &b| self.probabilities[b].total_cmp(&self.probabilities[a]));
            let top: Vec<TopLabel> = order
                .into_iter()
                .take(k)
                .map(|i| TopLabel {
                    label: &self.labels[i],
                    probability: self.probabilities[i],
                })
                .collect();
            map.serialize_entry("top_k", &top)?;
        }
        map.end()
    }
}

/// Probabilities keyed by label, written straight from the two slices.
struct LabelMap<'a> {
    labels: &'a [serde_json::Value],
    values: &'a [f32],
}

impl Serialize for LabelMap<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.values.len()))?;
        for (label, value) in self.labels.iter().zip(self.values) {
            match label {
                serde_json::Value::String(s) => map.serialize_entry(s, value)?,
                other => map.serialize_entry(&other.to_string(), value)?,
            }
        }
        map.end()
    }
}

#[derive(Serialize)]
struct TopLabel<'a> {
    label: &'a serde_json::Value,
    probability: f32,
}

/// Softmax of each row of `logits` (`classes` wide), in place.
pub(super) fn softmax_rows(logits: &[f32], classes: usize) -> Vec<f32> {
    let mut out = logits.to_vec();
    for row in out.chunks_mut(classes.max(1)) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        for v in row.iter_mut() {
            *v /= sum;
        }
    }
    out
}

/// Checks a request's top k against the model's classes.
pub(super) fn check_options(options: &OutputOptions, classes: usize) -> Result<()> {
    if let Some(k) = options.top_k
        && (k == 0 || k > classes)
    {
        return Err(Error::invalid(
            "top_k",
            format!("{k} labels; valid: 1 to {classes} (this model's number of labels)"),
        ));
    }
    Ok(())
}
