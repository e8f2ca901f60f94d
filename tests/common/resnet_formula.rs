//! The formula weights of `scripts/export_resnet_fixture.py`, regenerated without torch: a
//! ResNet state_dict as torchvision names it (with `num_batches_tracked`), saved as
//! `safetensors.torch.save_file` would save it.

use candle_core::{Device, Tensor};
use engine::resnet::state_shapes;
use trainserve::domain::{ResNetDepth, ResNetSpec};

/// A value in [-1, 1) from a tensor's number `t` and a value's index `i`.
pub fn hashed(i: usize, t: usize) -> f64 {
    let s = (12.9898 * i as f64 + 78.233 * t as f64 + 0.1).sin() * 43758.5453;
    2.0 * (s - s.floor()) - 1.0
}

/// The tensor called `name`, the `t`-th in name order, as the script fills it.
pub fn formula(name: &str, t: usize, shape: &[usize]) -> Tensor {
    if name.ends_with("num_batches_tracked") {
        return Tensor::new(7i64, &Device::Cpu).unwrap();
    }
    let n: usize = shape.iter().product();
    let fan_in: usize = shape[1..].iter().product::<usize>().max(1);
    let value = |v: f64| -> f64 {
        if shape.len() == 4 {
            v * (3.0 / fan_in as f64).sqrt()
        } else if name == "fc.weight" {
            v * (1.0 / fan_in as f64).sqrt()
        } else if name.ends_with("running_var") {
            1.0 + 0.25 * (v + 1.0)
        } else if name.ends_with(".weight") {
            1.0 + 0.2 * v
        } else {
            0.1 * v
        }
    };
    let values: Vec<f32> = (0..n).map(|i| value(hashed(i, t)) as f32).collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

/// Every tensor of torchvision's `resnet18/34(num_classes=classes)` (narrowed to `spec.width`),
/// filled by the formula, in name order.
pub fn state_dict(
    depth: ResNetDepth,
    spec: &ResNetSpec,
    channels: usize,
    classes: usize,
) -> Vec<(String, Tensor)> {
    let mut shapes = state_shapes(depth, spec, channels, classes);
    let counters: Vec<(String, Vec<usize>)> = shapes
        .iter()
        .filter_map(|(name, _)| name.strip_suffix(".running_var"))
        .map(|bn| (format!("{bn}.num_batches_tracked"), vec![]))
        .collect();
    shapes.extend(counters);
    shapes.sort_by(|a, b| a.0.cmp(&b.0));
    shapes
        .into_iter()
        .enumerate()
        .map(|(t, (name, shape))| {
            let tensor = formula(&name, t, &shape);
            (name, tensor)
        })
        .collect()
}

/// The state dict as a safetensors file's bytes.
pub fn safetensors_bytes(state: &[(String, Tensor)]) -> Vec<u8> {
    safetensors::serialize(state.iter().map(|(n, t)| (n.as_str(), t.clone())), None).unwrap()
}
