//! The peer's convolutional workloads (`cnn`, `resnet18`) trained with trainserve's CPU
//! kernels (`train::kernels`), side by side with the PyTorch peer, alternating.
//!
//! `cnn` is a self-contained bench model with the peer's layout; `resnet18` is the service's
//! own ResNet-18 (`src/train/resnet.rs`). Both build on the same kernels. Each repeat, like one run of the peer, builds a
//! fresh model, trains one warm-up epoch and times the next one.

use std::cell::RefCell;
use std::time::Instant;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, Device, InplaceOp2, Layout, Tensor, Var, bail};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde_json::json;

use super::peer::Peer;
use super::{BenchArgs, median};
use crate::error::{Error, Result};
use crate::train::kernels::{self, Conv2dConfig};

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

/// Adam (PyTorch's, no weight decay) as one fused in-place pass per parameter, so that the
/// optimizer of an 11M-parameter ResNet costs one sweep over memory rather than a dozen
/// tensor ops. (A bench-local optimizer: the service's own lives in `train::optim`.)
pub struct Adam {
    vars: Vec<Var>,
    moments: Vec<RefCell<(Vec<f32>, Vec<f32>)>>,
    lr: f32,
    step: i32,
}

struct AdamStep<'a> {
    moments: &'a RefCell<(Vec<f32>, Vec<f32>)>,
    lr: f32,
    correction1: f32,
    correction2: f32,
    threads: usize,
}

const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const EPS: f32 = 1e-8;

impl Adam {
    pub fn new(vars: Vec<Var>, lr: f32) -> Self {
        let moments = vars
            .iter()
            .map(|v| {
                let n = v.elem_count();
                RefCell::new((vec![0.0; n], vec![0.0; n]))
            })
            .collect();
        Adam {
            vars,
            moments,
            lr,
            step: 0,
        }
    }

    pub fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        self.step += 1;
        let threads = kernels::thread_budget();
        for (var, moments) in self.vars.iter().zip(&self.moments) {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            var.inplace_op2(
                &g.contiguous()?,
                &AdamStep {
                    moments,
                    lr: self.lr,
                    correction1: 1.0 - BETA1.powi(self.step),
                    correction2: 1.0 - BETA2.powi(self.step),
                    threads,
                },
            )?;
        }
        Ok(())
    }
}

impl InplaceOp2 for AdamStep<'_> {
    fn name(&self) -> &'static str {
        "bench-adam"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<()> {
        let (CpuStorage::F32(p), CpuStorage::F32(g)) = (s1, s2) else {
            bail!("adam: f32 parameters expected");
        };
        let (Some((p0, p1)), Some((g0, g1))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            bail!("adam: contiguous tensors expected");
        };
        let (p, g) = (&mut p[p0..p1], &g[g0..g1]);
        let mut moments = self.moments.borrow_mut();
        let (m, v) = &mut *moments;
        if p.len() != g.len() || m.len() != p.len() {
            bail!("adam: {} parameters, {} gradients", p.len(), g.len());
        }
        let (lr, c1, c2) = (self.lr, self.correction1, self.correction2);
        let update = |p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]| {
            for (((p, g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                *m = BETA1 * *m + (1.0 - BETA1) * g;
                *v = BETA2 * *v + (1.0 - BETA2) * g * g;
                *p -= lr * (*m / c1) / ((*v / c2).sqrt() + EPS);
            }
        };
        let chunk = p.len().div_ceil(self.threads.max(1)).max(1 << 16);
        if p.len() <= chunk {
            update(p, g, m, v);
        } else {
            p.par_chunks_mut(chunk)
                .zip(g.par_chunks(chunk))
                .zip(m.par_chunks_mut(chunk))
                .zip(v.par_chunks_mut(chunk))
                .for_each(|(((p, g), m), v)| update(p, g, m, v));
        }
        Ok(())
    }
}

/// Trains `model` on `(x, y)` in batches of `batch` with Adam 1e-3: one warm-up epoch, then
/// one timed epoch; returns the timed epoch's samples per second and its last loss.
pub fn train_rate(
    model: &dyn BenchModel,
    x: &Tensor,
    y: &Tensor,
    batch: usize,
) -> candle_core::Result<(f64, f32)> {
    let mut adam = Adam::new(model.vars(), 1e-3);
    let steps = x.dim(0)? / batch;
    let mut epoch = || -> candle_core::Result<f32> {
        let mut last = f32::NAN;
        for b in 0..steps {
            let xb = x.narrow(0, b * batch, batch)?;
            let yb = y.narrow(0, b * batch, batch)?;
            let loss = candle_nn::loss::cross_entropy(&model.forward(&xb)?, &yb)?;
            adam.step(&loss.backward()?)?;
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
