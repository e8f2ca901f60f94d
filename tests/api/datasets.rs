use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::helpers::{Api, TestApp};

async fn upload(app: &TestApp, form: Form) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url("/v1/datasets"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    crate::helpers::decode(response).await
}

fn csv_part(text: String) -> Part {
    Part::text(text)
        .file_name("data.csv")
        .mime_str("text/csv")
        .unwrap()
}

/// Two well-separated blobs per class, labelled with strings.
fn fruit_csv(rows: usize) -> String {
    let mut text = String::from("weight,colour_score,label\n");
    for i in 0..rows {
        let jitter = (i % 7) as f64 * 0.05;
        let (w, c, label) = match i % 3 {
            0 => (1.0 + jitter, 5.0 - jitter, "apple"),
            1 => (3.0 - jitter, 1.0 + jitter, "banana"),
            _ => (6.0 + jitter, 3.0 + jitter, "cherry"),
        };
        text.push_str(&format!("{w},{c},{label}\n"));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_in_data_sets_are_ready_on_first_start() {
    let app = TestApp::spawn().await;
    let (status, list) = app.get("/v1/datasets").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list["datasets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"digits") && names.contains(&"regions") && names.contains(&"shapes"),
        "{names:?}"
    );

    let (_, digits) = app.get("/v1/datasets/digits").await;
    assert_eq!(digits["rows"], 1797);
    assert_eq!(digits["features"], 64);
    assert_eq!(digits["image_shape"], json!([1, 8, 8]));
    assert_eq!(digits["channels"], 1);
    let classes = digits["classes"].as_array().unwrap();
    assert_eq!(classes.len(), 10);
    assert!(classes.iter().all(|c| c["count"].as_u64().unwrap() > 170));
    let split = &digits["default_split"];
    assert_eq!(
        split["train"].as_u64().unwrap()
            + split["val"].as_u64().unwrap()
            + split["test"].as_u64().unwrap(),
        1797
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_csv_with_string_labels_trains_and_predicts_its_own_labels() {
    let app = TestApp::spawn().await;
    let form = Form::new()
        .text("name", "fruit")
        .text("label_column", "label")
        .part("file", csv_part(fruit_csv(90)));
    let (status, dataset) = upload(&app, form).await;
    assert_eq!(status, StatusCode::CREATED, "{dataset}");
    assert_eq!(dataset["label_kind"], "string");
    assert_eq!(
        dataset["classes"],
        json!([{"label": "apple", "count": 30}, {"label": "banana", "count": 30}, {"label": "cherry", "count": 30}])
    );
    let (_, by_id) = app
        .get(&format!("/v1/datasets/{}", dataset["id"].as_str().unwrap()))
        .await;
    assert_eq!(by_id["name"], "fruit");

    let spec = json!({"dataset": "fruit", "model": {"kind": "mlp", "depth": 1, "width": 16},
                      "training": {"optimizer": {"kind": "adam", "lr": 0.01}, "epochs": 30, "batch_size": 8, "seed": 3}});
    let id = app.submit(spec).await;
    let job = app.wait_for_end(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");

    let (status, answer) = app
        .post(
            &format!("/v1/models/{id}/predict"),
            json!({"inputs": [[1.1, 4.9], [6.1, 3.1]]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["predictions"][0]["label"], "apple");
    assert_eq!(answer["predictions"][1]["label"], "cherry");
    let probabilities = answer["predictions"][0]["probabilities"]
        .as_object()
        .unwrap();
    assert_eq!(
        probabilities.keys().collect::<Vec<_>>(),
        vec!["apple", "banana", "cherry"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_csv_is_rejected_with_its_line_and_column_and_leaves_nothing_behind() {
    let app = TestApp::spawn().await;
    let cases = [
        ("a,b,label\n1,2,x\n3,4\n", "line 3"),
        ("a,b,label\n1,2,x\n3,abc,y\n", "'b'"),
        ("a,b,label\n1,,x\n3,4,y\n", "line 2"),
    ];
    for (text, expected) in cases {
        let form = Form::new()
            .text("name", "broken")
            .text("label_column", "label")
            .part("file", csv_part(text.to_string()));
        let (status, body) = upload(&app, form).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{text:?} → {body}"
        );
        assert!(
            body["error"].as_str().unwrap().contains(expected),
            "{text:?} → {body}"
        );
        assert_eq!(body["field"], "file");
    }
    let single = "a,label\n".to_string() + &"1,x\n".repeat(20);
    let form = Form::new()
        .text("name", "single")
        .text("label_column", "label")
        .part("file", csv_part(single));
    let (status, body) = upload(&app, form).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"].as_str().unwrap().contains("one class"),
        "{body}"
    );
    let form = Form::new()
        .text("name", "nolabel")
        .text("label_column", "target")
        .part("file", csv_part(fruit_csv(30)));
    let (_, body) = upload(&app, form).await;
    assert_eq!(body["field"], "label_column");

    let (_, list) = app.get("/v1/datasets").await;
    assert_eq!(
        list["datasets"].as_array().unwrap().len(),
        3,
        "only the built-ins: {list}"
    );
    let folders = std::fs::read_dir(app.dir.path().join("datasets"))
        .unwrap()
        .count();
    assert_eq!(folders, 3, "no files were left by failed uploads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_can_bring_their_own_exact_split() {
    let app = TestApp::spawn().await;
    let form = Form::new()
        .text("name", "fruit-split")
        .text("label_column", "label")
        .part("train", csv_part(fruit_csv(60)))
        .part("val", csv_part(fruit_csv(15)))
        .part("test", csv_part(fruit_csv(12)));
    let (status, dataset) = upload(&app, form).await;
    assert_eq!(status, StatusCode::CREATED, "{dataset}");
    assert_eq!(
        dataset["fixed_split"],
        json!({"train": 60, "val": 15, "test": 12})
    );
    let id = app.submit(json!({"dataset": "fruit-split", "model": {"kind": "mlp", "width": 8}, "training": {"epochs": 2}})).await;
    let job = app.wait_for_end(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let form = Form::new()
        .text("name", "fruit-split")
        .text("label_column", "label")
        .part("file", csv_part(fruit_csv(30)));
    let (status, _) = upload(&app, form).await;
    assert_eq!(status, StatusCode::CONFLICT, "names are unique");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synthetic_regions_data_set_is_generated_from_its_parameters() {
    let app = TestApp::spawn().await;
    let (status, dataset) =
        app.post("/v1/datasets", json!({"name": "six-countries", "synthetic": {"kind": "regions", "classes": 6, "samples": 1200, "seed": 4}})).await;
    assert_eq!(status, StatusCode::CREATED, "{dataset}");
    assert_eq!(dataset["rows"], 1200);
    assert_eq!(dataset["features"], 2);
    assert_eq!(dataset["classes"].as_array().unwrap().len(), 6);
    let (status, body) = app
        .post(
            "/v1/datasets",
            json!({"name": "bad", "synthetic": {"kind": "regions", "classes": 1}}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["field"], "synthetic.classes");

    let spec = json!({"dataset": "six-countries", "model": {"kind": "mlp", "depth": 2, "width": 32},
                      "training": {"optimizer": {"kind": "adam", "lr": 0.01}, "epochs": 25, "batch_size": 32, "seed": 1}});
    let id = app.submit(spec).await;
    let job = app.wait_for_end(&id).await;
    assert!(
        job["best"]["val_acc"].as_f64().unwrap() > 0.8,
        "an MLP learns curved borders: {}",
        job["best"]
    );
}
