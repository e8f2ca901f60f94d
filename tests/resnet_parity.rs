//! A ResNet-18 state_dict as torchvision exports it (safetensors, torchvision's names, int64
//! `num_batches_tracked` included) loads unchanged into trainserve and computes what PyTorch
//! computes: evaluation logits, training-mode logits and loss, gradients, and the running
//! statistics batch norm leaves behind. The numbers come from `scripts/export_resnet_fixture.py`.

#[path = "common/resnet_formula.rs"]
mod resnet_formula;

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use engine::{Mode, Network, ResNet};
use rand::SeedableRng;
use serde_json::Value;
use trainserve::domain::{ResNetDepth, ResNetSpec};

/// The formula input `[n, c, h, w]` of the script.
fn input(shape: [usize; 4]) -> Tensor {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|i| resnet_formula::hashed(i, 1000) as f32)
        .collect();
    Tensor::from_vec(values, &shape, &Device::Cpu).unwrap()
}

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/resnet18_torch.json")).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(items) => items.iter().flat_map(floats).collect(),
        other => vec![other.as_f64().unwrap()],
    }
}

/// Largest difference relative to the largest magnitude of the reference.
fn relative_error(ours: &[f64], torch: &[f64]) -> f64 {
    assert_eq!(ours.len(), torch.len());
    let scale = torch.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-12);
    ours.iter()
        .zip(torch)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
        / scale
}

fn tensor_values(t: &Tensor) -> Vec<f64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(candle_core::DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn a_torchvision_resnet18_state_dict_gives_pytorchs_outputs_and_gradients() {
    // Arrange: the script's weights, through a safetensors file as PyTorch writes it.
    let fixture = fixture();
    let classes = fixture["num_classes"].as_u64().unwrap() as usize;
    let spec = ResNetSpec::default();
    let state = resnet_formula::state_dict(ResNetDepth::R18, &spec, 3, classes);
    assert_eq!(
        state.len(),
        fixture["tensor_count"].as_u64().unwrap() as usize
    );
    for (name, tensor) in &state {
        let sum: f64 = tensor_values(tensor).iter().sum();
        let theirs = fixture["tensor_sums"][name].as_f64().unwrap();
        assert!(
            (sum - theirs).abs() <= 1e-6 * theirs.abs().max(1.0),
            "{name}: {sum} vs {theirs}"
        );
    }
    let bytes = resnet_formula::safetensors_bytes(&state);
    let tensors: HashMap<String, Tensor> =
        candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();
    let shape: Vec<usize> = floats(&fixture["input_shape"])
        .iter()
        .map(|&v| v as usize)
        .collect();
    let x = input([shape[0], shape[1], shape[2], shape[3]]);
    let model = ResNet::from_tensors(
        ResNetDepth::R18,
        &spec,
        [shape[1], shape[2], shape[3]],
        classes,
        &tensors,
        &Device::Cpu,
    )
    .unwrap();

    // Act and assert: evaluation mode.
    let eval = model.forward(&x, &mut Mode::Eval).unwrap();
    let err = relative_error(&tensor_values(&eval), &floats(&fixture["logits_eval"]));
    eprintln!("PARITY eval logits: max relative error {err:.2e}");
    assert!(err < 1e-4, "eval logits differ from PyTorch's by {err:.2e}");

    // Training mode: batch statistics, the running statistics' update, and the gradients.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let train = model.forward(&x, &mut Mode::Train(&mut rng)).unwrap();
    let err = relative_error(&tensor_values(&train), &floats(&fixture["logits_train"]));
    eprintln!("PARITY train logits: max relative error {err:.2e}");
    assert!(err < 1e-4, "training-mode logits differ by {err:.2e}");
    let labels: Vec<u32> = floats(&fixture["labels"])
        .iter()
        .map(|&v| v as u32)
        .collect();
    let y = Tensor::new(labels.as_slice(), &Device::Cpu).unwrap();
    let loss = candle_nn::loss::cross_entropy(&train, &y).unwrap();
    let loss_value = f64::from(loss.to_scalar::<f32>().unwrap());
    let torch_loss = fixture["loss_train"].as_f64().unwrap();
    eprintln!("PARITY loss {loss_value:.7} vs torch {torch_loss:.7}");
    assert!(
        (loss_value - torch_loss).abs() < 1e-4 * torch_loss,
        "loss {loss_value} vs {torch_loss}"
    );
    let grads = loss.backward().unwrap();
    let params: HashMap<String, candle_core::Var> = model.trainable().into_iter().collect();
    for (name, norm) in fixture["grad_norms"].as_object().unwrap() {
        let g = grads.get(params[name].as_tensor()).unwrap();
        let ours = tensor_values(g).iter().map(|v| v * v).sum::<f64>().sqrt();
        let theirs = norm.as_f64().unwrap();
        eprintln!("PARITY grad norm {name}: {ours:.6} vs torch {theirs:.6}");
        assert!(
            (ours - theirs).abs() < 1e-3 * theirs,
            "{name}: gradient norm {ours} vs {theirs}"
        );
    }
    let network = Network::ResNet(model);
    let after: HashMap<String, Tensor> = network.state().unwrap().into_iter().collect();
    for (name, theirs) in fixture["running_after_train"].as_object().unwrap() {
        let theirs = floats(theirs);
        let ours = &tensor_values(&after[name])[..theirs.len()];
        let err = relative_error(ours, &theirs);
        eprintln!("PARITY {name} after a training step: max relative error {err:.2e}");
        assert!(
            err < 1e-4,
            "{name} after a training step differs by {err:.2e}"
        );
    }
}
