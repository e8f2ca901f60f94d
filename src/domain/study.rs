//! Studies: one request that answers a classic training question (or all of them) on a data
//! set. A study is planned here into parts, each an ordinary sweep; the experiments' sizes
//! follow the budget. Planning is pure: the same request and data set give the same parts.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::SweepSpec;
use crate::error::{Error, Result};

/// A study as a user asks for it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudyRequest {
    /// Which question, or `all` that fit the data set.
    pub kind: StudyKind,
    /// The data set (name or id).
    pub dataset: String,
    /// How large the experiments are.
    #[serde(default)]
    pub budget: Budget,
    /// A label; defaults to the kind and the data set.
    #[serde(default)]
    pub name: Option<String>,
    /// The training seed of every run (repeats add 1, 2, ...).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Trials of each of the study's sweeps that may train at the same time.
    #[serde(default = "default_concurrency")]
    pub max_concurrent: u32,
    /// Transfer studies: the data set the source model is pretrained on (by default the
    /// study's own).
    #[serde(default)]
    pub source_dataset: Option<String>,
}

fn default_seed() -> u64 {
    7
}
fn default_concurrency() -> u32 {
    2
}

/// The questions a study can answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StudyKind {
    /// What a too-high or too-low learning rate does.
    LearningRate,
    /// When more epochs overfit, with and without dropout.
    Epochs,
    /// What batch normalization changes, over seeds.
    BatchNorm,
    /// How batch size trades accuracy, speed and stability.
    BatchSize,
    /// Which depth x width generalizes.
    DepthWidth,
    /// Where gradients vanish or explode in very deep nets.
    Gradients,
    /// Scratch, linear probe and fine-tuning of a pretrained CNN across learning rates.
    Transfer,
    /// Every study that fits the data set.
    All,
}

impl StudyKind {
    /// Every single question, in report order.
    pub const QUESTIONS: [StudyKind; 7] = [
        StudyKind::LearningRate,
        StudyKind::Epochs,
        StudyKind::BatchNorm,
        StudyKind::BatchSize,
        StudyKind::DepthWidth,
        StudyKind::Gradients,
        StudyKind::Transfer,
    ];

    /// Its name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            StudyKind::LearningRate => "learning_rate",
            StudyKind::Epochs => "epochs",
            StudyKind::BatchNorm => "batch_norm",
            StudyKind::BatchSize => "batch_size",
            StudyKind::DepthWidth => "depth_width",
            StudyKind::Gradients => "gradients",
            StudyKind::Transfer => "transfer",
            StudyKind::All => "all",
        }
    }

    /// The question, as a report's heading asks it.
    pub fn question(self) -> &'static str {
        match self {
            StudyKind::LearningRate => "What does a too-high or too-low learning rate do?",
            StudyKind::Epochs => "When do more epochs start to overfit, and does dropout help?",
            StudyKind::BatchNorm => "What does batch normalization change?",
            StudyKind::BatchSize => "How does batch size trade accuracy, speed and stability?",
            StudyKind::DepthWidth => "Which depth and width generalize best?",
            StudyKind::Gradients => "Where do gradients vanish or explode in a very deep network?",
            StudyKind::Transfer => {
                "Train from scratch, probe a pretrained network, or fine-tune it? At which learning rate?"
            }
            StudyKind::All => "Every question that fits the data set",
        }
    }

    /// Whether this question can be asked of a data set.
    pub fn fits(self, facts: &DataFacts) -> bool {
        match self {
            StudyKind::Transfer => facts.convolutional(),
            _ => true,
        }
    }
}

impl fmt::Display for StudyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StudyKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        serde_json::from_value(Value::String(s.to_string()))
            .map_err(|_| format!("unknown study kind '{s}'"))
    }
}

/// How large a study's experiments are: epochs and grid sizes scale with it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Budget {
    /// Minutes on a laptop: a few epochs, the smallest grids.
    Quick,
    /// The classic experiments at their usual sizes.
    #[default]
    Standard,
    /// Longer runs and finer grids.
    Thorough,
}

impl Budget {
    /// Its name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Budget::Quick => "quick",
            Budget::Standard => "standard",
            Budget::Thorough => "thorough",
        }
    }

    fn pick<T>(self, quick: T, standard: T, thorough: T) -> T {
        match self {
            Budget::Quick => quick,
            Budget::Standard => standard,
            Budget::Thorough => thorough,
        }
    }
}

/// What planning needs to know about the data set.
#[derive(Clone, Debug)]
pub struct DataFacts {
    /// The name the request used.
    pub name: String,
    /// Rows.
    pub rows: usize,
    /// Features per row.
    pub features: usize,
    /// Channels, height and width of its images, if it holds images.
    pub image_shape: Option<[usize; 3]>,
    /// Number of classes.
    pub classes: usize,
}

/// The smallest image side a study gives a CNN: below it (digits' 8×8) two poolings leave
/// almost nothing, so such images are studied as tables of pixels with MLPs.
pub const MIN_CNN_SIDE: usize = 16;

impl DataFacts {
    /// Whether its images are large enough for the study's CNNs (and so for transfer).
    pub fn convolutional(&self) -> bool {
        self.image_shape
            .is_some_and(|[_, h, w]| h >= MIN_CNN_SIDE && w >= MIN_CNN_SIDE)
    }

    /// What it is, for a message: "a table of 2 features", "8×8 images (64 features)".
    fn described(&self) -> String {
        match self.image_shape {
            Some([c, h, w]) => format!(
                "a set of {h}×{w} images with {c} channel{} ({} features)",
                if c == 1 { "" } else { "s" },
                self.features
            ),
            None => format!("a table of {} features", self.features),
        }
    }
}

/// What a part does within its question.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PartRole {
    /// The experiment that answers the question.
    Main,
    /// A model the main part starts from (transfer): created first, the main part after it
    /// succeeds.
    Source,
}

/// One sweep of a study.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StudyPart {
    /// The question it serves.
    pub question: StudyKind,
    /// Its role.
    pub role: PartRole,
    /// The sweep; a main part that needs a source names it as `$SOURCE` in `init.from_job`.
    pub sweep: SweepSpec,
    /// Display names of axis values that are not scalars (whole block lists), by axis path.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub value_labels: BTreeMap<String, Vec<String>>,
}

impl StudyPart {
    /// The key that identifies this part within its study.
    pub fn key(&self) -> String {
        match self.role {
            PartRole::Main => self.question.as_str().to_string(),
            PartRole::Source => format!("{}.source", self.question.as_str()),
        }
    }
}

/// Longest study name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// Largest seed a study takes (its repeats add to it).
pub const MAX_SEED: u64 = 1_000_000_000;

/// Placeholder for the source job's id in a transfer part's base spec.
pub const SOURCE_PLACEHOLDER: &str = "$SOURCE";

/// Plans the parts of a study on a data set (and, for transfer, the source data set's facts).
/// A kind that does not fit is a 422 naming `kind` and what would fit.
pub fn plan_study(request: &StudyRequest, facts: &DataFacts) -> Result<Vec<StudyPart>> {
    if let Some(name) = &request.name
        && (name.trim().is_empty() || name.chars().count() > MAX_NAME_CHARS)
    {
        return Err(Error::invalid(
            "name",
            format!(
                "{} characters; valid: 1 to {MAX_NAME_CHARS}, not only spaces",
                name.chars().count()
            ),
        ));
    }
    if request.seed > MAX_SEED {
        return Err(Error::invalid(
            "seed",
            format!("{}; valid: 0 to {MAX_SEED}", request.seed),
        ));
    }
    if request.max_concurrent == 0 || request.max_concurrent > 64 {
        return Err(Error::invalid(
            "max_concurrent",
            format!("{}; valid: 1 to 64", request.max_concurrent),
        ));
    }
    let questions: Vec<StudyKind> = match request.kind {
        StudyKind::All => StudyKind::QUESTIONS
            .into_iter()
            .filter(|k| k.fits(facts))
            .collect(),
        kind if kind.fits(facts) => vec![kind],
        kind => {
            let fitting: Vec<&str> = StudyKind::QUESTIONS
                .iter()
                .filter(|k| k.fits(facts))
                .map(|k| k.as_str())
                .collect();
            return Err(Error::invalid(
                "kind",
                format!(
                    "'{kind}' needs a data set of images of at least {MIN_CNN_SIDE}×{MIN_CNN_SIDE} pixels; '{}' is {}. Kinds that fit it: {}, all",
                    facts.name,
                    facts.described(),
                    fitting.join(", ")
                ),
            ));
        }
    };
    if request.source_dataset.is_some() && !questions.contains(&StudyKind::Transfer) {
        return Err(Error::invalid(
            "source_dataset",
            "only a transfer study (kind transfer, or all on images) pretrains on a source data set",
        ));
    }
    let plan = Planner { request, facts };
    let mut parts = Vec::new();
    for question in questions {
        parts.extend(plan.parts(question));
    }
    Ok(parts)
}

struct Planner<'a> {
    request: &'a StudyRequest,
    facts: &'a DataFacts,
}

impl Planner<'_> {
    fn budget(&self) -> Budget {
        self.request.budget
    }

    fn images(&self) -> bool {
        self.facts.convolutional()
    }

    /// Epochs at this budget; a quick study on images trains `quick_images` (a CNN epoch
    /// costs far more than an MLP's).
    fn epochs(&self, quick: u32, quick_images: u32, standard: u32, thorough: u32) -> u32 {
        match (self.budget(), self.images()) {
            (Budget::Quick, true) => quick_images,
            (budget, _) => budget.pick(quick, standard, thorough),
        }
    }

    fn base(&self, model: Value, optimizer: Value, epochs: u32, batch_size: usize) -> Value {
        json!({
            "dataset": self.request.dataset,
            "model": model,
            "training": {"optimizer": optimizer, "epochs": epochs, "batch_size": batch_size, "seed": self.request.seed}
        })
    }

    fn mlp(&self, depth: usize, width: usize) -> Value {
        json!({"kind": "mlp", "depth": depth, "width": width, "activation": "relu"})
    }

    /// A small CNN: two blocks of `channels` and twice as many, a head of 32.
    fn cnn(&self, channels: usize, batch_norm: bool) -> Value {
        json!({"kind": "cnn",
               "blocks": [{"channels": channels, "batch_norm": batch_norm},
                          {"channels": channels * 2, "batch_norm": batch_norm}],
               "head": {"depth": 1, "width": 32}})
    }

    /// The default model of the data set: a CNN on images, an MLP on tables.
    fn model(&self) -> Value {
        if self.images() {
            self.cnn(self.budget().pick(8, 16, 16), false)
        } else {
            self.mlp(2, self.budget().pick(32, 64, 64))
        }
    }

    fn adam(lr: f64) -> Value {
        json!({"kind": "adam", "lr": lr})
    }

    fn sweep(&self, question: StudyKind, base: Value, axes: Vec<(&str, Vec<Value>)>) -> SweepSpec {
        SweepSpec {
            name: Some(format!("{} {}", self.study_name(), question.as_str())),
            base,
            axes: axes
                .into_iter()
                .map(|(path, values)| (path.to_string(), super::Axis::Values(values)))
                .collect(),
            search: super::Search::Grid,
            repeats: 1,
            max_concurrent: self.request.max_concurrent,
            metric: super::RankMetric::ValAcc,
            goal: None,
            pruning: None,
            dry_run: false,
        }
    }

    fn study_name(&self) -> String {
        self.request.name.clone().unwrap_or_else(|| {
            format!(
                "{} study on {}",
                self.request.kind.as_str(),
                self.request.dataset
            )
        })
    }

    fn main(&self, question: StudyKind, sweep: SweepSpec) -> StudyPart {
        StudyPart {
            question,
            role: PartRole::Main,
            sweep,
            value_labels: BTreeMap::new(),
        }
    }

    fn parts(&self, question: StudyKind) -> Vec<StudyPart> {
        let b = self.budget();
        let small_batch = 32;
        match question {
            StudyKind::LearningRate => {
                let rates: Vec<f64> = b.pick(
                    vec![1e-5, 1e-3, 1.0],
                    vec![1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0],
                    vec![1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0],
                );
                let base = self.base(
                    self.model(),
                    Self::adam(1e-3),
                    self.epochs(4, 3, 20, 40),
                    small_batch,
                );
                let axes = vec![(
                    "training.optimizer.lr",
                    rates.into_iter().map(Value::from).collect(),
                )];
                vec![self.main(question, self.sweep(question, base, axes))]
            }
            StudyKind::Epochs => {
                let (model, path) = if self.images() {
                    (self.cnn(b.pick(8, 16, 32), false), "model.head.dropout")
                } else {
                    (self.mlp(3, b.pick(128, 256, 256)), "model.dropout")
                };
                let mut base = self.base(
                    model,
                    Self::adam(3e-3),
                    self.epochs(12, 6, 100, 200),
                    small_batch,
                );
                // More held-out data makes the validation curve's turn visible.
                base["data"] = json!({"val_fraction": 0.3, "test_fraction": 0.3});
                let axes = vec![(path, vec![json!(0.0), json!(0.5)])];
                vec![self.main(question, self.sweep(question, base, axes))]
            }
            StudyKind::BatchNorm => {
                let epochs = self.epochs(4, 3, 15, 30);
                let mut sweep;
                let mut value_labels = BTreeMap::new();
                if self.images() {
                    let channels = b.pick(8, 16, 16);
                    let (off, on) = (self.cnn(channels, false), self.cnn(channels, true));
                    let base = self.base(
                        off.clone(),
                        json!({"kind": "sgd", "lr": 0.05, "momentum": 0.9}),
                        epochs,
                        small_batch,
                    );
                    sweep = self.sweep(
                        question,
                        base,
                        vec![(
                            "model.blocks",
                            vec![off["blocks"].clone(), on["blocks"].clone()],
                        )],
                    );
                    value_labels.insert(
                        "model.blocks".to_string(),
                        vec!["batch_norm=false".into(), "batch_norm=true".into()],
                    );
                } else {
                    let base = self.base(
                        self.mlp(4, 64),
                        json!({"kind": "sgd", "lr": 0.05, "momentum": 0.9}),
                        epochs,
                        small_batch,
                    );
                    sweep = self.sweep(
                        question,
                        base,
                        vec![("model.batch_norm", vec![json!(false), json!(true)])],
                    );
                }
                sweep.repeats = b.pick(2, 3, 5);
                vec![StudyPart {
                    question,
                    role: PartRole::Main,
                    sweep,
                    value_labels,
                }]
            }
            StudyKind::BatchSize => {
                let sizes: Vec<usize> = match (self.images(), b) {
                    (false, Budget::Quick) => vec![1, 32, 1024],
                    (true, Budget::Quick) => vec![4, 32, 256],
                    (_, Budget::Standard) => vec![1, 16, 128, 1024],
                    (_, Budget::Thorough) => vec![1, 4, 16, 64, 256, 1024],
                };
                let base = self.base(
                    self.model(),
                    Self::adam(1e-3),
                    self.epochs(3, 2, 20, 30),
                    small_batch,
                );
                let axes = vec![(
                    "training.batch_size",
                    sizes.into_iter().map(Value::from).collect(),
                )];
                vec![self.main(question, self.sweep(question, base, axes))]
            }
            StudyKind::DepthWidth => {
                let (depths, widths): (Vec<usize>, Vec<usize>) = b.pick(
                    (vec![1, 3], vec![16, 64]),
                    (vec![1, 2, 4, 8], vec![8, 32, 128, 512]),
                    (vec![1, 2, 4, 8, 16], vec![8, 32, 64, 128, 512]),
                );
                // On images too an MLP, on the pixels: depth and width are one number each.
                let base = self.base(
                    self.mlp(2, 32),
                    Self::adam(1e-3),
                    self.epochs(5, 3, 20, 40),
                    small_batch,
                );
                let axes = vec![
                    ("model.depth", depths.into_iter().map(Value::from).collect()),
                    ("model.width", widths.into_iter().map(Value::from).collect()),
                ];
                vec![self.main(question, self.sweep(question, base, axes))]
            }
            StudyKind::Gradients => {
                let depth = b.pick(20, 50, 100);
                let mut model = self.mlp(depth, 32);
                model["activation"] = json!("sigmoid");
                let base = self.base(
                    model,
                    json!({"kind": "sgd", "lr": 0.05, "momentum": 0.9}),
                    self.epochs(2, 2, 5, 10),
                    64,
                );
                let axes = vec![
                    ("model.activation", vec![json!("sigmoid"), json!("relu")]),
                    ("model.batch_norm", vec![json!(false), json!(true)]),
                    (
                        "training.grad_clip",
                        vec![Value::Null, json!({"max_norm": 1.0})],
                    ),
                ];
                vec![self.main(question, self.sweep(question, base, axes))]
            }
            StudyKind::Transfer => self.transfer(),
            StudyKind::All => Vec::new(),
        }
    }

    fn transfer(&self) -> Vec<StudyPart> {
        let b = self.budget();
        let question = StudyKind::Transfer;
        let model = self.cnn(b.pick(8, 16, 32), true);
        let source_dataset = self
            .request
            .source_dataset
            .clone()
            .unwrap_or_else(|| self.request.dataset.clone());
        let epochs = self.epochs(3, 2, 10, 20);
        let mut source_base = self.base(model.clone(), Self::adam(3e-3), epochs, 32);
        source_base["dataset"] = json!(source_dataset);
        // A sweep of one trial: the source is an ordinary job the study can wait for.
        let mut source = self.sweep(
            question,
            source_base,
            vec![("training.seed", vec![json!(self.request.seed)])],
        );
        source.name = Some(format!("{} transfer source", self.study_name()));
        let mut base = self.base(model, Self::adam(3e-3), epochs, 16);
        base["init"] =
            json!({"mode": "scratch", "from_job": SOURCE_PLACEHOLDER, "backbone_lr_scale": 0.1});
        let rates: Vec<f64> = b.pick(
            vec![3e-4, 3e-3],
            vec![3e-4, 3e-3, 3e-2],
            vec![1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2],
        );
        let axes = vec![
            (
                "init.mode",
                vec![json!("scratch"), json!("linear_probe"), json!("fine_tune")],
            ),
            (
                "training.optimizer.lr",
                rates.into_iter().map(Value::from).collect(),
            ),
        ];
        vec![
            StudyPart {
                question,
                role: PartRole::Source,
                sweep: source,
                value_labels: BTreeMap::new(),
            },
            self.main(question, self.sweep(question, base, axes)),
        ]
    }
}

/// Puts the source job's id where a transfer part's base names `$SOURCE`.
pub fn with_source(mut sweep: SweepSpec, source_job: &str) -> SweepSpec {
    if let Some(init) = sweep.base.get_mut("init").and_then(Value::as_object_mut)
        && init.get("from_job").and_then(Value::as_str) == Some(SOURCE_PLACEHOLDER)
    {
        init.insert("from_job".into(), json!(source_job));
    }
    sweep
}

#[cfg(test)]
mod tests;
