//! The peer's MLP workloads through trainserve's own code: the training loop (`engine::fit`)
//! and the model's forward pass, on the same synthetic data shapes.

use std::time::Instant;

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use super::BenchArgs;
use super::median;
use super::peer::Peer;
use engine::fused::FusedMlp;
use engine::{Interrupter, Mlp, PreparedData, Preprocessing, SplitTensors, fit};
use trainserve::domain::{JobSpec, parse_json};
use trainserve::error::{Error, Result};

const N: usize = 1792;
const INPUTS: usize = 64;
const CLASSES: usize = 10;

/// Measures one workload `args.repeats` times on each side, alternating, and prints the ratio.
pub fn compare(workload: &str, args: &BenchArgs, peer: Option<&Peer>) -> Result<()> {
    let sub_workloads: Vec<String> = if workload == "predict" {
        vec!["predict_bs1".into(), "predict_bs64".into()]
    } else {
        vec![workload.to_string()]
    };
    let mut ours: Vec<Vec<f64>> = vec![Vec::new(); sub_workloads.len()];
    let mut theirs: Vec<Vec<f64>> = vec![Vec::new(); sub_workloads.len()];
    let threads = candle_core::utils::get_num_threads();
    for repeat in 0..args.repeats.max(1) {
        let rates = match workload {
            "mlp" => vec![train_rate(args, args.batch_size, N)?],
            "mlp_bs1" => vec![train_rate(args, 1, 300)?],
            _ => vec![predict_rate(args, 1)?, predict_rate(args, 64)?],
        };
        for (i, rate) in rates.into_iter().enumerate() {
            println!(
                "{}",
                json!({"peer": "trainserve", "workload": sub_workloads[i], "samples_per_s": rate.round(), "threads": threads, "repeat": repeat})
            );
            ours[i].push(rate);
        }
        if let Some(peer) = peer {
            let extra = vec![
                "--depth".to_string(),
                args.depth.to_string(),
                "--width".to_string(),
                args.width.to_string(),
                "--batch-size".to_string(),
                args.batch_size.to_string(),
                "--threads".to_string(),
                args.threads.to_string(),
            ];
            for line in peer.run(workload, &extra)? {
                let name = line["workload"].as_str().unwrap_or_default().to_string();
                if let (Some(i), Some(rate)) = (
                    sub_workloads.iter().position(|w| *w == name),
                    line["samples_per_s"].as_f64(),
                ) {
                    let mut line = line.clone();
                    line["repeat"] = json!(repeat);
                    println!("{line}");
                    theirs[i].push(rate);
                }
            }
        }
    }
    for (i, name) in sub_workloads.iter().enumerate() {
        let ours = median(ours[i].clone());
        let mut summary = json!({"summary": true, "workload": name, "trainserve_median_samples_per_s": ours.round(), "repeats": args.repeats});
        if !theirs[i].is_empty() {
            let torch = median(theirs[i].clone());
            summary["torch_median_samples_per_s"] = json!(torch.round());
            summary["ratio"] = json!((ours / torch * 100.0).round() / 100.0);
        }
        println!("{summary}");
    }
    Ok(())
}

fn spec(args: &BenchArgs, batch_size: usize) -> Result<JobSpec> {
    let text = json!({
        "dataset": "bench",
        "data": {"standardize": false},
        "model": {"kind": "mlp", "depth": args.depth, "width": args.width, "activation": "relu"},
        "training": {"optimizer": {"kind": "adam", "lr": 0.001}, "epochs": 2, "batch_size": batch_size, "seed": 0}
    });
    let spec: JobSpec = parse_json(text.to_string().as_bytes())?;
    spec.validate()?;
    Ok(spec)
}

fn synthetic(rows: usize) -> Result<SplitTensors> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let x: Vec<f32> = (0..rows * INPUTS)
        .map(|_| rng.random_range(-2.0f32..2.0))
        .collect();
    let y: Vec<u32> = (0..rows).map(|i| (i % CLASSES) as u32).collect();
    Ok(SplitTensors {
        x: Tensor::from_vec(x, (rows, INPUTS), &Device::Cpu)?,
        y: Tensor::from_vec(y, rows, &Device::Cpu)?,
        len: rows,
    })
}

fn data(rows: usize) -> Result<PreparedData> {
    Ok(PreparedData {
        train: synthetic(rows)?,
        val: synthetic(16)?,
        test: None,
        n_classes: CLASSES,
        preprocessing: Preprocessing {
            feature_names: (0..INPUTS).map(|i| format!("x{i}")).collect(),
            standardizer: None,
            labels: (0..CLASSES).map(|c| json!(c)).collect(),
            image_shape: None,
            pixel_max: 1.0,
            image: None,
        },
        augment: None,
    })
}

/// Training samples per second of the second (post-warm-up) epoch of `engine::fit`.
fn train_rate(args: &BenchArgs, batch_size: usize, rows: usize) -> Result<f64> {
    let spec = spec(args, batch_size)?;
    let data = data(rows)?;
    let mut rates = Vec::new();
    fit(
        &spec,
        &data,
        engine::Start::Fresh,
        &Device::Cpu,
        &Interrupter::new(),
        &mut |_| {},
        &mut |report| {
            rates.push(report.metrics.samples_per_sec);
            Ok(())
        },
    )
    .map_err(|err| Error::Internal(err.to_string()))?;
    rates
        .last()
        .copied()
        .ok_or_else(|| Error::Internal("no epoch was measured".into()))
}

/// Forward passes per second (times the batch) of the workload's model in evaluation mode,
/// after 100 warm-up passes, over one second, as the peer measures it.
fn predict_rate(args: &BenchArgs, batch: usize) -> Result<f64> {
    let spec = spec(args, batch)?;
    let trainserve::domain::ModelSpec::Mlp(mlp) = &spec.model else {
        return Err(Error::Internal("the bench workloads are MLPs".into()));
    };
    let model = Mlp::seeded(
        mlp,
        INPUTS,
        CLASSES,
        &mut ChaCha8Rng::seed_from_u64(0),
        &Device::Cpu,
    )?;
    // The network the prediction service serves for this spec (see `predict`).
    let net = FusedMlp::from_state(mlp, INPUTS, CLASSES, &model.state()?, 1)?;
    let x = synthetic(batch)?.x.flatten_all()?.to_vec1::<f32>()?;
    for _ in 0..100 {
        std::hint::black_box(net.logits(&x, batch));
    }
    let started = Instant::now();
    let mut passes = 0usize;
    while started.elapsed().as_secs_f64() < 1.0 {
        std::hint::black_box(net.logits(&x, batch));
        passes += 1;
    }
    Ok((passes * batch) as f64 / started.elapsed().as_secs_f64())
}
