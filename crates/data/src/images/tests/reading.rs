//! Archives that are accepted, and what their tables hold.

use image::ImageFormat;

use super::*;
use crate::{LabelKind, Split};

#[test]
fn a_zip_of_class_folders_becomes_a_table_of_rgb_images() {
    let files = class_files("", &["dog", "cat"], 6);
    let table = read(&zip_of(&files)).unwrap();
    assert_eq!(table.n_rows(), 12);
    assert_eq!(table.image_shape, Some([3, 8, 8]));
    assert_eq!(table.n_features(), 3 * 64);
    assert_eq!(table.classes, vec!["cat", "dog"]);
    assert_eq!(table.label_kind, LabelKind::String);
    assert_eq!(table.class_counts(), vec![6, 6]);
    assert!(table.splits.is_none());
    assert!(table.features.iter().all(|v| (0.0..=1.0).contains(v)));
    // Rows are sorted by class then name: the first is cat/0.png, drawn in colour [80, 40, 0]
    // plus a shade of 0 at pixel (0, 0); planes are red, green, blue.
    assert_eq!(table.labels[0], 0);
    let row = table.row(0);
    assert_eq!(row[0], 80.0 / 255.0);
    assert_eq!(row[64], 40.0 / 255.0);
    assert_eq!(row[128], 0.0);
    assert_eq!(table.feature_names[0], "red0");
    assert_eq!(table.feature_names[64], "green0");
}

#[test]
fn a_tar_gz_with_its_own_split_keeps_it_and_gray_images_get_one_channel() {
    let mut files = Vec::new();
    for (split, n) in [("train", 5), ("val", 2), ("test", 3)] {
        for class in ["a", "b"] {
            for i in 0..n {
                let level = if class == "a" { 30 } else { 200 };
                files.push((format!("{split}/{class}/{i}.png"), gray_png(6, 6, level)));
            }
        }
    }
    let table = read(&gzip(&tar_of(&files))).unwrap();
    assert_eq!(table.n_rows(), 20);
    assert_eq!(table.image_shape, Some([1, 6, 6]));
    assert_eq!(table.feature_names[35], "pixel35");
    let splits = table.splits.as_ref().unwrap();
    let count = |s: Split| splits.iter().filter(|x| **x == s).count();
    assert_eq!(
        (count(Split::Train), count(Split::Val), count(Split::Test)),
        (10, 4, 6)
    );
    assert_eq!(splits[0], Split::Train);
    assert_eq!(splits[19], Split::Test);
}

#[test]
fn jpeg_and_png_mix_and_a_plain_tar_with_a_wrapper_folder_and_litter_is_fine() {
    let mut files = class_files("./pets/", &["cat", "dog"], 5);
    let jpeg = encode(&picture(8, 8, [200, 10, 10]), ImageFormat::Jpeg);
    files.push(("./pets/dog/photo.JPG".into(), jpeg.clone()));
    files.push(("./pets/cat/photo.jpeg".into(), jpeg));
    files.push(("./pets/.DS_Store".into(), b"junk".to_vec()));
    files.push(("./pets/cat/.hidden.png".into(), b"not an image".to_vec()));
    files.push((
        "__MACOSX/pets/cat/._0.png".into(),
        b"resource fork".to_vec(),
    ));
    files.push(("pets/dog/Thumbs.db".into(), b"junk".to_vec()));
    let mut entries: Vec<(&str, tar::EntryType, &[u8])> = vec![
        ("./", tar::EntryType::Directory, b""),
        ("./pets/", tar::EntryType::Directory, b""),
    ];
    entries.extend(
        files
            .iter()
            .map(|(n, b)| (n.as_str(), tar::EntryType::Regular, b.as_slice())),
    );
    let table = read(&tar_entries(&entries)).unwrap();
    assert_eq!(table.classes, vec!["cat", "dog"]);
    assert_eq!(table.class_counts(), vec![6, 6]);
    // The JPEG is red after decoding, within compression error.
    let photo = 5; // cat/0..4.png, then cat/photo.jpeg
    assert!(table.row(photo)[0] > 0.6 && table.row(photo)[64] < 0.3);
}

#[test]
fn images_of_different_sizes_need_an_image_size_and_are_then_resized() {
    let mut files = class_files("", &["x", "y"], 5);
    files.push(("y/big.png".into(), png(16, 12, [9, 9, 9])));
    let message = rejection(read(&zip_of(&files)));
    assert!(
        message.contains("image_size") && message.contains("y/big.png"),
        "{message}"
    );

    let archive = zip_of(&files);
    let options = ImageOptions::parse(Some("4"), None).unwrap();
    let table = parse_image_archive(&archive, &options, &ImageLimits::default()).unwrap();
    assert_eq!(table.image_shape, Some([3, 4, 4]));
    assert_eq!(table.n_rows(), 11);
    let options = ImageOptions::parse(Some("10x5"), Some("1")).unwrap();
    let table = parse_image_archive(&archive, &options, &ImageLimits::default()).unwrap();
    assert_eq!(table.image_shape, Some([1, 5, 10]));
    assert_eq!(table.n_features(), 50);
}

#[test]
fn gray_images_can_be_asked_for_as_rgb() {
    let files: Vec<_> = (0..10)
        .map(|i| (format!("c{}/{i}.png", i % 2), gray_png(3, 3, 100)))
        .collect();
    let options = ImageOptions::parse(None, Some("3")).unwrap();
    let table = parse_image_archive(&zip_of(&files), &options, &ImageLimits::default()).unwrap();
    assert_eq!(table.image_shape, Some([3, 3, 3]));
    let row = table.row(0);
    assert_eq!(row[0], row[9]);
    assert_eq!(row[0], row[18]);
}

#[test]
fn image_options_parse_sizes_and_channels_and_name_the_part_when_wrong() {
    assert_eq!(
        ImageOptions::parse(Some(" 32 "), Some("1")).unwrap(),
        ImageOptions {
            size: Some((32, 32)),
            channels: Some(1)
        }
    );
    assert_eq!(
        ImageOptions::parse(Some("64X48"), None).unwrap().size,
        Some((64, 48))
    );
    assert_eq!(
        ImageOptions::parse(Some(""), Some("")).unwrap(),
        ImageOptions::default()
    );
    for (size, channels, field) in [
        (Some("0"), None, "image_size"),
        (Some("2000"), None, "image_size"),
        (Some("32x"), None, "image_size"),
        (Some("-3"), None, "image_size"),
        (Some("3.5"), None, "image_size"),
        (None, Some("2"), "channels"),
        (None, Some("rgb"), "channels"),
    ] {
        match ImageOptions::parse(size, channels) {
            Err(DataError::Invalid { input, .. }) => {
                assert_eq!(input.to_string(), field, "{size:?} {channels:?}")
            }
            other => panic!("{size:?} {channels:?}: {other:?}"),
        }
    }
}

#[test]
fn a_sample_png_shows_the_row_scaled_up() {
    let files = class_files("", &["dog", "cat"], 5);
    let table = read(&zip_of(&files)).unwrap();
    let bytes = sample_png(&table, "pets", 0).unwrap();
    let image = image::load_from_memory_with_format(&bytes, ImageFormat::Png)
        .unwrap()
        .to_rgb8();
    assert_eq!(image.dimensions(), (64, 64));
    // cat/0.png pixel (0, 0) is [80, 40, 0]; pixel (1, 0) has shade 4.
    assert_eq!(image.get_pixel(0, 0).0, [80, 40, 0]);
    assert_eq!(image.get_pixel(7, 7).0, [80, 40, 0]);
    assert_eq!(image.get_pixel(8, 0).0, [84, 44, 4]);

    assert!(matches!(
        sample_png(&table, "pets", 10),
        Err(DataError::NotFound { .. })
    ));
    let digits = crate::digits();
    let bytes = sample_png(&digits, "digits", 0).unwrap();
    let image = image::load_from_memory(&bytes).unwrap();
    assert_eq!((image.width(), image.height()), (64, 64));
    assert_eq!(image.color(), image::ColorType::L8);
    let regions = crate::regions(&Default::default());
    assert!(matches!(
        sample_png(&regions, "regions", 0),
        Err(DataError::Invalid {
            input: Input::Row,
            ..
        })
    ));
}
