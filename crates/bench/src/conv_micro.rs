//! `conv2d_micro`: GFLOP/s of one convolution's forward pass and forward plus both backward
//! passes (input and weight gradients) at the issue's shape (64×32×16×16 input, 64 output
//! channels, 3×3, padding 1), for trainserve's kernels, candle's built-in conv2d (with the
//! ops its backprop uses) and, when the peer's Python is installed, PyTorch.

use std::process::Command;
use std::time::Instant;

use candle_core::{Device, Tensor};
use serde_json::{Value, json};

use super::convnets::Init;
use super::{BenchArgs, median};
use kernels::{self, Conv2dConfig};
use trainserve::error::{Error, Result};

const N: usize = 64;
const C_IN: usize = 32;
const HW: usize = 16;
const C_OUT: usize = 64;
const K: usize = 3;

/// Multiply-adds ×2 of one pass (each of forward, input and weight gradient costs the same).
fn flops_per_pass() -> f64 {
    2.0 * (N * C_OUT * C_IN * K * K * HW * HW) as f64
}

/// Median seconds per call of `f` over `repeats` rounds of at least 0.3 s each.
fn time(repeats: usize, mut f: impl FnMut() -> candle_core::Result<()>) -> Result<f64> {
    let run = |f: &mut dyn FnMut() -> candle_core::Result<()>| -> Result<f64> {
        let started = Instant::now();
        let mut calls = 0;
        while calls < 3 || started.elapsed().as_secs_f64() < 0.3 {
            f().map_err(|err| Error::Internal(err.to_string()))?;
            calls += 1;
        }
        Ok(started.elapsed().as_secs_f64() / calls as f64)
    };
    run(&mut f)?;
    let mut rounds = Vec::new();
    for _ in 0..repeats.max(1) {
        rounds.push(run(&mut f)?);
    }
    Ok(median(rounds))
}

const TORCH: &str = r#"
import json, sys, time, torch
n, ci, hw, co, k, repeats = map(int, sys.argv[1:7])
x = torch.randn(n, ci, hw, hw, requires_grad=True)
conv = torch.nn.Conv2d(ci, co, k, padding=k // 2, bias=False)
dy = torch.randn(n, co, hw, hw)
def med(f):
    f()
    rounds = []
    for _ in range(repeats):
        t, calls = time.perf_counter(), 0
        while calls < 3 or time.perf_counter() - t < 0.3:
            f(); calls += 1
        rounds.append((time.perf_counter() - t) / calls)
    return sorted(rounds)[len(rounds) // 2]
def fwd():
    with torch.no_grad(): conv(x)
def both():
    x.grad = None; conv.weight.grad = None
    conv(x).backward(dy)
print(json.dumps({"forward_s": med(fwd), "forward_backward_s": med(both), "threads": torch.get_num_threads()}))
"#;

fn torch(args: &BenchArgs) -> Option<Value> {
    if args.no_peer || !std::path::Path::new(&args.peer_python).exists() {
        return None;
    }
    let output = Command::new(&args.peer_python)
        .args(["-c", TORCH])
        .args([N, C_IN, HW, C_OUT, K, args.repeats.max(1)].map(|v| v.to_string()))
        .output()
        .ok()?;
    serde_json::from_slice(&output.stdout).ok()
}

/// Runs the micro-benchmark and prints one JSON line per implementation.
pub fn run(args: &BenchArgs) -> Result<()> {
    let dev = Device::Cpu;
    let mut init = Init::new(0);
    let x = init.images(&[N, C_IN, HW, HW])?;
    let w = init.uniform(&[C_OUT, C_IN, K, K], C_IN * K * K)?;
    let w = w.as_tensor();
    let dy = Tensor::randn(0f32, 1.0, (N, C_OUT, HW, HW), &dev)?;
    let cfg = Conv2dConfig {
        padding: K / 2,
        ..Default::default()
    };
    let pad = K / 2;
    let flops = flops_per_pass();
    let report = |name: &str,
                  threads: usize,
                  fwd: f64,
                  dx: Option<f64>,
                  dw: Option<f64>,
                  both: f64| {
        let mut line = json!({
            "bench": "conv2d_micro", "impl": name, "shape": [N, C_IN, HW, HW], "c_out": C_OUT, "kernel": K,
            "forward_ms": (fwd * 1e4).round() / 10.0,
            "forward_gflops": (flops / fwd / 1e8).round() / 10.0,
            "forward_backward_ms": (both * 1e4).round() / 10.0,
            "forward_backward_gflops": (3.0 * flops / both / 1e8).round() / 10.0,
            "threads": threads,
        });
        if let (Some(dx), Some(dw)) = (dx, dw) {
            line["input_grad_gflops"] = json!((flops / dx / 1e8).round() / 10.0);
            line["weight_grad_gflops"] = json!((flops / dw / 1e8).round() / 10.0);
        }
        println!("{line}");
    };

    let ours_fwd = time(args.repeats, || kernels::conv2d(&x, w, None, cfg).map(drop))?;
    let ours_dx = time(args.repeats, || {
        kernels::conv2d_input_grad(&dy, w, (HW, HW), cfg).map(drop)
    })?;
    let ours_dw = time(args.repeats, || {
        kernels::conv2d_weight_grad(&x, &dy, (K, K), cfg).map(drop)
    })?;
    let threads = kernels::thread_budget();
    report(
        "trainserve",
        threads,
        ours_fwd,
        Some(ours_dx),
        Some(ours_dw),
        ours_fwd + ours_dx + ours_dw,
    );

    // What candle's backprop runs for a Conv2D node (backprop.rs): conv_transpose2d for the
    // input and a transposed conv2d for the weight.
    let candle_fwd = time(args.repeats, || x.conv2d(w, pad, 1, 1, 1).map(drop))?;
    let candle_dx = time(args.repeats, || {
        dy.conv_transpose2d(w, pad, 0, 1, 1).map(drop)
    })?;
    let candle_dw = time(args.repeats, || {
        x.transpose(0, 1)?
            .conv2d(&dy.transpose(0, 1)?, pad, 1, 1, 1)?
            .transpose(0, 1)
            .map(drop)
    })?;
    report(
        "candle",
        candle_core::utils::get_num_threads(),
        candle_fwd,
        Some(candle_dx),
        Some(candle_dw),
        candle_fwd + candle_dx + candle_dw,
    );

    match torch(args) {
        Some(t) => {
            let (Some(fwd), Some(both)) =
                (t["forward_s"].as_f64(), t["forward_backward_s"].as_f64())
            else {
                return Err(Error::Internal(format!("unexpected torch output: {t}")));
            };
            let threads = t["threads"].as_u64().unwrap_or(0) as usize;
            report("torch", threads, fwd, None, None, both);
        }
        None if !args.no_peer => {
            println!(
                "{}",
                json!({"note": "torch not run (peer python missing or failed)"})
            )
        }
        None => {}
    }
    Ok(())
}

/// `ops_micro`: milliseconds per call of each kernel at the `cnn` and `resnet18` workloads'
/// activation sizes, beside candle's counterpart where it has one: where a step's time goes
/// outside the GEMMs.
pub fn ops(args: &BenchArgs) -> Result<()> {
    let mut init = Init::new(1);
    let big = init.images(&[64, 32, 32, 32])?;
    let stem = init.images(&[32, 64, 32, 32])?;
    let mid = init.images(&[32, 64, 16, 16])?;
    let gamma = Tensor::ones(64, candle_core::DType::F32, &Device::Cpu)?;
    let beta = Tensor::zeros(64, candle_core::DType::F32, &Device::Cpu)?;
    let line = |op: &str, shape: &[usize], ours: f64, candle: Option<f64>| {
        let mut l = json!({"bench": "ops_micro", "op": op, "shape": shape, "trainserve_ms": (ours * 1e5).round() / 100.0});
        if let Some(c) = candle {
            l["candle_ms"] = json!((c * 1e5).round() / 100.0);
        }
        println!("{l}");
    };
    let r = args.repeats;
    let relu_y = kernels::relu(&big)?;
    line(
        "relu",
        big.dims(),
        time(r, || kernels::relu(&big).map(drop))?,
        Some(time(r, || big.relu().map(drop))?),
    );
    line(
        "max_pool2d 2/2",
        big.dims(),
        time(r, || kernels::max_pool2d(&big, 2, 2, 0).map(drop))?,
        Some(time(r, || big.max_pool2d(2).map(drop))?),
    );
    line(
        "max_pool2d 2/2 one thread",
        big.dims(),
        kernels::with_thread_budget(1, || {
            time(r, || kernels::max_pool2d(&big, 2, 2, 0).map(drop))
        })?,
        None,
    );
    line(
        "max_pool2d 3/2 pad 1",
        stem.dims(),
        time(r, || kernels::max_pool2d(&stem, 3, 2, 1).map(drop))?,
        None,
    );
    line(
        "channel_sum",
        big.dims(),
        time(r, || kernels::channel_sum(&big).map(drop))?,
        Some(time(r, || big.sum((0, 2, 3)).map(drop))?),
    );
    line(
        "batch_norm_train",
        mid.dims(),
        time(r, || {
            kernels::batch_norm_train(&mid, &gamma, &beta, 1e-5, kernels::Epilogue::None).map(drop)
        })?,
        None,
    );
    line(
        "add",
        big.dims(),
        time(r, || (&big + &relu_y).map(drop))?,
        None,
    );
    line(
        "zeros_like",
        big.dims(),
        time(r, || big.zeros_like().map(drop))?,
        None,
    );
    Ok(())
}

/// `resnet18_convs`: per distinct convolution of the `resnet18` workload (batch 32, 64×64),
/// milliseconds and GFLOP/s of the forward pass and of both gradients, times how often the
/// shape occurs in the network: where a ResNet step's GEMM time goes.
pub fn resnet_convs(args: &BenchArgs) -> Result<()> {
    // (c_in, c_out, kernel, stride, input size, occurrences)
    const CONVS: [(usize, usize, usize, usize, usize, usize); 10] = [
        (3, 64, 7, 2, 64, 1),
        (64, 64, 3, 1, 16, 4),
        (64, 128, 3, 2, 16, 1),
        (128, 128, 3, 1, 8, 3),
        (64, 128, 1, 2, 16, 1),
        (128, 256, 3, 2, 8, 1),
        (256, 256, 3, 1, 4, 3),
        (128, 256, 1, 2, 8, 1),
        (256, 512, 3, 2, 4, 1),
        (512, 512, 3, 1, 2, 3),
    ];
    let mut init = Init::new(2);
    let mut total = 0.0;
    for (c_in, c_out, k, stride, size, count) in CONVS {
        let x = init.images(&[32, c_in, size, size])?;
        let w = init.uniform(&[c_out, c_in, k, k], c_in * k * k)?;
        let cfg = Conv2dConfig {
            stride,
            padding: k / 2,
            dilation: 1,
        };
        let y = kernels::conv2d(&x, &w, None, cfg)?;
        let (_, _, oh, ow) = y.dims4()?;
        let dy = y.ones_like()?;
        let flops = 2.0 * (32 * c_out * c_in * k * k * oh * ow) as f64;
        let fwd = time(args.repeats, || {
            kernels::conv2d(&x, &w, None, cfg).map(drop)
        })?;
        let dx = time(args.repeats, || {
            kernels::conv2d_input_grad(&dy, &w, (size, size), cfg).map(drop)
        })?;
        let dw = time(args.repeats, || {
            kernels::conv2d_weight_grad(&x, &dy, (k, k), cfg).map(drop)
        })?;
        // The first convolution's input gradient is never needed.
        let step = count as f64 * (fwd + dw + if c_in == 3 { 0.0 } else { dx });
        total += step;
        let gf = |t: f64| (flops / t / 1e8).round() / 10.0;
        println!(
            "{}",
            json!({"bench": "resnet18_convs", "c_in": c_in, "c_out": c_out, "kernel": k, "stride": stride, "input": size,
                   "count": count, "forward_gflops": gf(fwd), "input_grad_gflops": gf(dx), "weight_grad_gflops": gf(dw),
                   "ms_per_step": (step * 1e4).round() / 10.0})
        );
    }
    println!(
        "{}",
        json!({"bench": "resnet18_convs", "summary": true, "conv_ms_per_step": (total * 1e4).round() / 10.0})
    );
    Ok(())
}
