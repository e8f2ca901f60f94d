//! The `overhead` benchmark: what the service costs over the bare training loop, on the same
//! spec, alternating the two and reporting medians (these machines are noisy).

use std::time::Instant;

use candle_core::Device;
use serde_json::json;

use data::digits;
use engine::{EpochMetrics, Interrupter, fit, prepare};
use trainserve::domain::{JobSpec, parse_json};
use trainserve::error::{Error, Result};

use super::median;
use super::scratch_service::ScratchService;

fn spec(epochs: u32) -> Result<JobSpec> {
    let text = format!(
        r#"{{"name": "bench-digits-mlp-2x64", "dataset": "digits",
            "model": {{"kind": "mlp", "depth": 2, "width": 64, "activation": "relu"}},
            "training": {{"optimizer": {{"kind": "adam", "lr": 0.001}}, "epochs": {epochs}, "batch_size": 32, "seed": 7}}}}"#
    );
    let spec: JobSpec = parse_json(text.as_bytes())?;
    spec.validate()?;
    Ok(spec)
}

/// Runs the service-overhead benchmark and prints one JSON line per measurement and a summary.
pub async fn run(repeats: usize, epochs: u32) -> Result<()> {
    let spec = spec(epochs)?;
    let (mut bare, mut service) = (Vec::new(), Vec::new());
    for repeat in 0..repeats.max(1) {
        let (seconds, test_acc) = bare_loop(&spec).await?;
        println!(
            "{}",
            json!({"bench": "service_overhead", "side": "bare_loop", "repeat": repeat, "seconds": seconds, "test_acc": test_acc})
        );
        bare.push((seconds, test_acc));
        let (seconds, test_acc) = through_service(&spec).await?;
        println!(
            "{}",
            json!({"bench": "service_overhead", "side": "service", "repeat": repeat, "seconds": seconds, "test_acc": test_acc})
        );
        service.push((seconds, test_acc));
    }
    let bare_median = median(bare.iter().map(|m| m.0).collect());
    let service_median = median(service.iter().map(|m| m.0).collect());
    println!(
        "{}",
        json!({
            "bench": "service_overhead", "summary": true, "epochs": epochs, "repeats": repeats,
            "bare_loop_median_seconds": bare_median, "service_median_seconds": service_median,
            "overhead_percent": 100.0 * (service_median / bare_median - 1.0),
            "bare_loop_test_acc": bare[0].1, "service_test_acc": service[0].1,
        })
    );
    Ok(())
}

/// The training loop alone: prepare the data, fit, keep the test accuracy of the best epoch.
async fn bare_loop(spec: &JobSpec) -> Result<(f64, f64)> {
    let spec = spec.clone();
    tokio::task::spawn_blocking(move || -> Result<(f64, f64)> {
        let started = Instant::now();
        let table = digits();
        let data = prepare(&table, &spec.data, &Device::Cpu)?;
        let mut best: Option<EpochMetrics> = None;
        fit(
            &spec,
            &data,
            engine::Start::Fresh,
            &Device::Cpu,
            &Interrupter::new(),
            &mut |_| {},
            &mut |report| {
                if best
                    .as_ref()
                    .is_none_or(|b| report.metrics.val_acc > b.val_acc)
                {
                    best = Some(report.metrics);
                }
                Ok(())
            },
        )
        .map_err(|err| Error::Internal(err.to_string()))?;
        Ok((
            started.elapsed().as_secs_f64(),
            best.and_then(|b| b.test_acc).unwrap_or(0.0),
        ))
    })
    .await
    .map_err(|err| Error::internal("bare loop", err))?
}

/// The same spec submitted to a fresh service: queue, worker thread, checkpoints, database.
async fn through_service(spec: &JobSpec) -> Result<(f64, f64)> {
    let service = ScratchService::start(1).await?;
    let started = Instant::now();
    let ids = service.train_all(vec![spec.clone()]).await?;
    let seconds = started.elapsed().as_secs_f64();
    let state = &service.state;
    let row = state.jobs.get(ids[0]).await?;
    let best = match row.best_epoch {
        Some(epoch) => state.store.get_epoch(row.id, epoch).await?,
        None => None,
    };
    service.stop().await;
    Ok((seconds, best.and_then(|b| b.test_acc).unwrap_or(0.0)))
}
