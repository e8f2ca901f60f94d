//! `service_concurrency`: total training throughput of the service running one CNN job against
//! two at once (two worker slots, each job on its own share of the cores), through the whole
//! service: queue, worker pool, checkpoints, database.

use std::time::Instant;

use serde_json::json;

use super::median;
use super::scratch_service::ScratchService;
use trainserve::domain::{JobSpec, parse_json};
use trainserve::error::Result;

fn spec(seed: u32, epochs: u32, batch_size: usize) -> Result<JobSpec> {
    let text = format!(
        r#"{{"dataset": "shapes", "model": {{"kind": "cnn"}},
            "training": {{"optimizer": {{"kind": "adam", "lr": 0.001}}, "epochs": {epochs},
                          "batch_size": {batch_size}, "seed": {seed}}}}}"#
    );
    let spec: JobSpec = parse_json(text.as_bytes())?;
    spec.validate()?;
    Ok(spec)
}

/// Trains `jobs` copies of the workload on a fresh service with as many worker slots, and
/// returns the total training samples per second of wall time (submit to last finish).
async fn total_rate(jobs: usize, epochs: u32, batch_size: usize) -> Result<f64> {
    let service = ScratchService::start(jobs).await?;
    let specs = (0..jobs)
        .map(|seed| spec(seed as u32, epochs, batch_size))
        .collect::<Result<Vec<_>>>()?;
    let started = Instant::now();
    let ids = service.train_all(specs).await?;
    let seconds = started.elapsed().as_secs_f64();
    let mut samples = 0.0;
    for id in ids {
        // Steps × batch size: both sides count the same way, and the ratio is what matters.
        for epoch in service.state.store.list_epochs(id).await? {
            samples += (epoch.steps as usize * batch_size) as f64;
        }
    }
    service.stop().await;
    Ok(samples / seconds)
}

/// Runs one job, then two at once, alternating, `repeats` times; prints each run and medians.
pub async fn run(repeats: usize, epochs: u32, batch_size: usize) -> Result<()> {
    let (mut one, mut two) = (Vec::new(), Vec::new());
    for repeat in 0..repeats.max(1) {
        for (jobs, rates) in [(1, &mut one), (2, &mut two)] {
            let rate = total_rate(jobs, epochs, batch_size).await?;
            println!(
                "{}",
                json!({"bench": "service_concurrency", "jobs": jobs, "repeat": repeat, "total_samples_per_s": rate.round()})
            );
            rates.push(rate);
        }
    }
    let (one, two) = (median(one), median(two));
    println!(
        "{}",
        json!({"bench": "service_concurrency", "summary": true, "epochs": epochs, "repeats": repeats,
               "one_job_samples_per_s": one.round(), "two_jobs_total_samples_per_s": two.round(),
               "two_over_one": (two / one * 100.0).round() / 100.0})
    );
    Ok(())
}
