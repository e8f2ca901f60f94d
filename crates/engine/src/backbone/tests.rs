//! The candle-transformers backbones: each loads random weights by its checkpoint names and
//! gives finite logits of the right shape, wrong files are refused with the tensors named, and
//! a linear probe trains only the head, on features cached once, into a checkpoint that serves.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use data::{ShapesParams, shapes};

use super::random_weights;
use crate::checkpoint;
use crate::spec::{DataSpec, JobSpec, ModelSpec};
use crate::{
    EpochReport, InferenceNetwork, Interrupter, Network, PreparedData, Preprocessing, Start, fit,
    prepare,
};

/// A ViT small enough for tests: 32×32 RGB images in 16 patches of 8×8, two layers of width 32.
pub(crate) const TINY_VIT: &str = r#"{"kind": "vit", "image_size": 32, "patch_size": 8, "hidden_size": 32,
    "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}"#;

fn model(json: &str) -> ModelSpec {
    serde_json::from_str(json).unwrap()
}

fn shapes_data(classes: usize, samples: usize) -> PreparedData {
    let table = shapes(&ShapesParams {
        classes,
        samples,
        seed: 5,
        image_size: 32,
        noise: 0.05,
    });
    let spec = DataSpec {
        standardize: false,
        ..DataSpec::default()
    };
    prepare(&table, &spec, &Device::Cpu).unwrap()
}

fn preprocessing(classes: usize) -> Preprocessing {
    shapes_data(classes, 30).preprocessing
}

fn as_map(tensors: Vec<(String, Tensor)>) -> HashMap<String, Tensor> {
    tensors.into_iter().collect()
}

/// Logits of two random 32×32 images through the model loaded from `tensors`.
fn logits_of(spec: &ModelSpec, classes: usize, tensors: &HashMap<String, Tensor>) -> Vec<Vec<f32>> {
    let net = Network::from_tensors(spec, &preprocessing(classes), tensors, &Device::Cpu).unwrap();
    let x = Tensor::rand(0f32, 1f32, (2, 3 * 32 * 32), &Device::Cpu).unwrap();
    net.forward(&x, &mut crate::Mode::Eval)
        .unwrap()
        .to_vec2()
        .unwrap()
}

#[test]
fn each_backbone_loads_its_weights_by_name_and_gives_finite_logits_of_the_right_shape() {
    for (json, some_name) in [
        (
            TINY_VIT,
            "vit.encoder.layer.1.attention.attention.query.weight",
        ),
        (
            r#"{"kind": "convnext", "variant": "convnext_atto"}"#,
            "stages.2.blocks.5.gamma",
        ),
        (
            r#"{"kind": "convnext", "variant": "convnextv2_atto"}"#,
            "stages.3.blocks.1.mlp.grn.weight",
        ),
    ] {
        let spec = model(json);
        let tensors = as_map(random_weights(&spec, 3, 1).unwrap());
        assert!(tensors.contains_key(some_name), "{json}: {some_name}");
        let logits = logits_of(&spec, 3, &tensors);
        assert_eq!((logits.len(), logits[0].len()), (2, 3), "{json}");
        assert!(
            logits.iter().flatten().all(|v| v.is_finite()),
            "{json}: {logits:?}"
        );
        assert_ne!(logits[0], logits[1], "{json}: two images, two answers");
    }
}

#[test]
fn a_missing_or_misshapen_tensor_is_refused_naming_it() {
    let spec = model(r#"{"kind": "convnext", "variant": "convnext_atto"}"#);
    let mut tensors = as_map(random_weights(&spec, 3, 1).unwrap());
    tensors.remove("stages.1.downsample.1.weight");
    let wrong = Tensor::zeros(7, candle_core::DType::F32, &Device::Cpu).unwrap();
    tensors.insert("stem.1.bias".into(), wrong);
    let err = Network::from_tensors(&spec, &preprocessing(3), &tensors, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("missing tensors: stages.1.downsample.1.weight"),
        "{err}"
    );
    assert!(
        err.contains("stem.1.bias has shape [7], expected [40]"),
        "{err}"
    );

    // A ViT's weights under the wrong names (timm's instead of Hugging Face's) list what is missing.
    let vit = model(TINY_VIT);
    let renamed: HashMap<String, Tensor> = random_weights(&vit, 3, 1)
        .unwrap()
        .into_iter()
        .map(|(name, t)| (name.replace("vit.", "model."), t))
        .collect();
    let err = Network::from_tensors(&vit, &preprocessing(3), &renamed, &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("vit.embeddings.cls_token"), "{err}");
}

fn probe_spec(model: &str) -> JobSpec {
    let json = format!(
        r#"{{"dataset": "shapes", "model": {model}, "data": {{"standardize": false}},
            "init": {{"mode": "linear_probe", "from_weights": "w"}},
            "training": {{"optimizer": {{"kind": "adam", "lr": 0.01}}, "epochs": 3, "batch_size": 16, "seed": 4}}}}"#
    );
    let mut spec: JobSpec = serde_json::from_str(&json).unwrap();
    spec.validate().unwrap();
    spec.fill_defaults();
    spec
}

#[test]
fn a_linear_probe_trains_only_the_head_on_cached_features_into_a_checkpoint_that_serves() {
    let data = shapes_data(3, 150);
    let spec = probe_spec(TINY_VIT);
    // Uploaded weights carry their own ten-class head, which the probe replaces.
    let uploaded = as_map(random_weights(&spec.model, 10, 2).unwrap());
    let mut reports: Vec<EpochReport> = Vec::new();
    fit(
        &spec,
        &data,
        Start::Backbone(&uploaded, "init.from_weights"),
        &Device::Cpu,
        &Interrupter::new(),
        &mut |_| {},
        &mut |report| {
            reports.push(report);
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(reports.len(), 3);
    let names: Vec<&str> = reports[0].layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["classifier.weight", "classifier.bias"]);
    let losses: Vec<f64> = reports.iter().map(|r| r.metrics.train_loss).collect();
    assert!(losses[2] < losses[0], "the head learns: {losses:?}");

    // The checkpoint holds the frozen backbone unchanged and the new three-class head: it
    // serves on images, as the job's model.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.safetensors");
    let sha = checkpoint::write_atomically(&path, &reports[2].checkpoint).unwrap();
    let saved = checkpoint::read_verified(&path, &sha, &Device::Cpu).unwrap();
    let name = "vit.encoder.layer.0.output.dense.weight";
    let diff = (&saved.model[name] - &uploaded[name])
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(diff, 0.0, "the backbone stayed frozen");
    assert_eq!(saved.model["classifier.weight"].dims(), [3, 32]);
    let served =
        InferenceNetwork::from_checkpoint(&spec.model, &data.preprocessing, &saved.model).unwrap();
    let rows = data.val.x.to_vec2::<f32>().unwrap();
    let width = rows[0].len();
    let probabilities = served
        .probabilities(rows.concat(), rows.len(), width)
        .unwrap();
    let labels = data.val.y.to_vec1::<u32>().unwrap();
    let correct = probabilities
        .iter()
        .zip(&labels)
        .filter(|(p, y)| {
            let best = p
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0;
            best == **y as usize
        })
        .count();
    let served_acc = correct as f64 / labels.len() as f64;
    assert!(
        (served_acc - reports[2].metrics.val_acc).abs() < 1e-9,
        "serving the checkpoint agrees with the run's own validation: {served_acc} vs {}",
        reports[2].metrics.val_acc
    );
}

#[test]
fn a_backbone_trains_only_as_a_linear_probe_without_random_augmentation() {
    let parse = |json: String| -> String {
        let spec: JobSpec = serde_json::from_str(&json).unwrap();
        match spec.validate() {
            Ok(()) => "ok".into(),
            Err(crate::EngineError::Spec { path, .. }) => path,
            Err(other) => other.to_string(),
        }
    };
    let vit = TINY_VIT;
    assert_eq!(
        parse(format!(r#"{{"dataset": "shapes", "model": {vit}}}"#)),
        "init.mode"
    );
    assert_eq!(
        parse(format!(
            r#"{{"dataset": "shapes", "model": {vit}, "init": {{"mode": "fine_tune", "from_weights": "w"}}}}"#
        )),
        "init.mode"
    );
    assert_eq!(
        parse(format!(
            r#"{{"dataset": "shapes", "model": {vit}, "init": {{"mode": "linear_probe", "from_weights": "w"}},
                 "data": {{"preprocessing": {{"horizontal_flip": 0.5}}}}}}"#
        )),
        "data.preprocessing"
    );
    assert_eq!(
        parse(
            r#"{"dataset": "shapes", "model": {"kind": "vit", "hidden_size": 30, "num_attention_heads": 4},
                "init": {"mode": "linear_probe", "from_weights": "w"}}"#
                .to_string()
        ),
        "model.num_attention_heads"
    );
    // The image size must be the ViT's.
    let spec = probe_spec(TINY_VIT);
    let err = spec.validate_for_dataset(Some([3, 16, 16])).unwrap_err();
    assert!(err.to_string().contains("takes 3x32x32 images"), "{err}");
    assert!(spec.validate_for_dataset(Some([3, 32, 32])).is_ok());
}
