//! Every optimizer against steps computed by hand on loss = w² (gradient 2w), starting at w = 1.

use super::*;
use candle_core::Device;

fn one_param(value: f32) -> (Var, Vec<(String, Var)>) {
    let var = Var::new(&[value], &Device::Cpu).unwrap();
    (var.clone(), vec![("w".to_string(), var)])
}

fn step_on_square(opt: &mut Optimizer, var: &Var, lr: f64) {
    let grads = var
        .as_tensor()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let g = grads.get(var.as_tensor()).cloned();
    opt.step(&[g], lr).unwrap();
}

fn value(var: &Var) -> f64 {
    f64::from(var.as_tensor().to_vec1::<f32>().unwrap()[0])
}

/// Runs `lr`-steps on w² from w = 1 and returns w after each.
fn trajectory(spec: &OptimizerSpec, lr: f64, steps: usize) -> Vec<f64> {
    let (var, params) = one_param(1.0);
    let mut opt = Optimizer::new(spec, params).unwrap();
    (0..steps)
        .map(|_| {
            step_on_square(&mut opt, &var, lr);
            value(&var)
        })
        .collect()
}

fn assert_close(actual: &[f64], expected: &[f64]) {
    for (a, e) in actual.iter().zip(expected) {
        assert!((a - e).abs() < 1e-5, "{actual:?} vs {expected:?}");
    }
}

fn sgd(momentum: f64, nesterov: bool, weight_decay: f64) -> OptimizerSpec {
    OptimizerSpec::Sgd {
        lr: 0.1,
        momentum,
        nesterov,
        weight_decay,
    }
}

#[test]
fn plain_sgd_moves_against_the_gradient() {
    // w = 1 − 0.1·2 = 0.8; w = 0.8 − 0.1·1.6 = 0.64
    assert_close(&trajectory(&sgd(0.0, false, 0.0), 0.1, 2), &[0.8, 0.64]);
}

#[test]
fn sgd_with_momentum_matches_hand_computed_steps() {
    // b = 2, w = 0.8; b = 0.9·2 + 1.6 = 3.4, w = 0.8 − 0.34 = 0.46
    assert_close(&trajectory(&sgd(0.9, false, 0.0), 0.1, 2), &[0.8, 0.46]);
}

#[test]
fn nesterov_looks_ahead_along_the_momentum() {
    // b = 2, d = 2 + 0.9·2 = 3.8, w = 0.62;
    // g = 1.24, b = 1.8 + 1.24 = 3.04, d = 1.24 + 0.9·3.04 = 3.976, w = 0.62 − 0.3976 = 0.2224
    assert_close(&trajectory(&sgd(0.9, true, 0.0), 0.1, 2), &[0.62, 0.2224]);
}

#[test]
fn sgd_weight_decay_adds_an_l2_term_to_the_gradient() {
    // d = 2 + 0.5·1 = 2.5, w = 0.75
    assert_close(&trajectory(&sgd(0.0, false, 0.5), 0.1, 1), &[0.75]);
}

fn adam_step2(w1: f64, d1: f64, d2: f64) -> f64 {
    let m = 0.9 * 0.1 * d1 + 0.1 * d2;
    let v = 0.999 * 0.001 * d1 * d1 + 0.001 * d2 * d2;
    let m_hat = m / (1.0 - 0.81);
    let v_hat = v / (1.0 - 0.998_001);
    w1 - 0.1 * m_hat / (v_hat.sqrt() + 1e-8)
}

#[test]
fn adam_matches_hand_computed_steps() {
    let spec = OptimizerSpec::Adam {
        lr: 0.1,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    };
    // The first Adam step moves by lr·sign(g) whatever the gradient's size; then g = 1.8.
    let w = trajectory(&spec, 0.1, 2);
    assert_close(&w, &[0.9, adam_step2(0.9, 2.0, 1.8)]);
}

#[test]
fn adam_weight_decay_is_coupled_into_the_moments() {
    let spec = OptimizerSpec::Adam {
        lr: 0.1,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 1.0,
    };
    // d = g + θ: 3 at w = 1, then 1.8 + 0.9 = 2.7 at w = 0.9.
    let w = trajectory(&spec, 0.1, 2);
    assert_close(&w, &[0.9, adam_step2(0.9, 3.0, 2.7)]);
}

#[test]
fn adamw_decays_the_weights_outside_the_moments() {
    let spec = OptimizerSpec::Adamw {
        lr: 0.1,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.5,
    };
    // θ·(1 − 0.1·0.5) = 0.95, then the Adam step of −0.1: 0.85.
    // Then θ = 0.85·0.95 = 0.8075 and the Adam step with gradients 2 then 1.7.
    let w = trajectory(&spec, 0.1, 2);
    assert_close(&w, &[0.85, adam_step2(0.8075, 2.0, 1.7)]);
}

fn rmsprop(momentum: f64, centered: bool) -> OptimizerSpec {
    OptimizerSpec::Rmsprop {
        lr: 0.01,
        alpha: 0.99,
        eps: 1e-8,
        momentum,
        weight_decay: 0.0,
        centered,
    }
}

#[test]
fn rmsprop_divides_by_the_root_mean_square() {
    // s = 0.01·4 = 0.04, w = 1 − 0.01·2/0.2 = 0.9;
    // s = 0.99·0.04 + 0.01·1.8² = 0.072, w = 0.9 − 0.01·1.8/√0.072
    let second = 0.9 - 0.01 * 1.8 / 0.072f64.sqrt();
    assert_close(&trajectory(&rmsprop(0.0, false), 0.01, 2), &[0.9, second]);
}

#[test]
fn centered_rmsprop_subtracts_the_squared_mean_gradient() {
    // s = 0.04, ḡ = 0.02, w = 1 − 0.01·2/√(0.04 − 0.0004)
    let first = 1.0 - 0.01 * 2.0 / 0.0396f64.sqrt();
    assert_close(&trajectory(&rmsprop(0.0, true), 0.01, 1), &[first]);
}

#[test]
fn rmsprop_momentum_accumulates_the_scaled_steps() {
    // b = 2/0.2 = 10, w = 0.9; b = 9 + 1.8/√0.072, w = 0.9 − 0.01·b
    let second = 0.9 - 0.01 * (9.0 + 1.8 / 0.072f64.sqrt());
    assert_close(&trajectory(&rmsprop(0.9, false), 0.01, 2), &[0.9, second]);
}

#[test]
fn a_parameter_without_a_gradient_is_left_alone() {
    let (var, params) = one_param(1.0);
    let mut opt = Optimizer::new(&sgd(0.9, false, 0.1), params).unwrap();
    opt.step(&[None], 0.1).unwrap();
    assert_eq!(value(&var), 1.0);
    assert!(opt.step(&[], 0.1).is_err(), "a misaligned gradient list");
}

#[test]
fn restored_state_continues_bit_identically_for_every_optimizer() {
    let specs = [
        sgd(0.9, true, 0.01),
        OptimizerSpec::Adam {
            lr: 0.05,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        },
        OptimizerSpec::Adamw {
            lr: 0.05,
            beta1: 0.8,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.1,
        },
        rmsprop(0.5, true),
    ];
    for spec in specs {
        let (a, params) = one_param(1.0);
        let mut straight = Optimizer::new(&spec, params).unwrap();
        for _ in 0..3 {
            step_on_square(&mut straight, &a, 0.05);
        }
        let saved: HashMap<String, Tensor> = straight.state().unwrap().into_iter().collect();
        let (b, params) = one_param(value(&a) as f32);
        let mut resumed = Optimizer::new(&spec, params).unwrap();
        resumed.load_state(&saved).unwrap();
        for _ in 0..2 {
            step_on_square(&mut straight, &a, 0.05);
            step_on_square(&mut resumed, &b, 0.05);
        }
        assert_eq!(value(&a).to_bits(), value(&b).to_bits(), "{spec:?}");
    }
}

#[test]
fn missing_state_is_an_error_not_a_panic() {
    let (_, params) = one_param(1.0);
    let mut opt = Optimizer::new(&rmsprop(0.9, true), params).unwrap();
    assert!(opt.load_state(&HashMap::new()).is_err());
}

#[test]
fn a_group_learns_at_its_scaled_rate_and_shared_state_is_saved_once() {
    let a = Var::new(&[1f32], &Device::Cpu).unwrap();
    let b = Var::new(&[1f32], &Device::Cpu).unwrap();
    let spec = sgd(0.0, false, 0.0);
    let mut opt = Optimizer::grouped(
        &spec,
        vec![
            (vec![("a".into(), a.clone())], 0.1),
            (vec![("b".into(), b.clone())], 1.0),
        ],
    )
    .unwrap();
    let g = Tensor::new(&[1f32], &Device::Cpu).unwrap();
    opt.step(&[Some(g.clone()), Some(g)], 0.5).unwrap();
    assert!((value(&a) - 0.95).abs() < 1e-6, "{}", value(&a));
    assert!((value(&b) - 0.5).abs() < 1e-6, "{}", value(&b));
    let adam: OptimizerSpec = serde_json::from_str(r#"{"kind": "adam", "lr": 0.001}"#).unwrap();
    let groups = vec![
        (vec![("a".into(), a.clone())], 0.1),
        (vec![("b".into(), b.clone())], 1.0),
    ];
    let opt = Optimizer::grouped(&adam, groups).unwrap();
    let names: Vec<String> = opt.state().unwrap().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names.iter().filter(|n| *n == "step").count(),
        1,
        "{names:?}"
    );
}

/// Runs three steps on `Σ w²·c` for a 70,001-element parameter (large enough to split across
/// threads) of `dtype` and returns it.
fn steps_on_many(spec: &OptimizerSpec, dtype: candle_core::DType) -> Vec<f64> {
    let n = 70_001;
    let start: Vec<f64> = (0..n).map(|i| ((i % 97) as f64 - 48.0) / 17.0).collect();
    let weights = Tensor::from_vec(
        (0..n).map(|i| 1.0 + (i % 5) as f64).collect::<Vec<_>>(),
        n,
        &Device::Cpu,
    )
    .unwrap()
    .to_dtype(dtype)
    .unwrap();
    let var = Var::from_tensor(
        &Tensor::from_vec(start, n, &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap(),
    )
    .unwrap();
    let mut opt = Optimizer::new(spec, vec![("w".to_string(), var.clone())]).unwrap();
    for _ in 0..3 {
        let loss = (var.as_tensor().sqr().unwrap() * &weights)
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        opt.step(&[grads.get(var.as_tensor()).cloned()], 0.05)
            .unwrap();
    }
    var.as_tensor()
        .to_dtype(candle_core::DType::F64)
        .unwrap()
        .to_vec1()
        .unwrap()
}

#[test]
fn the_element_wise_rules_match_the_tensor_reference() {
    // f32 parameters on the CPU take the element-wise rules in place, f64 ones the tensor
    // reference.
    let adam = |weight_decay| OptimizerSpec::Adam {
        lr: 0.05,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay,
    };
    let specs = [
        adam(0.0),
        adam(0.1),
        OptimizerSpec::Adamw {
            lr: 0.05,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.1,
        },
        sgd(0.0, false, 0.0),
        sgd(0.0, false, 0.1),
        sgd(0.9, false, 0.0),
        sgd(0.9, true, 0.1),
        rmsprop(0.0, false),
        rmsprop(0.9, true),
        OptimizerSpec::Rmsprop {
            lr: 0.01,
            alpha: 0.9,
            eps: 1e-8,
            momentum: 0.5,
            weight_decay: 0.1,
            centered: false,
        },
    ];
    for spec in specs {
        let fused = steps_on_many(&spec, candle_core::DType::F32);
        let tensors = steps_on_many(&spec, candle_core::DType::F64);
        for (i, (a, b)) in fused.iter().zip(&tensors).enumerate() {
            let tolerance = 1e-5 * (1.0 + b.abs());
            assert!(
                (a - b).abs() < tolerance,
                "element {i}: {a} vs {b} ({spec:?})"
            );
        }
    }
}
