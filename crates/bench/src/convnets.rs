//! The peer's convolutional workloads (`cnn`, `resnet18`) trained with trainserve's CPU
//! kernels (the `kernels` crate), side by side with the PyTorch peer, alternating.
//!
//! `cnn` is a self-contained bench model with the peer's layout; `resnet18` is the service's
//! own ResNet-18 (`crates/engine/src/resnet.rs`). Both build on the same kernels. Each repeat, like one run of the peer, builds a
//! fresh model, trains one warm-up epoch and times the next one.

use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use super::peer::Peer;
use super::{BenchArgs, median};
use engine::Optimizer;
use kernels::{self, Conv2dConfig};
use trainserve::domain::OptimizerSpec;
use trainserve::error::{Error, Result};

/// Images of the `cnn` workload (as in the peer).
const CNN_SAMPLES: usize = 1792;
const CLASSES: usize = 10;

/// A model the training loop can step.
pub trait BenchModel {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor>;
    fn vars(&self) -> Vec<Var>;
}

/// Seeded parameters with PyTorch's default initialisation for convolutions and linear
/// layers: uniform in ±1/sqrt(fan_in).
pub struct Init(ChaCha8Rng);

impl Init {
    pub fn new(seed: u64) -> Self {
        Init(ChaCha8Rng::seed_from_u64(seed))
    }

    pub fn uniform(&mut self, shape: &[usize], fan_in: usize) -> candle_core::Result<Var> {
        let bound = 1.0 / (fan_in as f32).sqrt();
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| self.0.random_range(-bound..bound)).collect();
        Var::from_tensor(&Tensor::from_vec(data, shape, &Device::Cpu)?)
    }

    /// `n` standard-normal-ish images (sum of uniforms; the values do not matter for speed).
    pub fn images(&mut self, shape: &[usize]) -> candle_core::Result<Tensor> {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| {
                (0..3)
                    .map(|_| self.0.random_range(-1.0f32..1.0))
                    .sum::<f32>()
            })
            .collect();
        Tensor::from_vec(data, shape, &Device::Cpu)
    }
}

/// `x · wᵀ + b` for `w: [out, in]`.
pub fn linear(x: &Tensor, w: &Var, b: &Var) -> candle_core::Result<Tensor> {
    x.matmul(&w.t()?)?.broadcast_add(b)
}

/// The peer's small CNN: conv3x3(3→32)+ReLU+maxpool2 → conv3x3(32→64)+ReLU+maxpool2 →
/// linear(64·8·8→10).
pub struct SmallCnn {
    c1: (Var, Var),
    c2: (Var, Var),
    fc: (Var, Var),
}

impl SmallCnn {
    pub fn new(init: &mut Init) -> candle_core::Result<Self> {
        Ok(SmallCnn {
            c1: (init.uniform(&[32, 3, 3, 3], 27)?, init.uniform(&[32], 27)?),
            c2: (
                init.uniform(&[64, 32, 3, 3], 288)?,
                init.uniform(&[64], 288)?,
            ),
            fc: (
                init.uniform(&[CLASSES, 64 * 8 * 8], 4096)?,
                init.uniform(&[CLASSES], 4096)?,
            ),
        })
    }
}

impl BenchModel for SmallCnn {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let same = Conv2dConfig {
            padding: 1,
            ..Default::default()
        };
        let h = kernels::conv2d_relu(x, &self.c1.0, Some(&self.c1.1), same)?;
        let h = kernels::max_pool2d(&h, 2, 2, 0)?;
        let h = kernels::conv2d_relu(&h, &self.c2.0, Some(&self.c2.1), same)?;
        let h = kernels::max_pool2d(&h, 2, 2, 0)?;
        linear(&h.flatten_from(1)?, &self.fc.0, &self.fc.1)
    }

    fn vars(&self) -> Vec<Var> {
        [&self.c1, &self.c2, &self.fc]
            .into_iter()
            .flat_map(|(w, b)| [w.clone(), b.clone()])
            .collect()
    }
}

/// Trains `model` on `(x, y)` in batches of `batch` with the service's Adam (lr 1e-3, PyTorch's
/// defaults otherwise): one warm-up epoch, then one timed epoch; returns the timed epoch's
/// samples per second and its last loss.
pub fn train_rate(
    model: &dyn BenchModel,
    x: &Tensor,
    y: &Tensor,
    batch: usize,
) -> candle_core::Result<(f64, f32)> {
    let spec = OptimizerSpec::Adam {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    };
    let params = model
        .vars()
        .into_iter()
        .enumerate()
        .map(|(i, var)| (format!("p{i}"), var))
        .collect();
    let mut adam = Optimizer::new(&spec, params).map_err(candle_core::Error::wrap)?;
    let steps = x.dim(0)? / batch;
    let mut epoch = || -> candle_core::Result<f32> {
        let mut last = f32::NAN;
        for b in 0..steps {
            let xb = x.narrow(0, b * batch, batch)?;
            let yb = y.narrow(0, b * batch, batch)?;
            let loss = candle_nn::loss::cross_entropy(&model.forward(&xb)?, &yb)?;
            let grads = loss.backward()?;
            let grads: Vec<_> = adam
                .params()
                .iter()
                .map(|(_, var)| grads.get(var.as_tensor()).cloned())
                .collect();
            adam.step(&grads, 1e-3).map_err(candle_core::Error::wrap)?;
            last = loss.to_scalar()?;
        }
        Ok(last)
    };
    epoch()?;
    let started = Instant::now();
    let loss = epoch()?;
    Ok((
        (steps * batch) as f64 / started.elapsed().as_secs_f64(),
        loss,
    ))
}

/// Labels `i % 10`, as the peer's.
pub fn labels(n: usize) -> candle_core::Result<Tensor> {
    Tensor::from_vec(
        (0..n).map(|i| (i % CLASSES) as u32).collect::<Vec<_>>(),
        n,
        &Device::Cpu,
    )
}

/// One repeat of the `cnn` workload on our side.
fn cnn_rate(batch: usize) -> candle_core::Result<(f64, f32)> {
    let mut init = Init::new(0);
    let x = init.images(&[CNN_SAMPLES, 3, 32, 32])?;
    let model = SmallCnn::new(&mut init)?;
    train_rate(&model, &x, &labels(CNN_SAMPLES)?, batch)
}

/// Measures a convolutional workload `args.repeats` times on each side, alternating, and
/// prints one JSON line per measurement and a summary with the ratio.
pub fn compare(workload: &str, args: &BenchArgs, peer: Option<&Peer>) -> Result<()> {
    // What a training process should do at startup (see `kernels::keep_freed_memory`).
    kernels::keep_freed_memory();
    let threads = kernels::thread_budget();
    let (batch, peer_extra) = match workload {
        "cnn" => (
            args.batch_size,
            vec!["--batch-size".to_string(), args.batch_size.to_string()],
        ),
        "resnet18" => (super::resnet::BATCH, vec![]),
        other => return Err(Error::Internal(format!("no convnet workload '{other}'"))),
    };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for repeat in 0..args.repeats.max(1) {
        let (rate, loss) = match workload {
            "cnn" => cnn_rate(batch),
            _ => super::resnet::rate(),
        }
        .map_err(|err| Error::Internal(format!("{workload}: {err}")))?;
        println!(
            "{}",
            json!({"peer": "trainserve", "workload": workload, "batch_size": batch, "samples_per_s": rate.round(), "threads": threads, "repeat": repeat, "last_loss": loss})
        );
        ours.push(rate);
        if let Some(peer) = peer {
            for mut line in peer.run(workload, &peer_extra)? {
                if line["workload"] == workload
                    && let Some(rate) = line["samples_per_s"].as_f64()
                {
                    line["repeat"] = json!(repeat);
                    println!("{line}");
                    theirs.push(rate);
                }
            }
        }
    }
    let ours = median(ours);
    let mut summary = json!({"summary": true, "workload": workload, "trainserve_median_samples_per_s": ours.round(), "repeats": args.repeats});
    if !theirs.is_empty() {
        let torch = median(theirs);
        summary["torch_median_samples_per_s"] = json!(torch.round());
        summary["ratio"] = json!((ours / torch * 100.0).round() / 100.0);
    }
    println!("{summary}");
    Ok(())
}

/// `cnn_concurrency`: total training throughput of the `cnn` workload for one job using every
/// core, against two jobs at once, first splitting the cores through the kernels' thread
/// budget, then each asking for all of them (oversubscribed). Median of `args.repeats`.
pub fn concurrency(args: &BenchArgs) -> Result<()> {
    kernels::keep_freed_memory();
    let cores = candle_core::utils::get_num_threads();
    let batch = args.batch_size;
    let run = |jobs: usize, budget: usize| -> Result<f64> {
        let rates: Vec<candle_core::Result<(f64, f32)>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..jobs)
                .map(|_| s.spawn(move || kernels::with_thread_budget(budget, || cnn_rate(batch))))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a benchmark job panicked"))
                .collect()
        });
        let mut total = 0.0;
        for rate in rates {
            total += rate
                .map_err(|err| Error::Internal(format!("cnn: {err}")))?
                .0;
        }
        Ok(total)
    };
    let configs = [
        ("one job, all cores", 1, cores),
        ("two jobs, cores split by budget", 2, (cores / 2).max(1)),
        ("two jobs, each all cores", 2, cores),
    ];
    for (name, jobs, budget) in configs {
        let mut totals = Vec::new();
        for _ in 0..args.repeats.max(1) {
            totals.push(run(jobs, budget)?);
        }
        println!(
            "{}",
            json!({"bench": "cnn_concurrency", "config": name, "jobs": jobs, "budget_per_job": budget,
                   "total_samples_per_s": median(totals.clone()).round(), "runs": totals.iter().map(|t| t.round()).collect::<Vec<_>>()})
        );
    }
    Ok(())
}
