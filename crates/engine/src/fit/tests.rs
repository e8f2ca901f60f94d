//! The training loop end to end on a small synthetic data set: resuming from a checkpoint is
//! bit-identical, early stopping ends the run, every knob trains, deep networks run.

use candle_core::Device;

use crate::checkpoint::{self, CheckpointData};
use crate::spec::{DataSpec, JobSpec};
use crate::{EpochReport, FitOutcome, Interrupter, PreparedData, Start, TrainError, fit, prepare};
use data::{RegionsParams, regions};

fn data() -> PreparedData {
    let table = regions(&RegionsParams {
        classes: 4,
        samples: 240,
        seed: 3,
        label_noise: 0.05,
    });
    prepare(&table, &DataSpec::default(), &Device::Cpu).unwrap()
}

fn spec(json: &str) -> JobSpec {
    let mut spec: JobSpec = serde_json::from_str(json).unwrap();
    spec.validate().unwrap();
    spec.fill_defaults();
    spec
}

/// Runs `fit` and keeps every epoch's report.
fn run(
    spec: &JobSpec,
    data: &PreparedData,
    resume: Option<(u32, CheckpointData)>,
) -> (Result<FitOutcome, TrainError>, Vec<EpochReport>) {
    let mut reports = Vec::new();
    let outcome = fit(
        spec,
        data,
        resume.map_or(Start::Fresh, |(epoch, saved)| Start::Resume(epoch, saved)),
        &Device::Cpu,
        &Interrupter::new(),
        &mut |_| {},
        &mut |report| {
            reports.push(report);
            Ok(())
        },
    );
    (outcome, reports)
}

fn decode(report: &EpochReport) -> CheckpointData {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.safetensors");
    let sha = checkpoint::write_atomically(&path, &report.checkpoint).unwrap();
    checkpoint::read_verified(&path, &sha, &Device::Cpu).unwrap()
}

const EVERY_STATEFUL_KNOB: &str = r#"{"dataset": "r", "model": {"kind": "mlp", "depth": 2, "width": 16,
    "batch_norm": true, "dropout": 0.2, "activation": "gelu"},
  "training": {"epochs": 6, "batch_size": 16, "seed": 11,
    "optimizer": {"kind": "rmsprop", "lr": 0.005, "momentum": 0.5, "centered": true, "weight_decay": 0.001},
    "schedule": {"kind": "reduce_on_plateau", "metric": "train_loss", "patience": 0, "factor": 0.5, "warmup_steps": 5},
    "grad_clip": {"max_norm": 1.0, "max_value": 0.5},
    "early_stopping": {"metric": "val_loss", "patience": 100}}}"#;

#[test]
fn a_run_resumed_from_a_checkpoint_continues_bit_identically() {
    let data = data();
    let spec = spec(EVERY_STATEFUL_KNOB);
    let (outcome, straight) = run(&spec, &data, None);
    assert_eq!(outcome.unwrap().epochs, 6);
    let lrs: Vec<f64> = straight.iter().map(|r| r.metrics.lr).collect();
    assert!(
        lrs.windows(2).any(|w| w[1] < w[0]),
        "the plateau schedule acted: {lrs:?}"
    );
    let (_, resumed) = run(&spec, &data, Some((3, decode(&straight[2]))));
    assert_eq!(resumed.len(), 3);
    for (a, b) in straight[3..].iter().zip(&resumed) {
        let mut a_metrics = a.metrics.clone();
        let mut b_metrics = b.metrics.clone();
        for m in [&mut a_metrics, &mut b_metrics] {
            (m.epoch_seconds, m.samples_per_sec) = (0.0, 0.0);
        }
        assert_eq!(a_metrics, b_metrics);
        assert_eq!(a.step_losses, b.step_losses);
        assert_eq!(a.first_step, b.first_step);
        assert_eq!(a.layers, b.layers);
    }
}

#[test]
fn two_runs_with_one_seed_measure_the_same_and_another_seed_differs() {
    let data = data();
    let a = run(&spec(EVERY_STATEFUL_KNOB), &data, None).1;
    let b = run(&spec(EVERY_STATEFUL_KNOB), &data, None).1;
    let other = run(
        &spec(&EVERY_STATEFUL_KNOB.replace(r#""seed": 11"#, r#""seed": 12"#)),
        &data,
        None,
    )
    .1;
    let losses = |reports: &[EpochReport]| -> Vec<Vec<f32>> {
        reports.iter().map(|r| r.step_losses.clone()).collect()
    };
    assert_eq!(losses(&a), losses(&b));
    assert_ne!(losses(&a), losses(&other));
}

#[test]
fn early_stopping_ends_the_run_and_says_why() {
    let data = data();
    let spec = spec(
        r#"{"dataset": "r", "model": {"kind": "mlp"},
            "training": {"epochs": 50, "seed": 1,
              "early_stopping": {"metric": "val_acc", "patience": 2, "min_delta": 1.0}}}"#,
    );
    let (outcome, reports) = run(&spec, &data, None);
    let outcome = outcome.unwrap();
    // Nothing can improve accuracy by more than 1, so epochs 2 and 3 are the two bad ones.
    assert_eq!(outcome.epochs, 3);
    assert_eq!(reports.len(), 3);
    let reason = outcome.stopped_early.unwrap();
    assert!(
        reason.contains("val_acc") && reason.contains("2 epochs"),
        "{reason}"
    );
    assert_eq!(reports[2].stopped_early.as_deref(), Some(reason.as_str()));
    assert!(reports[..2].iter().all(|r| r.stopped_early.is_none()));
}

#[test]
fn every_activation_initialization_and_optimizer_trains() {
    let data = data();
    let models = [
        r#""activation": "relu", "init": {"kind": "torch_default"}"#,
        r#""activation": "leaky_relu", "leaky_relu_slope": 0.1"#,
        r#""activation": "gelu", "init": {"kind": "normal", "std": 0.1}"#,
        r#""activation": "tanh", "init": {"kind": "kaiming"}"#,
        r#""activation": "sigmoid", "batch_norm": true"#,
        r#""activation": "identity", "init": {"kind": "xavier"}"#,
    ];
    let optimizers = [
        r#"{"kind": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": true, "weight_decay": 1e-4}"#,
        r#"{"kind": "adam", "weight_decay": 1e-4}"#,
        r#"{"kind": "adamw", "lr": 0.01}"#,
        r#"{"kind": "rmsprop", "lr": 0.001}"#,
    ];
    for (model, optimizer) in models.iter().zip(optimizers.iter().cycle()) {
        let spec = spec(&format!(
            r#"{{"dataset": "r", "model": {{"kind": "mlp", "width": 16, {model}}},
                "training": {{"epochs": 3, "batch_size": 8, "seed": 2, "optimizer": {optimizer}}}}}"#
        ));
        let (outcome, reports) = run(&spec, &data, None);
        assert!(outcome.is_ok(), "{model} {optimizer}: {outcome:?}");
        let first = reports[0].metrics.train_eval_loss;
        let last = reports[2].metrics.train_eval_loss;
        assert!(last < first, "{model} {optimizer}: {first} -> {last}");
    }
}

#[test]
fn a_hundred_layer_network_trains_and_reports_every_layer() {
    let data = data();
    let spec = spec(
        r#"{"dataset": "r", "model": {"kind": "mlp", "depth": 100, "width": 8, "activation": "sigmoid"},
            "training": {"epochs": 1, "batch_size": 64, "seed": 3}}"#,
    );
    let (outcome, reports) = run(&spec, &data, None);
    assert!(outcome.is_ok(), "{outcome:?}");
    let report = &reports[0];
    assert_eq!(report.layers.len(), 2 * 101);
    let first = &report.layers[0];
    assert_eq!(
        (
            first.name.as_str(),
            first.layer.as_str(),
            first.index,
            first.role.as_str()
        ),
        ("hidden.0.weight", "hidden.0", 0, "weight")
    );
    let last = report.layers.last().unwrap();
    assert_eq!(
        (
            last.name.as_str(),
            last.layer.as_str(),
            last.index,
            last.role.as_str()
        ),
        ("output.bias", "output", 100, "bias")
    );
    assert!(
        report
            .layers
            .iter()
            .all(|l| l.grad_norm_max >= l.grad_norm_mean)
    );
    assert!(
        report
            .layers
            .iter()
            .all(|l| l.weight_norm > 0.0 || l.role == "bias")
    );
    assert_eq!(report.step_losses.len() as u64, report.metrics.steps);
}

#[test]
fn batch_size_one_trains_with_batch_norm() {
    let data = data();
    let spec = spec(
        r#"{"dataset": "r", "model": {"kind": "mlp", "width": 8, "batch_norm": true},
            "training": {"epochs": 1, "batch_size": 1, "seed": 4}}"#,
    );
    let (outcome, reports) = run(&spec, &data, None);
    assert!(outcome.is_ok(), "{outcome:?}");
    assert_eq!(reports[0].metrics.steps as usize, data.train.len);
    assert!(reports[0].metrics.step_loss_cv > 0.0);
}

#[test]
fn a_resnet_resumed_from_a_checkpoint_continues_bit_identically() {
    // The checkpoint must carry batch norm's running statistics for evaluation to match.
    let table = data::shapes(&data::ShapesParams {
        classes: 2,
        samples: 40,
        image_size: 16,
        ..Default::default()
    });
    let data = prepare(&table, &DataSpec::default(), &Device::Cpu).unwrap();
    let spec = spec(
        r#"{"dataset": "s", "model": {"kind": "resnet18", "width": 4, "stem": "small"},
            "training": {"epochs": 3, "batch_size": 8, "seed": 4, "optimizer": {"kind": "adam", "lr": 0.01}}}"#,
    );
    let (outcome, straight) = run(&spec, &data, None);
    assert_eq!(outcome.unwrap().epochs, 3);
    let saved = decode(&straight[0]);
    assert!(
        saved
            .model
            .contains_key("layer3.0.downsample.1.running_var")
    );
    let (_, resumed) = run(&spec, &data, Some((1, saved)));
    for (a, b) in straight[1..].iter().zip(&resumed) {
        assert_eq!(a.step_losses, b.step_losses);
        assert_eq!(
            (a.metrics.val_loss, a.metrics.train_eval_loss),
            (b.metrics.val_loss, b.metrics.train_eval_loss)
        );
    }
}

#[test]
fn an_augmented_run_resumes_bit_identically_on_both_paths() {
    use data::{ShapesParams, shapes};
    let table = shapes(&ShapesParams {
        classes: 3,
        samples: 90,
        image_size: 16,
        seed: 2,
        ..ShapesParams::default()
    });
    let preprocessing = r#""data": {"preprocessing": {"resize": 12,
        "crop": {"kind": "random", "size": 10, "padding": 2}, "horizontal_flip": 0.5}}"#;
    for model in [
        r#"{"kind": "cnn", "blocks": [{"channels": 4, "batch_norm": true}], "head": {"depth": 0}}"#,
        r#"{"kind": "mlp", "depth": 1, "width": 16}"#,
    ] {
        let spec = spec(&format!(
            r#"{{"dataset": "s", {preprocessing}, "model": {model},
                "training": {{"epochs": 3, "batch_size": 16, "seed": 4}}}}"#
        ));
        let data = prepare(&table, &spec.data, &Device::Cpu).unwrap();
        assert!(data.augment.is_some());
        assert_eq!(data.preprocessing.image_shape, Some([3, 10, 10]));
        let (outcome, straight) = run(&spec, &data, None);
        assert_eq!(outcome.unwrap().epochs, 3, "{model}");
        let (_, resumed) = run(&spec, &data, Some((1, decode(&straight[0]))));
        assert_eq!(resumed.len(), 2);
        for (a, b) in straight[1..].iter().zip(&resumed) {
            assert_eq!(a.step_losses, b.step_losses, "{model}");
            assert_eq!(a.metrics.val_loss, b.metrics.val_loss, "{model}");
        }
    }
}
