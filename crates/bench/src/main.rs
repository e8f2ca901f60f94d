//! `trainserve-bench`: throughput of trainserve's own training and inference code on the
//! workloads of the PyTorch peer (`../shared/bench/peer_torch.py`), run side by side in one
//! invocation and alternating, plus the cost of the service over the bare training loop.
//! Everything prints JSON lines; build with `--release` for any timing:
//! `cargo run --release -p trainserve-bench -- --workload mlp,cnn --repeats 5`.
//!
//! A binary of its own, so that the production binary carries none of it. Map: `workloads`
//! (MLP training and predict), `convnets` and `resnet` (CNN and ResNet-18 training),
//! `conv_micro` (single ops and ResNet-18's convolutions), `overhead`, `service_concurrency`
//! and `scratch_service` (the service around the loop), `peer` (the PyTorch side); `serve`
//! (predictions under load: `service_process` starts the release binary, `load` is the load
//! generator, `serve_report` the figures and targets).

mod conv_micro;
mod convnets;
mod load;
mod overhead;
mod peer;
mod resnet;
mod scratch_service;
mod serve;
mod serve_report;
mod service_concurrency;
mod service_process;
mod workloads;

use std::path::PathBuf;

use serde_json::json;

use clap::Parser;
use trainserve::error::{Error, Result};
use trainserve::startup::configure_process;

/// Options of `trainserve-bench`.
#[derive(Clone, Debug, Parser)]
#[command(
    version,
    about = "Benchmarks trainserve side by side with its PyTorch peer"
)]
pub struct BenchArgs {
    /// Comma-separated workloads: mlp, mlp_bs1, cnn, resnet18, predict, overhead,
    /// conv2d_micro, ops_micro, resnet18_convs, cnn_concurrency, service_concurrency, serve,
    /// or all (= mlp,mlp_bs1,cnn,resnet18,predict).
    #[arg(long, default_value = "all")]
    pub workload: String,
    /// Timed repeats per side (medians are reported).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Hidden layers of the MLP workloads.
    #[arg(long, default_value_t = 6)]
    pub depth: usize,
    /// Units per hidden layer of the MLP workloads.
    #[arg(long, default_value_t = 32)]
    pub width: usize,
    /// Batch size of the `mlp` workload.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Epochs of the `overhead` workload (digits MLP 2x64, Adam 1e-3, batch 32); at most 3 of
    /// them for `service_concurrency`.
    #[arg(long, default_value_t = 30)]
    pub epochs: u32,
    /// Python with torch installed, for the peer (skipped when missing).
    #[arg(long, default_value = ".venv-peer/bin/python")]
    pub peer_python: String,
    /// The peer script.
    #[arg(long, default_value = "../shared/bench/peer_torch.py")]
    pub peer_script: String,
    /// Run only trainserve's side.
    #[arg(long)]
    pub no_peer: bool,
    /// Threads for both sides (trainserve's RAYON_NUM_THREADS and torch.set_num_threads);
    /// 0 keeps each side's default (the physical cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// `serve`: measured seconds of each scenario (each after a warm-up of a quarter of it,
    /// at most a second).
    #[arg(long, default_value_t = 8.0)]
    pub serve_seconds: f64,
    /// `serve`: seconds of the soak (single rows, 16 connections) whose resident memory is
    /// compared before and after.
    #[arg(long, default_value_t = 60.0)]
    pub soak_seconds: f64,
    /// `serve`: the `trainserve` binary to start; by default the one beside this binary,
    /// built first when run through `cargo run`.
    #[arg(long)]
    pub service_bin: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    let args = BenchArgs::parse();
    configure_process((args.threads > 0).then_some(args.threads));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("trainserve-bench: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("trainserve-bench: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs the chosen workloads and prints JSON lines: one per measurement, one summary per workload.
async fn run(args: BenchArgs) -> Result<()> {
    let mut names: Vec<String> = args
        .workload
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    if names == ["all"] {
        names = ["mlp", "mlp_bs1", "cnn", "resnet18", "predict"]
            .map(String::from)
            .into();
    }
    let peer = if args.no_peer {
        None
    } else {
        peer::Peer::find(&args.peer_python, &args.peer_script)
    };
    if peer.is_none() && !args.no_peer {
        println!(
            "{}",
            json!({"note": "peer not found; see README (Benchmarks) to install it", "python": args.peer_python, "script": args.peer_script})
        );
    }
    for name in names {
        match name.as_str() {
            "overhead" => overhead::run(args.repeats, args.epochs).await?,
            "serve" => {
                serve::run(&serve::ServeOptions {
                    seconds: args.serve_seconds,
                    soak_seconds: args.soak_seconds,
                    service_bin: args.service_bin.clone(),
                })
                .await?
            }
            "service_concurrency" => {
                service_concurrency::run(args.repeats, args.epochs.min(3), args.batch_size).await?
            }
            "mlp" | "mlp_bs1" | "predict" => {
                let args = args.clone();
                let peer = peer.clone();
                tokio::task::spawn_blocking(move || {
                    workloads::compare(&name, &args, peer.as_ref())
                })
                .await
                .map_err(|err| Error::internal("benchmark", err))??;
            }
            "cnn" | "resnet18" => {
                let args = args.clone();
                let peer = peer.clone();
                tokio::task::spawn_blocking(move || convnets::compare(&name, &args, peer.as_ref()))
                    .await
                    .map_err(|err| Error::internal("benchmark", err))??;
            }
            "conv2d_micro" | "ops_micro" | "resnet18_convs" | "cnn_concurrency" => {
                let args = args.clone();
                let micro = match name.as_str() {
                    "ops_micro" => conv_micro::ops,
                    "cnn_concurrency" => convnets::concurrency,
                    "resnet18_convs" => conv_micro::resnet_convs,
                    _ => conv_micro::run,
                };
                tokio::task::spawn_blocking(move || micro(&args))
                    .await
                    .map_err(|err| Error::internal("benchmark", err))??;
            }
            other => {
                return Err(Error::invalid(
                    "workload",
                    format!(
                        "'{other}'; valid: mlp, mlp_bs1, cnn, resnet18, predict, overhead, conv2d_micro, ops_micro, resnet18_convs, cnn_concurrency, service_concurrency, serve, all"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The median of some measurements.
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}
