//! Dynamic batching: concurrent requests for one model are gathered into one forward pass on
//! inference threads of their own, apart from training's.
//!
//! Each loaded model has a bounded queue. A request joins its model's queue (or is refused at
//! once with a 429 when the queue is full) and the model is handed to the inference threads if
//! it is not waiting for one already. A thread that takes a model waits until the oldest
//! request has waited `max_queue_delay` or `max_batch_rows` rows are queued, takes whole
//! requests up to `max_batch_rows` rows (a larger request alone), preprocesses each request's
//! rows (a request with a bad row fails alone), runs one forward pass and answers every request.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::model::{LoadedModel, OutputOptions, Prediction, softmax_rows};
use crate::error::{Error, Result};

/// How one model's requests are batched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchConfig {
    /// Most rows in one forward pass (a single larger request still runs, alone).
    pub max_batch_size: usize,
    /// How long the oldest queued request may wait for others to join it, in microseconds.
    pub max_queue_delay_us: u64,
    /// Most rows waiting in the queue; beyond it a request is refused with a 429.
    pub max_queue_rows: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_batch_size: 64,
            max_queue_delay_us: 0,
            max_queue_rows: 4096,
        }
    }
}

impl BatchConfig {
    /// A 422 naming the field that is out of range.
    pub fn validate(&self, field: &str) -> Result<()> {
        if !(1..=super::MAX_ROWS).contains(&self.max_batch_size) {
            return Err(Error::invalid(
                format!("{field}.max_batch_size"),
                format!("valid: 1 to {}", super::MAX_ROWS),
            ));
        }
        if self.max_queue_delay_us > 1_000_000 {
            return Err(Error::invalid(
                format!("{field}.max_queue_delay_us"),
                "valid: 0 to 1000000 (one second)",
            ));
        }
        if !(1..=1_000_000).contains(&self.max_queue_rows) {
            return Err(Error::invalid(
                format!("{field}.max_queue_rows"),
                "valid: 1 to 1000000",
            ));
        }
        Ok(())
    }
}

/// Rows to predict, as the data set stores them (before the model's preprocessing).
pub enum Rows {
    /// One list per row.
    Raw(Vec<Vec<f64>>),
    /// `count` rows, row-major (the Open Inference Protocol's tensors).
    Flat { values: Vec<f32>, count: usize },
}

impl Rows {
    fn count(&self) -> usize {
        match self {
            Rows::Raw(rows) => rows.len(),
            Rows::Flat { count, .. } => *count,
        }
    }
}

struct Pending {
    rows: Rows,
    options: OutputOptions,
    enqueued: Instant,
    reply: oneshot::Sender<Result<Vec<Prediction>>>,
}

#[derive(Default)]
struct Queue {
    pending: VecDeque<Pending>,
    rows: usize,
    /// Handed to the inference threads and not yet taken.
    scheduled: bool,
}

/// One model's queue.
pub struct Batcher {
    config: BatchConfig,
    queue: Mutex<Queue>,
    arrived: Condvar,
}

impl Batcher {
    pub(super) fn new(config: BatchConfig) -> Self {
        Batcher {
            config,
            queue: Mutex::new(Queue::default()),
            arrived: Condvar::new(),
        }
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The inference threads: a budget of their own, so that training cannot starve predictions.
#[derive(Clone)]
pub struct InferencePool {
    ready: mpsc::Sender<Arc<LoadedModel>>,
    threads: usize,
}

impl InferencePool {
    /// Starts `threads` inference threads.
    pub fn start(threads: usize) -> Self {
        let threads = threads.max(1);
        let (ready, receiver) = mpsc::channel::<Arc<LoadedModel>>();
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..threads {
            let receiver = Arc::clone(&receiver);
            let sender = ready.clone();
            std::thread::Builder::new()
                .name(format!("inference-{i}"))
                .spawn(move || serve(&receiver, &sender))
                .expect("starting an inference thread");
        }
        InferencePool { ready, threads }
    }

    /// Number of inference threads.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Queues `rows` for `model` and waits for their predictions; a 429 at once when the
    /// model's queue is full.
    pub async fn predict(
        &self,
        model: &Arc<LoadedModel>,
        rows: Rows,
        options: OutputOptions,
    ) -> Result<Vec<Prediction>> {
        let count = rows.count();
        let (reply, answer) = oneshot::channel();
        let schedule = {
            let batcher = &model.batcher;
            let mut queue = batcher.queue();
            if queue.rows > 0 && queue.rows + count > batcher.config.max_queue_rows {
                metrics::counter!(crate::prometheus::PREDICTION_REFUSED).increment(1);
                return Err(Error::Overloaded {
                    message: format!(
                        "this model's queue is full ({} rows waiting, at most {}); retry shortly",
                        queue.rows, batcher.config.max_queue_rows
                    ),
                });
            }
            queue.rows += count;
            queue.pending.push_back(Pending {
                rows,
                options,
                enqueued: Instant::now(),
                reply,
            });
            metrics::gauge!(crate::prometheus::PREDICTION_QUEUE_ROWS).increment(count as f64);
            batcher.arrived.notify_one();
            !std::mem::replace(&mut queue.scheduled, true)
        };
        if schedule {
            self.ready
                .send(Arc::clone(model))
                .map_err(|_| Error::Unavailable {
                    message: "the inference threads have stopped".into(),
                })?;
        }
        answer
            .await
            .map_err(|_| Error::Internal("an inference thread stopped".into()))?
    }
}

/// An inference thread: takes models that have requests waiting and answers a batch of each.
fn serve(
    receiver: &Mutex<mpsc::Receiver<Arc<LoadedModel>>>,
    ready: &mpsc::Sender<Arc<LoadedModel>>,
) {
    loop {
        let model = {
            let receiver = receiver.lock().unwrap_or_else(|p| p.into_inner());
            match receiver.recv() {
                Ok(model) => model,
                Err(_) => return,
            }
        };
        let batch = take_batch(&model);
        if !batch.is_empty() {
            metrics::gauge!(crate::prometheus::INFERENCE_THREADS_BUSY).increment(1.0);
            run_batch(&model, batch);
            metrics::gauge!(crate::prometheus::INFERENCE_THREADS_BUSY).decrement(1.0);
        }
        let mut queue = model.batcher.queue();
        if queue.pending.is_empty() {
            queue.scheduled = false;
        } else {
            drop(queue);
            // Still scheduled: the next free thread (perhaps this one) takes the rest.
            let _ = ready.send(model);
        }
    }
}

/// Waits for the batch to fill or its delay to pass, then takes whole requests.
fn take_batch(model: &LoadedModel) -> Vec<Pending> {
    let batcher = &model.batcher;
    let config = batcher.config;
    let delay = Duration::from_micros(config.max_queue_delay_us);
    let mut queue = batcher.queue();
    while let Some(oldest) = queue.pending.front().map(|p| p.enqueued) {
        let waited = oldest.elapsed();
        if queue.rows >= config.max_batch_size || waited >= delay {
            break;
        }
        queue = batcher
            .arrived
            .wait_timeout(queue, delay - waited)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
    let mut batch = Vec::new();
    let mut rows = 0;
    while let Some(next) = queue.pending.front() {
        let count = next.rows.count();
        if !batch.is_empty() && rows + count > config.max_batch_size {
            break;
        }
        rows += count;
        let pending = queue.pending.pop_front().expect("a front request");
        metrics::histogram!(crate::prometheus::PREDICTION_QUEUE_SECONDS)
            .record(pending.enqueued.elapsed().as_secs_f64());
        batch.push(pending);
    }
    queue.rows -= rows;
    metrics::gauge!(crate::prometheus::PREDICTION_QUEUE_ROWS).decrement(rows as f64);
    batch
}

/// Preprocesses each request, runs one forward pass over all of them and answers each.
fn run_batch(model: &LoadedModel, batch: Vec<Pending>) {
    let started = Instant::now();
    let width = model.preprocessing.input_width();
    let mut x = Vec::new();
    let mut accepted = Vec::with_capacity(batch.len());
    for pending in batch {
        let start = x.len();
        match prepare(model, pending.rows, &mut x) {
            Ok(count) => accepted.push((pending.reply, pending.options, count)),
            Err(err) => {
                x.truncate(start);
                let _ = pending.reply.send(Err(err));
            }
        }
    }
    let total: usize = accepted.iter().map(|(_, _, n)| n).sum();
    if total == 0 {
        return;
    }
    metrics::histogram!(crate::prometheus::PREDICTION_BATCH_ROWS, "model" => model.metric_name.clone())
        .record(total as f64);
    let classes = model.classes();
    let logits = match model.network.logits(x, total, width) {
        Ok(logits) => logits,
        Err(err) => {
            let message = format!("predicting: {err}");
            for (reply, _, _) in accepted {
                let _ = reply.send(Err(Error::Internal(message.clone())));
            }
            return;
        }
    };
    let probabilities = softmax_rows(&logits, classes);
    let labels = Arc::new(model.preprocessing.labels.clone());
    let mut row = 0;
    for (reply, options, count) in accepted {
        let predictions = (row..row + count)
            .map(|r| {
                let p = &probabilities[r * classes..(r + 1) * classes];
                let (best, confidence) = p
                    .iter()
                    .enumerate()
                    .fold((0, f32::MIN), |a, (i, &v)| if v > a.1 { (i, v) } else { a });
                Prediction {
                    best,
                    confidence,
                    probabilities: p.to_vec(),
                    logits: options
                        .logits
                        .then(|| logits[r * classes..(r + 1) * classes].to_vec()),
                    top_k: options.top_k,
                    labels: Arc::clone(&labels),
                }
            })
            .collect();
        row += count;
        let _ = reply.send(Ok(predictions));
    }
    metrics::histogram!(crate::prometheus::PREDICTION_SECONDS)
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(crate::prometheus::PREDICTION_ROWS).increment(total as u64);
}

/// Appends a request's network inputs to `x`; a 422 naming the first bad row.
fn prepare(model: &LoadedModel, rows: Rows, x: &mut Vec<f32>) -> Result<usize> {
    let preprocessing = &model.preprocessing;
    let raw_width = preprocessing.n_features();
    match rows {
        Rows::Flat { values, count } => {
            if values.len() != count * raw_width {
                return Err(Error::invalid(
                    "inputs",
                    format!(
                        "{} values for {count} rows; this model expects {raw_width} per row",
                        values.len()
                    ),
                ));
            }
            for (i, row) in values.chunks(raw_width.max(1)).enumerate() {
                let start = x.len();
                preprocessing.transform_into(row, x);
                if let Some(j) = x[start..].iter().position(|v| !v.is_finite()) {
                    return Err(not_finite(i, j));
                }
            }
            Ok(count)
        }
        Rows::Raw(rows) => {
            let mut row_f32 = Vec::with_capacity(raw_width);
            for (i, row) in rows.iter().enumerate() {
                if row.len() != raw_width {
                    return Err(Error::invalid(
                        format!("inputs[{i}]"),
                        format!(
                            "row {i} has {} values; this model expects {raw_width} ({})",
                            row.len(),
                            super::feature_hint(preprocessing)
                        ),
                    ));
                }
                let start = x.len();
                row_f32.clear();
                row_f32.extend(row.iter().map(|v| *v as f32));
                preprocessing.transform_into(&row_f32, x);
                let bad = row_f32.iter().position(|v| !v.is_finite());
                if let Some(j) = bad.or_else(|| x[start..].iter().position(|v| !v.is_finite())) {
                    return Err(not_finite(i, j));
                }
            }
            Ok(rows.len())
        }
    }
}

fn not_finite(i: usize, j: usize) -> Error {
    Error::invalid(
        format!("inputs[{i}][{j}]"),
        format!(
            "row {i} column {j} is not a finite number after preprocessing; valid: finite numbers within f32 range"
        ),
    )
}
