use serde_json::json;

use super::*;

fn sweep(value: Value) -> SweepSpec {
    serde_json::from_value(value).unwrap()
}

fn base() -> Value {
    json!({"dataset": "digits", "model": {"kind": "mlp"}, "training": {"optimizer": {"kind": "adam", "lr": 0.001}, "epochs": 2, "seed": 7}})
}

#[test]
fn a_grid_is_every_combination_times_the_repeats() {
    let trials = sweep(json!({"base": base(), "axes": {"training.optimizer.lr": [0.1, 0.01, 0.001], "model.depth": [1, 2]}, "repeats": 2}))
        .expand()
        .unwrap();
    assert_eq!(trials.len(), 12);
    let seeds: Vec<u64> = trials
        .iter()
        .map(|t| t.spec.training.seed.unwrap())
        .collect();
    assert_eq!(&seeds[..4], &[7, 8, 7, 8]);
    assert!(trials.iter().any(|t| t.spec.training.optimizer.lr() == 0.01
        && matches!(&t.spec.model, crate::domain::ModelSpec::Mlp(m) if m.depth == 2)));
    assert_eq!(trials[11].index, 11);
}

#[test]
fn random_search_samples_within_the_distributions_deterministically() {
    let spec = sweep(
        json!({"base": base(), "search": {"kind": "random", "trials": 20, "seed": 3},
        "axes": {"training.optimizer.lr": {"log_uniform": [1e-5, 1.0]}, "model.width": {"choice": [8, 16]}, "model.depth": {"int_uniform": [1, 3]}}}),
    );
    let a = spec.expand().unwrap();
    let b = spec.expand().unwrap();
    assert_eq!(a.len(), 20);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.params, y.params);
        let lr = x.spec.training.optimizer.lr();
        assert!((1e-5..=1.0).contains(&lr), "{lr}");
    }
}

#[test]
fn an_invalid_axis_value_is_reported_on_its_axis() {
    let err = sweep(json!({"base": base(), "axes": {"training.optimizer.lr": [0.1, -1]}}))
        .expand()
        .unwrap_err();
    match err {
        Error::Invalid { field, message } => {
            assert_eq!(field, "axes.training.optimizer.lr");
            assert!(message.contains("-1"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let err = sweep(json!({"base": base(), "axes": {"model.colour": ["red"]}}))
        .expand()
        .unwrap_err();
    assert!(
        matches!(err, Error::Invalid { ref field, .. } if field == "axes.model.colour"),
        "{err:?}"
    );
    let err = sweep(
        json!({"base": base(), "axes": {"training.optimizer.lr": {"log_uniform": [0.1, 1]}}}),
    )
    .expand()
    .unwrap_err();
    assert!(
        matches!(err, Error::Invalid { ref field, .. } if field == "axes.training.optimizer.lr"),
        "{err:?}"
    );
}

#[test]
fn oversized_sweeps_are_refused() {
    let many: Vec<u32> = (1..=40).collect();
    let err = sweep(json!({"base": base(), "axes": {"model.width": many, "model.depth": many}}))
        .expand()
        .unwrap_err();
    assert!(
        matches!(err, Error::Invalid { ref field, .. } if field == "axes"),
        "{err:?}"
    );
}
