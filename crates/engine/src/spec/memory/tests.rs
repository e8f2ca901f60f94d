//! The estimate against figures worked out by hand from the code it describes.

use super::*;

fn spec(json: &str) -> JobSpec {
    serde_json::from_str(json).unwrap()
}

/// 100 rows of 4 features in two classes of 50.
fn tabular() -> DataShape {
    DataShape {
        rows: 100,
        features: 4,
        image_shape: None,
        class_counts: vec![50, 50],
        fixed_split: None,
    }
}

/// 40 grayscale 8x8 images in two classes, split 30/10/0 by the upload.
fn tiny_images() -> DataShape {
    DataShape {
        rows: 40,
        features: 64,
        image_shape: Some([1, 8, 8]),
        class_counts: vec![20, 20],
        fixed_split: Some([30, 10, 0]),
    }
}

#[test]
fn the_default_split_rounds_each_class_like_the_splitter() {
    // Per class of 50: round(7.5) = 8 to validation, 8 to test, 34 to training.
    let mlp = spec(r#"{"dataset": "d", "model": {"kind": "mlp"}}"#);
    assert_eq!(tabular().split_rows(&mlp.data), [68, 16, 16]);
    assert_eq!(tiny_images().split_rows(&mlp.data), [30, 10, 0]);
}

#[test]
fn a_small_mlp_costs_what_its_tensors_hold() {
    let mlp = spec(
        r#"{"dataset": "d", "model": {"kind": "mlp", "depth": 1, "width": 8},
            "training": {"batch_size": 10}}"#,
    );
    let estimate = mlp.memory_estimate(&tabular(), 1).unwrap();
    // 4·8 + 8 hidden, 8·2 + 2 classifier.
    assert_eq!(mlp.parameter_count(&tabular()).unwrap(), 58);
    assert_eq!(
        estimate,
        MemoryEstimate {
            // 100 rows × (4 features + 1 label) × 4 bytes, as read, decoded and kept.
            table: 3 * 2000,
            // The same again as split tensors.
            preparation: 2000,
            // The fused path's flat train copy and an evaluation copy 2·68·4·4, the shuffled
            // order 68·4.
            training_data: 2176 + 272,
            parameters: 58 * 4,
            gradients: 58 * 4,
            // Adam's two moments and one copy of update temporaries.
            optimizer: 58 * 3 * 4,
            // (58 weights + 116 moments) × (copy, encoding, one queued) × 4 bytes.
            checkpoint: 174 * 3 * 4,
            // Per sample: hidden matmul, bias, ReLU (24), logits 2·2 and loss 4·2 (12); an
            // evaluation chunk is the whole 68-row training split: 68·36·4 = 9792, more than
            // a step of 10·(4 inputs + 2·36)·4 = 3040.
            activations: 9792,
            workspace: 0,
        }
    );
    assert_eq!(estimate.total(), 6000 + 2000 + 2448 + 3248 + 9792);
}

#[test]
fn a_small_cnn_counts_its_feature_maps_and_im2col_workspace() {
    let cnn = spec(
        r#"{"dataset": "d", "model": {"kind": "cnn", "blocks": [{"channels": 2}], "head": {"depth": 0}},
            "training": {"optimizer": {"kind": "sgd", "momentum": 0.9}, "batch_size": 4}}"#,
    );
    let estimate = cnn.memory_estimate(&tiny_images(), 2).unwrap();
    // Convolution 2·(1·3·3 + 1), classifier 2·4·4·2 + 2.
    assert_eq!(cnn.parameter_count(&tiny_images()).unwrap(), 86);
    assert_eq!(
        estimate,
        MemoryEstimate {
            table: 3 * 40 * 65 * 4,
            preparation: 40 * 65 * 4,
            training_data: 30 * 4,
            parameters: 86 * 4,
            gradients: 86 * 4,
            optimizer: 86 * 2 * 4,
            checkpoint: (86 + 86) * 3 * 4,
            // Per sample: conv 2·8·8 and its ReLU (256), the 2·4·4 pooled map (32), logits and
            // loss (12) = 300; an evaluation chunk of all 30 training rows, 30·300·4, beats a
            // step of 4·(64 + 600)·4.
            activations: 30 * 300 * 4,
            // Two 1·3·3 × (64 + 512) im2col matrices on each of 2 threads.
            workspace: 2 * 2 * 9 * 576 * 4,
        }
    );
    assert_eq!(estimate.total(), 164_104);
}

#[test]
fn resizing_shapes_to_1024_pixels_needs_tens_of_gigabytes_and_names_the_resize() {
    let shapes = DataShape {
        rows: 2000,
        features: 3 * 32 * 32,
        image_shape: Some([3, 32, 32]),
        class_counts: vec![500; 4],
        fixed_split: None,
    };
    let repro = spec(
        r#"{"dataset": "shapes", "data": {"preprocessing": {"resize": [1024, 1024]}},
            "model": {"kind": "mlp", "depth": 1, "width": 1}, "training": {"epochs": 1}}"#,
    );
    let estimate = repro.memory_estimate(&shapes, 1).unwrap();
    // Every image resized: 2000 × 3 × 1024 × 1024 × 4 bytes, about 23.4 GiB.
    assert!(estimate.preparation >= 2000 * 3 * 1024 * 1024 * 4);
    let err = repro
        .check_resources(&shapes, 4 << 30, 1)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("data.preprocessing.resize: "), "{err}");
    assert!(err.contains("over the limit of 4.0 GiB"), "{err}");
    assert!(err.contains(&format_bytes(estimate.total())), "{err}");

    // Width 4096 on those inputs: 3·1024·1024·4096 + 4096 + 4096·4 + 4 parameters.
    let huge = spec(
        r#"{"dataset": "shapes", "data": {"preprocessing": {"resize": [1024, 1024]}},
            "model": {"kind": "mlp", "depth": 1, "width": 4096}}"#,
    );
    assert_eq!(huge.parameter_count(&shapes).unwrap(), 12_884_922_372);
    let err = huge
        .check_resources(&shapes, u64::MAX, 1)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("model.width: "), "{err}");
    assert!(err.contains("12884922372 parameters"), "{err}");
}

#[test]
fn the_largest_part_names_the_field_to_change() {
    let wide_batch = spec(
        r#"{"dataset": "d", "model": {"kind": "mlp", "depth": 4, "width": 1024},
            "training": {"batch_size": 60000}}"#,
    );
    let many_rows = DataShape {
        rows: 100_000,
        class_counts: vec![50_000; 2],
        ..tabular()
    };
    let estimate = wide_batch.memory_estimate(&many_rows, 1).unwrap();
    assert!(estimate.activations > estimate.data() && estimate.activations > estimate.model());
    let err = wide_batch
        .check_resources(&many_rows, 1 << 20, 1)
        .unwrap_err();
    assert!(
        matches!(&err, EngineError::Spec { path: field, .. } if field == "training.batch_size"),
        "{err}"
    );
    wide_batch
        .check_resources(&many_rows, estimate.total(), 1)
        .unwrap();
}

#[test]
fn bytes_read_in_binary_units_rounded_up() {
    assert_eq!(format_bytes(512), "512 B");
    assert_eq!(format_bytes(1536), "1.5 KiB");
    assert_eq!(format_bytes((4 << 30) + 1), "4.1 GiB");
    assert_eq!(format_bytes(4 << 30), "4.0 GiB");
}
