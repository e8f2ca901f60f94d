//! Whatever a client sends to `/predict` (JSON of any shape, rows of any values, images of any
//! bytes, forms of any parts), the answer is a prediction or a 4xx: never a 5xx, never a
//! dropped connection.

use proptest::prelude::*;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::helpers::{Api, TestApp, digits_spec};

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|v| json!(v)),
        prop_oneof![Just(1e308), Just(-1e308), Just(3.5e38), Just(1e-320)].prop_map(|v| json!(v)),
        "\\PC{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A number as rows may hold it, with the awkward ones often.
fn row_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (0.0f64..16.0).prop_map(|v| json!(v)),
        1 => any::<f64>().prop_map(|v| json!(v)),
        1 => prop_oneof![Just(json!(1e308)), Just(json!(-3.5e38)), Just(json!(1e-320))],
        1 => any_json(),
    ]
}

/// Bodies of the JSON form: rows, images, checkpoints, and anything else.
fn json_body() -> impl Strategy<Value = Value> {
    let rows = prop::collection::vec(prop::collection::vec(row_value(), 0..70), 0..4);
    let images = prop::collection::vec(
        prop_oneof![
            "[A-Za-z0-9+/=]{0,64}",
            "data:image/png;base64,[A-Za-z0-9_-]{0,40}",
            "\\PC{0,20}",
        ],
        0..3,
    );
    let checkpoint = prop_oneof![
        Just(None),
        any::<i64>().prop_map(|e| Some(json!(e))),
        any_json().prop_map(Some),
    ];
    prop_oneof![
        (rows, checkpoint).prop_map(|(inputs, checkpoint)| {
            let mut body = json!({ "inputs": inputs });
            if let Some(c) = checkpoint {
                body["checkpoint"] = c;
            }
            body
        }),
        images.prop_map(|images| json!({ "images": images })),
        any_json(),
    ]
}

/// One request of any of the three kinds.
#[derive(Debug, Clone)]
enum Body {
    Json(Value),
    Bytes(Vec<u8>),
    Form(Vec<(String, Vec<u8>)>),
}

fn body() -> impl Strategy<Value = Body> {
    let part_name = prop_oneof![
        4 => Just("image".to_string()),
        1 => Just("checkpoint".to_string()),
        1 => "[a-z]{0,6}",
    ];
    prop_oneof![
        3 => json_body().prop_map(Body::Json),
        1 => prop::collection::vec(any::<u8>(), 0..256).prop_map(Body::Bytes),
        1 => prop::collection::vec((part_name, prop::collection::vec(any::<u8>(), 0..300)), 0..3)
            .prop_map(Body::Form),
    ]
}

async fn send(app: &TestApp, url: &str, body: Body) -> reqwest::StatusCode {
    let request = app.client.post(url);
    let request = match body {
        Body::Json(value) => request.json(&value),
        Body::Bytes(bytes) => request
            .header("content-type", "application/json")
            .body(bytes),
        Body::Form(parts) => {
            let form = parts.into_iter().fold(Form::new(), |form, (name, bytes)| {
                form.part(name, Part::bytes(bytes).file_name("x.png"))
            });
            request.multipart(form)
        }
    };
    request
        .send()
        .await
        .expect("the server answers every request")
        .status()
}

#[test]
fn any_predict_request_gets_a_prediction_or_a_4xx() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (app, url) = runtime.block_on(async {
        let app = TestApp::spawn().await;
        let id = app.submit(digits_spec(1, 64)).await;
        let job = app.wait_for_end(&id).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        let url = app.url(&format!("/v1/models/{id}/predict"));
        (app, url)
    });
    let config = ProptestConfig {
        cases: 128,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(body in body())| {
        let status = runtime.block_on(send(&app, &url, body));
        prop_assert!(
            status.is_success() || status.is_client_error(),
            "answered {status}"
        );
    });
    drop(app);
}
