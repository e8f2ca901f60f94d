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

fn invalid_field(err: Error) -> String {
    match err {
        Error::Invalid { field, .. } => field,
        other => panic!("expected a 422, got {other:?}"),
    }
}

#[test]
fn a_negative_base_seed_is_a_422_naming_it_not_seed_zero() {
    let mut spec = base();
    spec["training"]["seed"] = json!(-1);
    let err = sweep(json!({"base": spec, "axes": {"model.depth": [1, 2]}}))
        .expand()
        .unwrap_err();
    assert_eq!(invalid_field(err), "base.training.seed");
    spec["training"]["seed"] = json!("7");
    let err = sweep(json!({"base": spec, "axes": {"model.depth": [1]}}))
        .expand()
        .unwrap_err();
    assert_eq!(invalid_field(err), "base.training.seed");
}

#[test]
fn seeds_whose_repeats_would_wrap_past_2_64_are_refused() {
    let mut spec = base();
    spec["training"]["seed"] = json!(u64::MAX);
    let err = sweep(json!({"base": spec, "axes": {"model.depth": [1]}, "repeats": 2}))
        .expand()
        .unwrap_err();
    assert_eq!(invalid_field(err), "base.training.seed");
    // One repeat of the largest seed is fine, and so are the largest seeds that still fit.
    let trials = sweep(json!({"base": spec, "axes": {"model.depth": [1]}}))
        .expand()
        .unwrap();
    assert_eq!(trials[0].spec.training.seed, Some(u64::MAX));
    spec["training"]["seed"] = json!(u64::MAX - 2);
    let trials = sweep(json!({"base": spec, "axes": {"model.depth": [1]}, "repeats": 3}))
        .expand()
        .unwrap();
    let seeds: Vec<_> = trials
        .iter()
        .map(|t| t.spec.training.seed.unwrap())
        .collect();
    assert_eq!(seeds, [u64::MAX - 2, u64::MAX - 1, u64::MAX]);
}

#[test]
fn a_seed_axis_sets_each_points_first_seed() {
    let trials =
        sweep(json!({"base": base(), "axes": {"training.seed": [100, 200]}, "repeats": 2}))
            .expand()
            .unwrap();
    let seeds: Vec<_> = trials
        .iter()
        .map(|t| t.spec.training.seed.unwrap())
        .collect();
    assert_eq!(seeds, [100, 101, 200, 201]);
    let err = sweep(json!({"base": base(), "axes": {"training.seed": [-5]}}))
        .expand()
        .unwrap_err();
    assert_eq!(invalid_field(err), "axes.training.seed");
}

#[test]
fn sweep_names_are_counted_in_characters_and_refuse_bidi_overrides() {
    let accents = "é".repeat(MAX_NAME_CHARS); // 300 bytes, 150 characters
    sweep(json!({"name": accents, "base": base(), "axes": {"model.depth": [1]}}))
        .expand()
        .unwrap();
    let long = "é".repeat(MAX_NAME_CHARS + 1);
    let err = sweep(json!({"name": long, "base": base(), "axes": {"model.depth": [1]}}))
        .expand()
        .unwrap_err();
    assert_eq!(invalid_field(err), "name");
    for bad in ["abc\u{202E}fdp.exe", "tab\there", "\u{2066}x"] {
        let err = sweep(json!({"name": bad, "base": base(), "axes": {"model.depth": [1]}}))
            .expand()
            .unwrap_err();
        assert_eq!(invalid_field(err), "name", "{bad:?}");
    }
}

#[test]
fn an_impossible_base_value_is_refused_even_where_an_axis_replaces_it() {
    let mut spec = base();
    spec["training"]["optimizer"]["lr"] = json!(11);
    let err = sweep(json!({"base": spec, "axes": {"training.optimizer.lr": [0.01, 0.1]}}))
        .expand()
        .unwrap_err();
    assert_eq!(invalid_field(err), "base.training.optimizer.lr");
    // A base that leaves the model to an axis is judged by its trials.
    let trials = sweep(json!({"base": {"dataset": "digits"},
        "axes": {"model": [{"kind": "mlp", "depth": 1}, {"kind": "mlp", "depth": 2}]}}))
    .expand()
    .unwrap();
    assert_eq!(trials.len(), 2);
}
