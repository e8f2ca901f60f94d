use std::collections::HashMap;

use candle_core::{Device, Tensor};
use candle_nn::loss::cross_entropy;
use rand::SeedableRng;

use super::*;
use crate::{Mlp, Mode};

fn check_against_candle(activation: Activation, dropout: f64) {
    let spec = MlpSpec {
        depth: 3,
        width: 7,
        activation,
        batch_norm: false,
        dropout,
        // Non-zero biases: with zero biases a sample whose previous layer is all zeros has a
        // pre-activation of exactly 0, where candle takes relu'(0) = 1 and this path, like
        // PyTorch, takes 0.
        init: Some(crate::spec::InitSpec::TorchDefault),
        ..MlpSpec::default()
    };
    let (inputs, classes, batch) = (5, 4, 6);
    let model = Mlp::seeded(
        &spec,
        inputs,
        classes,
        &mut ChaCha8Rng::seed_from_u64(9),
        &Device::Cpu,
    )
    .unwrap();
    let mut fused =
        FusedMlp::from_state(&spec, inputs, classes, &model.state().unwrap(), 1).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let x: Vec<f32> = (0..batch * inputs)
        .map(|_| rng.random_range(-2.0..2.0))
        .collect();
    let y: Vec<u32> = (0..batch as u32).map(|i| i % classes as u32).collect();

    let xt = Tensor::from_slice(&x, (batch, inputs), &Device::Cpu).unwrap();
    let yt = Tensor::from_slice(&y, batch, &Device::Cpu).unwrap();
    let logits = model
        .forward(&xt, &mut Mode::Train(&mut ChaCha8Rng::seed_from_u64(1)))
        .unwrap();
    let loss = cross_entropy(&logits, &yt).unwrap();
    let grads = loss.backward().unwrap();
    let out = fused.train_step(&x, &y, &mut ChaCha8Rng::seed_from_u64(1));

    let expected_loss = loss.to_scalar::<f32>().unwrap();
    assert!(
        (out.loss - expected_loss).abs() < 1e-5,
        "{activation:?}: loss {} vs {expected_loss}",
        out.loss
    );
    let candle_grads: HashMap<String, Vec<f32>> = model
        .trainable()
        .into_iter()
        .map(|(name, var)| {
            (
                name,
                grads
                    .get(var.as_tensor())
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap(),
            )
        })
        .collect();
    for (i, (gw, gb)) in fused.grads.iter().enumerate() {
        let name = fused.layer_name(i);
        for (mine, key) in [(gw, format!("{name}.weight")), (gb, format!("{name}.bias"))] {
            let theirs = &candle_grads[&key];
            for (a, b) in mine.iter().zip(theirs) {
                assert!((a - b).abs() < 1e-5, "{activation:?} {key}: {a} vs {b}");
            }
        }
    }
    let eval = fused.logits(&x, batch);
    let expected = model
        .forward(&xt, &mut Mode::Eval)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(
        eval.iter()
            .zip(&expected)
            .all(|(a, b)| (a - b).abs() < 1e-5)
    );
}

#[test]
fn gradients_match_candles_autograd_for_every_activation() {
    for activation in [
        Activation::Relu,
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::LeakyRelu,
        Activation::Identity,
    ] {
        check_against_candle(activation, 0.0);
    }
}

#[test]
fn dropout_draws_the_same_masks_as_the_candle_model() {
    check_against_candle(Activation::Relu, 0.3);
    check_against_candle(Activation::Tanh, 0.5);
}

#[test]
fn state_round_trips_into_the_candle_layout() {
    let spec = MlpSpec {
        depth: 2,
        width: 4,
        ..MlpSpec::default()
    };
    let model = Mlp::seeded(&spec, 3, 2, &mut ChaCha8Rng::seed_from_u64(2), &Device::Cpu).unwrap();
    let fused = FusedMlp::from_state(&spec, 3, 2, &model.state().unwrap(), 1).unwrap();
    let state: HashMap<String, Tensor> = fused.state(&Device::Cpu).unwrap().into_iter().collect();
    let back = Mlp::from_tensors(&spec, 3, 2, &state, &Device::Cpu).unwrap();
    let a: Vec<_> = model
        .state()
        .unwrap()
        .into_iter()
        .map(|(_, t)| t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect();
    let b: Vec<_> = back
        .state()
        .unwrap()
        .into_iter()
        .map(|(_, t)| t.flatten_all().unwrap().to_vec1::<f32>().unwrap())
        .collect();
    assert_eq!(a, b);
}
