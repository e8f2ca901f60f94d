//! Weight initialization from the job's own seeded generator (candle's CPU generator cannot be
//! seeded): Kaiming, Xavier, a fixed-std normal, and torch.nn.Linear's default.

use std::f64::consts::PI;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::spec::{Activation, InitSpec};

/// The gain PyTorch's `calculate_gain` gives a non-linearity (GELU uses ReLU's).
pub(crate) fn gain(activation: Activation, leaky_slope: f64) -> f64 {
    match activation {
        Activation::Relu | Activation::Gelu => 2f64.sqrt(),
        Activation::LeakyRelu => (2.0 / (1.0 + leaky_slope * leaky_slope)).sqrt(),
        Activation::Tanh => 5.0 / 3.0,
        Activation::Sigmoid | Activation::Identity => 1.0,
    }
}

/// Weights (`outputs x inputs`, row-major) and biases of one dense layer. `gain` is the gain
/// of the non-linearity that follows the layer (1 for the output layer).
pub(crate) fn dense(
    init: &InitSpec,
    inputs: usize,
    outputs: usize,
    gain: f64,
    rng: &mut ChaCha8Rng,
) -> (Vec<f32>, Vec<f32>) {
    let n = inputs * outputs;
    let fan_in = inputs.max(1) as f64;
    let fan_out = outputs.max(1) as f64;
    match init {
        InitSpec::Kaiming => (normal(n, gain / fan_in.sqrt(), rng), vec![0.0; outputs]),
        InitSpec::Xavier => {
            let bound = (6.0 / (fan_in + fan_out)).sqrt() as f32;
            (uniform(n, bound, rng), vec![0.0; outputs])
        }
        InitSpec::Normal { std } => (normal(n, *std, rng), vec![0.0; outputs]),
        InitSpec::TorchDefault => {
            let bound = 1.0 / (inputs as f32).sqrt();
            let weight = uniform(n, bound, rng);
            (weight, uniform(outputs, bound, rng))
        }
    }
}

fn uniform(n: usize, bound: f32, rng: &mut ChaCha8Rng) -> Vec<f32> {
    if bound > 0.0 && bound.is_finite() {
        (0..n).map(|_| rng.random_range(-bound..bound)).collect()
    } else {
        vec![0.0; n]
    }
}

/// N(0, std²) by the Box–Muller transform (one value per pair of uniforms).
fn normal(n: usize, std: f64, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..n)
        .map(|_| {
            // 1 − U lies in (0, 1], so the logarithm is finite.
            let u1: f64 = 1.0 - rng.random::<f64>();
            let u2: f64 = rng.random::<f64>();
            ((-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos() * std) as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn moments(values: &[f32]) -> (f64, f64) {
        let n = values.len() as f64;
        let mean = values.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = values
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        (mean, var.sqrt())
    }

    #[test]
    fn kaiming_has_the_standard_deviation_of_its_gain_over_root_fan_in() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (w, b) = dense(&InitSpec::Kaiming, 200, 300, 2f64.sqrt(), &mut rng);
        let (mean, std) = moments(&w);
        let expected = (2.0f64 / 200.0).sqrt();
        assert!(mean.abs() < 0.01, "{mean}");
        assert!((std / expected - 1.0).abs() < 0.03, "{std} vs {expected}");
        assert!(b.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn xavier_is_uniform_within_the_glorot_bound() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let (w, _) = dense(&InitSpec::Xavier, 100, 50, 1.0, &mut rng);
        let bound = (6.0f64 / 150.0).sqrt();
        assert!(w.iter().all(|&v| f64::from(v.abs()) <= bound));
        let (_, std) = moments(&w);
        assert!((std / (bound / 3f64.sqrt()) - 1.0).abs() < 0.05, "{std}");
    }

    #[test]
    fn normal_uses_the_given_std_and_torch_default_draws_biases_too() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (w, _) = dense(&InitSpec::Normal { std: 0.5 }, 100, 100, 1.0, &mut rng);
        let (_, std) = moments(&w);
        assert!((std - 0.5).abs() < 0.02, "{std}");
        let (w, b) = dense(&InitSpec::TorchDefault, 16, 4, 1.0, &mut rng);
        assert!(w.iter().chain(&b).all(|&v| v.abs() <= 0.25));
        assert!(b.iter().any(|&v| v != 0.0));
    }

    #[test]
    fn gains_follow_pytorch() {
        assert_eq!(gain(Activation::Relu, 0.0), 2f64.sqrt());
        assert_eq!(gain(Activation::Tanh, 0.0), 5.0 / 3.0);
        assert!((gain(Activation::LeakyRelu, 0.01) - (2.0f64 / 1.0001).sqrt()).abs() < 1e-12);
        assert_eq!(gain(Activation::Identity, 0.0), 1.0);
    }
}
