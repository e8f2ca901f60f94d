//! Arbitrary and near-valid bodies through parse and validate: accepted or refused, never a
//! panic, and what is accepted round-trips.

use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

/// Arbitrary JSON, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        "\\PC{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A spec close to valid: the real field names, with values that are sometimes wrong.
fn near_spec() -> impl Strategy<Value = Value> {
    let number = prop_oneof![
        any::<f64>().prop_map(|n| json!(n)),
        (-5i64..100).prop_map(|n| json!(n)),
        (0.0f64..1.0).prop_map(|n| json!(n)),
        Just(json!(1e-320)),
        Just(json!(u64::MAX)),
    ];
    let kind = proptest::sample::select(vec!["mlp", "cnn", "resnet18", "svm"]);
    let optimizer = proptest::sample::select(vec!["adam", "sgd", "adamw", "rmsprop", "lbfgs"]);
    (
        proptest::option::of("\\PC{0,250}"),
        kind,
        optimizer,
        proptest::collection::vec(number, 8),
        json_value(),
    )
        .prop_map(|(name, kind, optimizer, n, extra)| {
            let mut spec = json!({
                "dataset": "digits",
                "model": {"kind": kind, "depth": n[0], "width": n[1]},
                "data": {"val_fraction": n[2], "test_fraction": n[3]},
                "training": {
                    "optimizer": {"kind": optimizer, "lr": n[4]},
                    "epochs": n[5], "batch_size": n[6], "seed": n[7],
                },
            });
            if let Some(name) = name {
                spec["name"] = json!(name);
            }
            if let Value::Object(extra) = extra {
                for (key, value) in extra.into_iter().take(1) {
                    spec["training"][key] = value;
                }
            }
            spec
        })
}

/// Parses and validates the way `POST /v1/jobs` does; panics are the failure looked for.
fn check(body: &[u8]) -> std::result::Result<(), TestCaseError> {
    match crate::domain::parse_job_spec(body).and_then(|spec| Ok(spec.validate().map(|_| spec)?)) {
        Ok(mut spec) => {
            // What was accepted re-serializes to a spec that parses and validates to the
            // same values, and so does the stored form with its defaults written out.
            let again: JobSpec = parse_json(&serde_json::to_vec(&spec).unwrap()).unwrap();
            again.validate().unwrap();
            prop_assert!(same(&json!(again), &json!(spec)), "{again:?} != {spec:?}");
            spec.fill_defaults();
            let stored: JobSpec = parse_json(&serde_json::to_vec(&spec).unwrap()).unwrap();
            stored.validate().unwrap();
            prop_assert!(same(&json!(stored), &json!(spec)), "{stored:?} != {spec:?}");
        }
        Err(Error::Invalid { field, .. }) => prop_assert!(!field.is_empty()),
        Err(Error::BadRequest { .. }) => {}
        Err(other) => prop_assert!(false, "neither accepted nor a 4xx: {other:?}"),
    }
    Ok(())
}

/// Equal JSON, numbers to within a unit in the last place or so (serde_json's default
/// float parsing is not always exact).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            x == y || (x - y).abs() <= 1e-15 * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_json_is_accepted_or_refused_never_a_panic(value in json_value()) {
        check(&serde_json::to_vec(&value).unwrap())?;
    }

    #[test]
    fn arbitrary_bytes_are_accepted_or_refused_never_a_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..200)
    ) {
        check(&bytes)?;
    }

    #[test]
    fn near_valid_specs_round_trip_whenever_accepted(spec in near_spec()) {
        check(&serde_json::to_vec(&spec).unwrap())?;
    }
}
