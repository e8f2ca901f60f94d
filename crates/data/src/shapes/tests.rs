use std::time::Instant;

use super::*;

fn params(classes: usize, samples: usize, seed: u64) -> ShapesParams {
    ShapesParams {
        classes,
        samples,
        seed,
        ..ShapesParams::default()
    }
}

fn field_of(result: Result<()>) -> Input {
    match result {
        Err(DataError::Invalid { input, .. }) => input,
        other => panic!("expected DataError::Invalid, got {other:?}"),
    }
}

#[test]
fn the_defaults_are_valid_and_deserialize_from_an_empty_object() {
    let p: ShapesParams = serde_json::from_str("{}").unwrap();
    assert_eq!(p, ShapesParams::default());
    assert_eq!((p.classes, p.samples, p.image_size), (3, 2000, 32));
    p.validate().unwrap();
    assert!(serde_json::from_str::<ShapesParams>(r#"{"size": 32}"#).is_err());
}

#[test]
fn out_of_range_parameters_are_rejected_by_field() {
    let with = |f: &dyn Fn(&mut ShapesParams)| {
        let mut p = ShapesParams::default();
        f(&mut p);
        field_of(p.validate())
    };
    assert_eq!(with(&|p| p.classes = 1), Input::Generator("classes"));
    assert_eq!(with(&|p| p.classes = 11), Input::Generator("classes"));
    assert_eq!(with(&|p| p.samples = 19), Input::Generator("samples"));
    assert_eq!(
        with(&|p| {
            p.classes = 10;
            p.samples = 99
        }),
        Input::Generator("samples")
    );
    assert_eq!(with(&|p| p.samples = 100_001), Input::Generator("samples"));
    assert_eq!(with(&|p| p.image_size = 15), Input::Generator("image_size"));
    assert_eq!(
        with(&|p| p.image_size = 129),
        Input::Generator("image_size")
    );
    assert_eq!(
        with(&|p| {
            p.samples = 20_000;
            p.image_size = 128
        }),
        Input::Generator("samples")
    );
    assert_eq!(with(&|p| p.noise = 0.6), Input::Generator("noise"));
    assert_eq!(with(&|p| p.noise = f64::NAN), Input::Generator("noise"));
}

#[test]
fn the_same_seed_gives_the_same_images_and_another_seed_others() {
    let a = shapes(&params(4, 200, 9));
    let b = shapes(&params(4, 200, 9));
    let c = shapes(&params(4, 200, 10));
    let bits = |t: &Table| t.features.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b));
    assert_eq!(a.labels, b.labels);
    assert_ne!(bits(&a), bits(&c));
}

#[test]
fn every_class_is_present_equally_and_values_are_in_the_unit_interval() {
    for classes in [2, 3, 7, 10] {
        let t = shapes(&params(classes, 40 * classes, classes as u64));
        assert_eq!(t.n_rows(), 40 * classes);
        assert_eq!(t.n_features(), 3 * 32 * 32);
        assert_eq!(t.image_shape, Some([3, 32, 32]));
        assert_eq!(t.label_kind, LabelKind::String);
        assert_eq!(t.class_counts(), vec![40; classes]);
        let mut expected: Vec<&str> = SHAPE_NAMES[..classes].to_vec();
        expected.sort_unstable();
        assert_eq!(t.classes, expected);
        assert!(t.features.iter().all(|v| (0.0..=1.0).contains(v)));
    }
    let t = shapes(&params(3, 30, 0));
    assert_eq!(t.classes, vec!["circle", "square", "triangle"]);
    // Row i shows shape i % classes: circle, square, triangle, circle, ...
    assert_eq!(&t.labels[..4], &[0, 1, 2, 0]);
}

#[test]
fn the_shape_stands_out_from_its_background() {
    // Without noise, each image has two clearly different colours: the shape covers a fair
    // share of the picture but not all of it.
    let mut p = params(10, 100, 5);
    p.noise = 0.0;
    let t = shapes(&p);
    let pixels = 32 * 32;
    for i in 0..t.n_rows() {
        let row = t.row(i);
        let corner = [row[0], row[pixels], row[2 * pixels]];
        let differing = (0..pixels)
            .filter(|&k| {
                (0..3)
                    .map(|c| (row[c * pixels + k] - corner[c]).abs())
                    .sum::<f32>()
                    > 0.3
            })
            .count();
        assert!(
            (pixels / 50..pixels * 9 / 10).contains(&differing),
            "image {i} ({}) has {differing} shape pixels",
            t.classes[t.labels[i] as usize]
        );
    }
}

#[test]
fn two_thousand_images_generate_quickly_and_other_sizes_work() {
    let started = Instant::now();
    let t = shapes(&params(3, 2000, 1));
    let took = started.elapsed();
    eprintln!("2000 shapes of 3x32x32 generated in {took:?}");
    assert_eq!(t.n_rows(), 2000);
    assert!(took.as_secs_f64() < 1.0, "took {took:?}");
    let mut p = params(2, 20, 1);
    p.image_size = 16;
    assert_eq!(shapes(&p).image_shape, Some([3, 16, 16]));
}

#[test]
fn invalid_parameters_are_clamped_instead_of_panicking() {
    let t = shapes(&ShapesParams {
        classes: 0,
        samples: 0,
        seed: 0,
        image_size: 1,
        noise: f64::NAN,
    });
    assert_eq!(t.classes.len(), 2);
    assert_eq!(t.n_rows(), 20);
    assert_eq!(t.image_shape, Some([3, 16, 16]));
    let t = shapes(&ShapesParams {
        classes: 99,
        samples: 30,
        seed: 0,
        image_size: 999,
        noise: 9.0,
    });
    assert_eq!(t.classes.len(), 10);
    assert_eq!(t.n_rows(), 100);
    assert_eq!(t.image_shape, Some([3, 128, 128]));
    assert!(t.features.iter().all(|v| (0.0..=1.0).contains(v)));
}
