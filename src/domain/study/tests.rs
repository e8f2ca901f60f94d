//! The planner: which questions fit a data set, what each budget runs, and the refusals.
use super::*;

fn request(kind: StudyKind) -> StudyRequest {
    serde_json::from_value(json!({"kind": kind, "dataset": "digits", "budget": "quick"})).unwrap()
}

fn table() -> DataFacts {
    DataFacts {
        name: "digits".into(),
        rows: 1797,
        features: 64,
        image_shape: None,
        classes: 10,
    }
}

fn images() -> DataFacts {
    DataFacts {
        name: "shapes".into(),
        rows: 1500,
        features: 3072,
        image_shape: Some([3, 32, 32]),
        classes: 3,
    }
}

#[test]
fn all_on_a_table_plans_every_question_but_transfer() {
    let parts = plan_study(&request(StudyKind::All), &table()).unwrap();
    let questions: Vec<StudyKind> = parts.iter().map(|p| p.question).collect();
    assert_eq!(questions, &StudyKind::QUESTIONS[..6]);
}

#[test]
fn all_on_images_plans_transfer_with_its_source_first() {
    let parts = plan_study(&request(StudyKind::All), &images()).unwrap();
    let keys: Vec<String> = parts.iter().map(StudyPart::key).collect();
    assert_eq!(&keys[6..], ["transfer.source", "transfer"]);
    assert_eq!(parts[7].sweep.base["init"]["from_job"], SOURCE_PLACEHOLDER);
    let filled = with_source(parts[7].sweep.clone(), "abc");
    assert_eq!(filled.base["init"]["from_job"], "abc");
}

#[test]
fn transfer_on_a_table_is_refused_naming_kind_and_what_fits() {
    let err = plan_study(&request(StudyKind::Transfer), &table()).unwrap_err();
    let Error::Invalid { field, message } = err else {
        panic!("{err:?}")
    };
    assert_eq!(field, "kind");
    assert!(
        message.contains("learning_rate") && message.contains("images"),
        "{message}"
    );
    let small = DataFacts {
        image_shape: Some([1, 8, 8]),
        ..table()
    };
    let Error::Invalid { message, .. } =
        plan_study(&request(StudyKind::Transfer), &small).unwrap_err()
    else {
        panic!()
    };
    assert!(message.contains("8×8 images"), "{message}");
}

#[test]
fn every_planned_sweep_expands_into_valid_trials() {
    for facts in [table(), images()] {
        for part in plan_study(&request(StudyKind::All), &facts).unwrap() {
            let sweep = with_source(part.sweep, "0190a1b2-0000-7000-8000-000000000000");
            let trials = sweep
                .expand()
                .unwrap_or_else(|e| panic!("{}: {e:?}", part.question));
            assert!(!trials.is_empty());
        }
    }
}

#[test]
fn the_budget_scales_epochs_and_grids() {
    let mut quick = request(StudyKind::LearningRate);
    let q = plan_study(&quick, &table()).unwrap();
    quick.budget = Budget::Thorough;
    let t = plan_study(&quick, &table()).unwrap();
    assert!(t[0].sweep.expand().unwrap().len() > q[0].sweep.expand().unwrap().len());
    assert!(
        t[0].sweep.base["training"]["epochs"].as_u64()
            > q[0].sweep.base["training"]["epochs"].as_u64()
    );
}
