//! Writes one chart of each kind for a person to look at (an ignored test).

use super::*;

/// Writes one chart of each kind to `$PLOT_DIR` (default /tmp/trainserve-plots) for a look:
/// `cargo test --lib render_samples -- --ignored`.
#[test]
#[ignore = "writes files for a person to look at"]
fn render_samples() {
    use serde_json::json;

    use crate::analysis::{Comparison, TrialResult, compare_job, summarize_sweep};
    use crate::domain::{Goal, JobId, RankMetric};
    use crate::store::EpochRow;

    let dir = std::env::var("PLOT_DIR").unwrap_or_else(|_| "/tmp/trainserve-plots".into());
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, svg: Vec<u8>, png: Vec<u8>| {
        std::fs::write(format!("{dir}/{name}.svg"), svg).unwrap();
        std::fs::write(format!("{dir}/{name}.png"), png).unwrap();
    };
    let run = |n: i64, speed: f64, overfit: bool| -> Vec<EpochRow> {
        (1..=n)
            .map(|i| {
                let t = i as f64;
                let train_loss = 2.3 * (-speed * t).exp() + 0.01;
                let val_loss = train_loss * 1.1
                    + if overfit {
                        0.004 * t * t / n as f64
                    } else {
                        0.02
                    };
                EpochRow {
                    epoch: i,
                    train_loss,
                    train_acc: 1.0 - train_loss / 2.5,
                    val_loss,
                    val_acc: 1.0 - val_loss / 2.4 - 0.02,
                    test_loss: Some(val_loss * 1.05),
                    test_acc: Some(1.0 - val_loss / 2.3 - 0.03),
                    lr: 0.001,
                    steps: 10,
                    train_eval_loss: Some(train_loss),
                    train_eval_acc: Some(1.0 - train_loss / 2.5),
                    step_loss_cv: Some(0.1),
                    epoch_seconds: 0.5,
                    samples_per_sec: 1000.0,
                }
            })
            .collect()
    };
    let summary = |name: &str, epochs: &[EpochRow]| {
        compare_job(
            JobId::new(),
            name,
            "succeeded",
            epochs,
            RankMetric::ValAcc,
            Goal::Max,
            2000,
        )
    };
    let best = |s: &crate::analysis::JobSummary| {
        s.best_epoch
            .zip(s.best_value)
            .map(|(e, v)| (e, RankMetric::ValAcc, v))
    };
    let job = summary("digits-mlp-2x64", &run(30, 0.25, true));
    let draw = |f| learning_curves(&job.name, "succeeded", &job.curve, best(&job), f).unwrap();
    write("curves", draw(ImageFormat::Svg), draw(ImageFormat::Png));

    let jobs: Vec<_> = [
        ("lr=0.0001 a rather long job name", 0.05),
        ("lr=0.001", 0.2),
        ("lr=0.01", 0.5),
        ("lr=0.1", 0.9),
    ]
    .iter()
    .map(|(n, s)| summary(n, &run(40, *s, false)))
    .collect();
    let mut comparison = Comparison {
        metric: RankMetric::ValAcc,
        goal: Goal::Max,
        jobs,
    };
    comparison
        .jobs
        .sort_by(|a, b| b.best_value.unwrap().total_cmp(&a.best_value.unwrap()));
    write(
        "compare",
        overlay_curves(&comparison, ImageFormat::Svg).unwrap(),
        overlay_curves(&comparison, ImageFormat::Png).unwrap(),
    );

    let trial = |index: i64,
                 params: &[(&str, serde_json::Value)],
                 repeat: i64,
                 value: Option<f64>| TrialResult {
        index,
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        repeat,
        job_id: JobId::new(),
        status: "succeeded".into(),
        best_epoch: Some(3),
        best_value: value,
        epochs_done: 3,
        failure: None,
        pruned: false,
        stop_reason: None,
    };
    let mut trials = Vec::new();
    for (i, d) in [1, 2, 6, 10].iter().enumerate() {
        for (j, w) in [8, 16, 32, 64].iter().enumerate() {
            let v = (*d != 10 || *w != 8).then_some(0.7 + 0.05 * j as f64 - 0.03 * i as f64);
            trials.push(trial(
                (i * 4 + j) as i64,
                &[("model.depth", json!(d)), ("model.width", json!(w))],
                0,
                v,
            ));
        }
    }
    let s = summarize_sweep(
        RankMetric::ValAcc,
        Goal::Max,
        &["model.depth".into(), "model.width".into()],
        trials,
    );
    write(
        "heatmap",
        sweep_chart("depth x width", &s, ImageFormat::Svg).unwrap(),
        sweep_chart("depth x width", &s, ImageFormat::Png).unwrap(),
    );

    let mut trials = Vec::new();
    for (i, lr) in [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0].iter().enumerate() {
        for seed in 0..3 {
            let v =
                (*lr < 1.0).then(|| 0.95 - 0.12 * ((i as f64) - 2.6).powi(2) + 0.015 * seed as f64);
            trials.push(trial(
                i as i64 * 3 + seed,
                &[("training.optimizer.lr", json!(lr))],
                seed,
                v,
            ));
        }
    }
    let s = summarize_sweep(
        RankMetric::ValAcc,
        Goal::Max,
        &["training.optimizer.lr".into()],
        trials,
    );
    write(
        "sweep-lr",
        sweep_chart("lr", &s, ImageFormat::Svg).unwrap(),
        sweep_chart("lr", &s, ImageFormat::Png).unwrap(),
    );

    let mut trials = Vec::new();
    let mut i = 0;
    for bn in [true, false] {
        for act in ["relu", "tanh", "sigmoid"] {
            for bs in [1, 16, 128, 1024] {
                let v = 0.8 + if bn { 0.05 } else { 0.0 } - 0.01 * (bs as f64).log2() / 3.0;
                trials.push(trial(
                    i,
                    &[
                        ("model.batch_norm", json!(bn)),
                        ("model.activation", json!(act)),
                        ("training.batch_size", json!(bs)),
                    ],
                    0,
                    Some(v),
                ));
                i += 1;
            }
        }
    }
    let axes = [
        "model.activation".into(),
        "model.batch_norm".into(),
        "training.batch_size".into(),
    ];
    let s = summarize_sweep(RankMetric::ValLoss, Goal::Min, &axes, trials);
    write(
        "sweep-3axes",
        sweep_chart("three axes", &s, ImageFormat::Svg).unwrap(),
        sweep_chart("three axes", &s, ImageFormat::Png).unwrap(),
    );

    let empty = learning_curves("queued-job", "queued", &[], None, ImageFormat::Png).unwrap();
    std::fs::write(format!("{dir}/empty.png"), empty).unwrap();
}
