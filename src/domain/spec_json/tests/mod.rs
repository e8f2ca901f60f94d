use super::*;
use crate::domain::parse_json;
use crate::error::Error;
use engine::spec::*;

fn parse(json: &str) -> Result<JobSpec> {
    let spec: JobSpec = parse_json(json.as_bytes())?;
    spec.validate()?;
    Ok(spec)
}

fn field_of(result: Result<JobSpec>) -> String {
    match result {
        Err(Error::Invalid { field, .. }) => field,
        other => panic!("expected a 422, got {other:?}"),
    }
}

#[test]
fn a_minimal_spec_gets_every_default() {
    let spec = parse(r#"{"dataset": "digits", "model": {"kind": "mlp"}}"#).unwrap();
    assert_eq!(spec.model, ModelSpec::Mlp(MlpSpec::default()));
    assert_eq!(spec.training, TrainingSpec::default());
    assert_eq!(spec.data, DataSpec::default());
    assert_eq!(spec.display_name(), "digits-mlp-2x64");
}

#[test]
fn the_design_documents_example_parses() {
    let spec = parse(
        r#"{"name": "digits-mlp-6x32", "dataset": "digits",
            "model": {"kind": "mlp", "depth": 6, "width": 32, "activation": "relu", "batch_norm": false},
            "training": {"optimizer": {"kind": "adam", "lr": 0.001}, "epochs": 30, "batch_size": 32, "seed": 7}}"#,
    )
    .unwrap();
    assert_eq!(spec.training.seed, Some(7));
    assert_eq!(spec.training.optimizer.lr(), 0.001);
}

#[test]
fn impossible_values_name_their_field() {
    let cases = [
        (
            r#""training": {"optimizer": {"kind": "adam", "lr": 0}}"#,
            "training.optimizer.lr",
        ),
        (
            r#""training": {"optimizer": {"kind": "sgd", "lr": -1}}"#,
            "training.optimizer.lr",
        ),
        (r#""training": {"batch_size": 0}"#, "training.batch_size"),
        (r#""training": {"epochs": 0}"#, "training.epochs"),
        (r#""training": {"epochs": 1000000}"#, "training.epochs"),
        (r#""data": {"val_fraction": 0}"#, "data.val_fraction"),
        (
            r#""data": {"val_fraction": 0.5, "test_fraction": 0.45}"#,
            "data.test_fraction",
        ),
        (
            r#""training": {"optimizer": {"kind": "sgd", "nesterov": true}}"#,
            "training.optimizer.nesterov",
        ),
        (
            r#""training": {"optimizer": {"kind": "sgd", "weight_decay": -1}}"#,
            "training.optimizer.weight_decay",
        ),
        (
            r#""training": {"optimizer": {"kind": "adamw", "beta2": 1}}"#,
            "training.optimizer.beta2",
        ),
        (
            r#""training": {"optimizer": {"kind": "rmsprop", "alpha": 1.5}}"#,
            "training.optimizer.alpha",
        ),
        (
            r#""training": {"optimizer": {"kind": "rmsprop", "eps": 0}}"#,
            "training.optimizer.eps",
        ),
        (
            r#""training": {"schedule": {"kind": "step", "gamma": 0}}"#,
            "training.schedule.gamma",
        ),
        (
            r#""training": {"schedule": {"kind": "step", "step_size": 0}}"#,
            "training.schedule.step_size",
        ),
        (
            r#""training": {"schedule": {"kind": "cosine", "min_lr": 1}}"#,
            "training.schedule.min_lr",
        ),
        (
            r#""training": {"schedule": {"kind": "reduce_on_plateau", "factor": 1}}"#,
            "training.schedule.factor",
        ),
        (
            r#""training": {"schedule": {"kind": "constant", "warmup_epochs": 2, "warmup_steps": 10}}"#,
            "training.schedule.warmup_steps",
        ),
        (
            r#""training": {"epochs": 3, "schedule": {"kind": "constant", "warmup_epochs": 4}}"#,
            "training.schedule.warmup_epochs",
        ),
        (
            r#""training": {"schedule": {"kind": "cosine", "gamma": 0.5}}"#,
            "training.schedule.gamma",
        ),
        (r#""training": {"grad_clip": {}}"#, "training.grad_clip"),
        (
            r#""training": {"grad_clip": {"max_norm": 0}}"#,
            "training.grad_clip.max_norm",
        ),
        (
            r#""training": {"grad_clip": {"max_value": -2}}"#,
            "training.grad_clip.max_value",
        ),
        (
            r#""training": {"early_stopping": {"patience": 0}}"#,
            "training.early_stopping.patience",
        ),
        (
            r#""training": {"early_stopping": {"metric": "test_acc"}}"#,
            "training.early_stopping.metric",
        ),
        (
            r#""training": {"early_stopping": {"min_delta": -0.1}}"#,
            "training.early_stopping.min_delta",
        ),
    ];
    for (fragment, field) in cases {
        let json = format!(r#"{{"dataset": "digits", "model": {{"kind": "mlp"}}, {fragment}}}"#);
        assert_eq!(field_of(parse(&json)), field, "{json}");
    }
    let depth0 = r#"{"dataset": "digits", "model": {"kind": "mlp", "depth": 0}}"#;
    assert_eq!(field_of(parse(depth0)), "model.depth");
    for (model, field) in [
        (r#""init": {"kind": "normal", "std": 0}"#, "model.init.std"),
        // Inside the tagged model, serde can only name `model`; the message names the variant.
        (r#""init": {"kind": "orthogonal"}"#, "model"),
        (r#""leaky_relu_slope": 1.5"#, "model.leaky_relu_slope"),
    ] {
        let json = format!(r#"{{"dataset": "digits", "model": {{"kind": "mlp", {model}}}}}"#);
        let got = field_of(parse(&json));
        assert!(got.starts_with(field), "{json}: {got}");
    }
}

#[test]
fn every_optimizer_parses_with_pytorchs_defaults() {
    let optimizer = |json: &str| {
        let text = format!(
            r#"{{"dataset": "d", "model": {{"kind": "mlp"}}, "training": {{"optimizer": {json}}}}}"#
        );
        parse(&text).unwrap().training.optimizer
    };
    assert_eq!(
        optimizer(r#"{"kind": "sgd"}"#),
        OptimizerSpec::Sgd {
            lr: 0.01,
            momentum: 0.0,
            nesterov: false,
            weight_decay: 0.0
        }
    );
    assert_eq!(
        optimizer(r#"{"kind": "adamw"}"#),
        OptimizerSpec::Adamw {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01
        }
    );
    assert_eq!(
        optimizer(r#"{"kind": "rmsprop", "centered": true}"#),
        OptimizerSpec::Rmsprop {
            lr: 0.01,
            alpha: 0.99,
            eps: 1e-8,
            momentum: 0.0,
            weight_decay: 0.0,
            centered: true
        }
    );
}

#[test]
fn filling_defaults_writes_the_init_and_metric_modes_that_will_run() {
    let mut spec = parse(
        r#"{"dataset": "d", "model": {"kind": "mlp", "activation": "sigmoid"},
            "training": {"schedule": {"kind": "reduce_on_plateau", "metric": "val_acc"},
                         "early_stopping": {"metric": "train_eval_loss", "patience": 3}}}"#,
    )
    .unwrap();
    spec.fill_defaults();
    let ModelSpec::Mlp(mlp) = &spec.model else {
        panic!("an mlp")
    };
    assert_eq!(mlp.init, Some(InitSpec::Xavier));
    assert!(matches!(
        spec.training.schedule,
        ScheduleSpec::ReduceOnPlateau {
            mode: Some(MetricMode::Max),
            ..
        }
    ));
    let early = spec.training.early_stopping.as_ref().unwrap();
    assert_eq!(early.mode, Some(MetricMode::Min));
    let relu = MlpSpec::default();
    assert_eq!(relu.resolved_init(), InitSpec::Kaiming);
    // A filled-in spec parses back to itself: what is stored is what runs.
    let text = serde_json::to_string(&spec).unwrap();
    assert_eq!(parse(&text).unwrap(), spec);
}

#[test]
fn a_warmup_combines_with_any_schedule() {
    let spec = parse(
        r#"{"dataset": "d", "model": {"kind": "mlp"},
            "training": {"epochs": 20, "schedule": {"kind": "cosine", "min_lr": 1e-5, "warmup_epochs": 2}}}"#,
    )
    .unwrap();
    assert_eq!(spec.training.schedule.warmup(), Warmup::Epochs(2));
    let spec = parse(
        r#"{"dataset": "d", "model": {"kind": "mlp"},
            "training": {"schedule": {"kind": "step", "step_size": 3, "warmup_steps": 100}}}"#,
    )
    .unwrap();
    assert_eq!(spec.training.schedule.warmup(), Warmup::Steps(100));
}

#[test]
fn unknown_fields_and_activations_are_rejected() {
    let unknown = r#"{"dataset": "digits", "model": {"kind": "mlp"}, "trainig": {}}"#;
    assert_eq!(field_of(parse(unknown)), "trainig");
    let activation = r#"{"dataset": "digits", "model": {"kind": "mlp", "activation": "swish"}}"#;
    assert!(field_of(parse(activation)).starts_with("model"));
    let kind = r#"{"dataset": "digits", "model": {"kind": "transformer"}}"#;
    assert!(field_of(parse(kind)).starts_with("model"));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
    #[test]
    fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
        let _ = parse_json::<JobSpec>(&bytes).and_then(|spec| Ok(spec.validate()?));
    }

    #[test]
    fn parsing_arbitrary_numbers_in_a_spec_never_panics(
        depth in proptest::prelude::any::<i64>(), width in proptest::prelude::any::<i64>(),
        lr in proptest::prelude::any::<f64>(), epochs in proptest::prelude::any::<i64>(),
        batch in proptest::prelude::any::<i64>(), dropout in proptest::prelude::any::<f64>(),
    ) {
        let json = format!(
            r#"{{"dataset": "d", "model": {{"kind": "mlp", "depth": {depth}, "width": {width}, "dropout": {dropout:?}}},
                 "training": {{"optimizer": {{"kind": "sgd", "lr": {lr:?}}}, "epochs": {epochs}, "batch_size": {batch}}}}}"#
        );
        let _ = parse(&json);
    }
}

#[test]
fn a_cnn_spec_gets_its_defaults_and_bad_values_are_named() {
    let spec = parse(r#"{"dataset": "shapes", "model": {"kind": "cnn"}}"#).unwrap();
    assert_eq!(spec.model, ModelSpec::Cnn(CnnSpec::default()));
    assert_eq!(spec.display_name(), "shapes-cnn-16-32");
    spec.validate_for_dataset(Some([3, 32, 32])).unwrap();
    let field = |json: &str| field_of(parse(json));
    assert_eq!(
        field(r#"{"dataset": "shapes", "model": {"kind": "cnn", "blocks": [{"channels": 0}]}}"#),
        "model.blocks[0].channels"
    );
    assert_eq!(
        field(
            r#"{"dataset": "shapes", "model": {"kind": "cnn", "blocks": [{}, {"kernel": 3, "padding": 3}]}}"#
        ),
        "model.blocks[1].padding"
    );
    assert_eq!(
        field(r#"{"dataset": "shapes", "model": {"kind": "cnn", "head": {"dropout": 1.5}}}"#),
        "model.head.dropout"
    );
    assert_eq!(
        field(r#"{"dataset": "shapes", "model": {"kind": "cnn", "blocks": []}}"#),
        "model.blocks"
    );
    let no_images = spec
        .validate_for_dataset(None)
        .map_err(Error::from)
        .unwrap_err();
    assert!(
        matches!(&no_images, Error::Invalid { field, message } if field == "dataset" && message.contains("a CNN needs image_shape")),
        "{no_images:?}"
    );
    let deep =
        parse(r#"{"dataset": "digits", "model": {"kind": "cnn", "blocks": [{}, {}, {}, {}]}}"#)
            .unwrap();
    let too_small = deep
        .validate_for_dataset(Some([1, 8, 8]))
        .map_err(Error::from)
        .unwrap_err();
    assert!(
        matches!(&too_small, Error::Invalid { field, .. } if field == "model.blocks[3]"),
        "{too_small:?}"
    );
}

#[test]
fn a_resnet_spec_gets_torchvisions_defaults_and_one_weights_source() {
    let spec = parse(r#"{"dataset": "shapes", "model": {"kind": "resnet34"}}"#).unwrap();
    assert_eq!(spec.model, ModelSpec::Resnet34(ResNetSpec::default()));
    assert_eq!(spec.display_name(), "shapes-resnet34");
    spec.validate_for_dataset(Some([3, 224, 224])).unwrap();
    let field = |json: &str| field_of(parse(json));
    assert_eq!(
        field(r#"{"dataset": "shapes", "model": {"kind": "resnet18", "width": 0}}"#),
        "model.width"
    );
    assert_eq!(
        field(
            r#"{"dataset": "shapes", "model": {"kind": "resnet18"}, "init": {"mode": "fine_tune", "from_job": "a", "from_weights": "b"}}"#
        ),
        "init.from_weights"
    );
    assert_eq!(
        field(
            r#"{"dataset": "shapes", "model": {"kind": "resnet18"}, "init": {"mode": "linear_probe"}}"#
        ),
        "init.from_job"
    );
    let probe = parse(
        r#"{"dataset": "shapes", "model": {"kind": "resnet18", "stem": "small", "width": 8}, "init": {"mode": "linear_probe", "from_weights": "w"}}"#,
    )
    .unwrap();
    assert_eq!(probe.display_name(), "shapes-resnet18-w8");
    let wide =
        parse(r#"{"dataset": "shapes", "model": {"kind": "resnet34", "width": 128}}"#).unwrap();
    let too_big = wide
        .validate_for_dataset(Some([3, 32, 32]))
        .map_err(Error::from)
        .unwrap_err();
    assert!(
        matches!(&too_big, Error::Invalid { field, .. } if field == "model.width"),
        "{too_big:?}"
    );
    let no_images = spec
        .validate_for_dataset(None)
        .map_err(Error::from)
        .unwrap_err();
    assert!(
        no_images
            .to_string()
            .contains("a resnet34 needs image_shape"),
        "{no_images}"
    );
}

#[test]
fn job_names_are_counted_in_characters_and_refuse_control_and_bidi_characters() {
    let spec = |name: &str| {
        parse(
            &serde_json::json!({"name": name, "dataset": "digits", "model": {"kind": "mlp"}})
                .to_string(),
        )
    };
    // 200 two-byte characters are 400 bytes, and still a valid name.
    spec(&"é".repeat(MAX_NAME_CHARS)).unwrap();
    assert_eq!(field_of(spec(&"é".repeat(MAX_NAME_CHARS + 1))), "name");
    for bad in [
        "",
        "   ",
        "a\u{0}b",
        "line\nbreak",
        "invoice\u{202E}fdp.exe",
        "\u{2067}x",
        "x\u{200F}",
    ] {
        assert_eq!(field_of(spec(bad)), "name", "{bad:?}");
    }
}

#[test]
fn split_sizes_are_checked_against_the_data_sets_classes() {
    let data = |val: f64, test: f64| DataSpec {
        val_fraction: val,
        test_fraction: test,
        ..DataSpec::default()
    };
    let digits = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180];
    data(0.15, 0.15).check_split_sizes(&digits).unwrap();
    data(0.01, 0.0).check_split_sizes(&digits).unwrap();
    let field = |result: engine::Result<()>| match result.map_err(Error::from) {
        Err(Error::Invalid { field, .. }) => field,
        other => panic!("expected a 422, got {other:?}"),
    };
    // Valid on its own (0 < x < 1), but no class gets a single validation row.
    assert!(data(1e-320, 0.15).validate().is_ok());
    assert_eq!(
        field(data(1e-320, 0.15).check_split_sizes(&digits)),
        "data.val_fraction"
    );
    assert_eq!(
        field(data(0.15, 1e-9).check_split_sizes(&digits)),
        "data.test_fraction"
    );
    // Three rows per class: 0.15 of 3 rounds to 0 validation rows.
    assert_eq!(
        field(data(0.15, 0.0).check_split_sizes(&[3, 3])),
        "data.val_fraction"
    );
    assert_eq!(
        field(data(0.5, 0.3).check_split_sizes(&[1, 1])),
        "data.val_fraction"
    );
}

mod properties;

#[test]
fn a_kind_given_as_a_number_is_refused_not_read_as_a_variant_index() {
    let err = crate::domain::parse_job_spec(
        br#"{"dataset": "digits", "model": {"kind": "mlp", "init": {"kind": 0}}}"#,
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::Invalid { ref field, .. } if field == "model.init.kind"),
        "{err:?}"
    );
    let err = crate::domain::parse_job_spec(br#"{"dataset": "digits", "model": {"kind": 1}}"#)
        .unwrap_err();
    assert!(
        matches!(err, Error::Invalid { ref field, .. } if field == "model.kind"),
        "{err:?}"
    );
    crate::domain::parse_job_spec(
        br#"{"dataset": "digits", "model": {"kind": "mlp", "init": {"kind": "xavier"}}}"#,
    )
    .unwrap();
}

#[test]
fn an_initialization_without_parameters_refuses_extra_fields() {
    let err = crate::domain::parse_job_spec(
        br#"{"dataset": "digits", "model": {"kind": "mlp", "init": {"kind": "xavier", "std": 0.1}}}"#,
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::Invalid { ref field, .. } if field == "model.init.std"),
        "{err:?}"
    );
    crate::domain::parse_job_spec(br#"{"dataset": "digits", "model": {"kind": "mlp", "init": {"kind": "normal", "std": 0.1}}}"#)
        .unwrap();
}

#[test]
fn a_list_where_an_object_belongs_is_refused() {
    let err = crate::domain::parse_job_spec(
        br#"{"dataset": "digits", "model": {"kind": "mlp"}, "data": {"preprocessing": [null, null]}}"#,
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::Invalid { ref field, .. } if field == "data.preprocessing"),
        "{err:?}"
    );
}
