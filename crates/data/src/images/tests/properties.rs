//! Property tests: whatever bytes arrive as an archive, reading never panics and gives either a
//! table whose shape matches what the archive holds or a rejection of the `archive` field.

use proptest::prelude::*;

use super::*;

fn small_limits() -> ImageLimits {
    ImageLimits {
        min_images: 1,
        max_expanded_bytes: 1 << 20,
        ..ImageLimits::default()
    }
}

/// Ok with a consistent table, or a rejection naming the archive; anything else fails.
fn clear(result: Result<Table>) -> std::result::Result<Option<Table>, TestCaseError> {
    match result {
        Ok(table) => {
            let shape = table.image_shape.expect("an image table has a shape");
            prop_assert_eq!(shape[0] * shape[1] * shape[2], table.n_features());
            prop_assert_eq!(table.features.len(), table.n_rows() * table.n_features());
            prop_assert!(table.features.iter().all(|v| (0.0..=1.0).contains(v)));
            prop_assert!(
                table
                    .labels
                    .iter()
                    .all(|&l| (l as usize) < table.classes.len())
            );
            if let Some(splits) = &table.splits {
                prop_assert_eq!(splits.len(), table.n_rows());
            }
            Ok(Some(table))
        }
        Err(DataError::Invalid { input, message }) => {
            let field = input.to_string();
            prop_assert_eq!(field.as_str(), "archive", "{}", message);
            Ok(None)
        }
        Err(other) => Err(TestCaseError::fail(format!(
            "not a clear rejection: {other:?}"
        ))),
    }
}

/// A valid archive of `per_class` 4x4 PNGs in each of `classes` folders, in one of the formats.
fn archive(format: u8, classes: usize, per_class: usize) -> Vec<u8> {
    let names: Vec<String> = (0..classes).map(|c| format!("class{c}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut files = Vec::new();
    for (c, class) in names.iter().enumerate() {
        for i in 0..per_class {
            files.push((
                format!("{class}/{i}.png"),
                png(4, 4, [(c * 50) as u8, 9, (i * 20) as u8]),
            ));
        }
    }
    match format % 3 {
        0 => zip_of(&files),
        1 => tar_of(&files),
        _ => gzip(&tar_of(&files)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn arbitrary_bytes_are_read_or_rejected_by_name(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        prefix in prop_oneof![
            Just(&b""[..]), Just(&b"PK\x03\x04"[..]), Just(&b"PK\x05\x06"[..]), Just(&b"\x1f\x8b"[..])
        ],
    ) {
        let mut archive = prefix.to_vec();
        archive.extend_from_slice(&bytes);
        clear(parse_image_archive(&archive, &ImageOptions::default(), &small_limits()))?;
    }

    #[test]
    fn valid_archives_give_one_row_per_image_in_every_format(
        format in 0u8..3,
        classes in 2usize..4,
        per_class in 1usize..4,
    ) {
        let bytes = archive(format, classes, per_class);
        let table = clear(parse_image_archive(&bytes, &ImageOptions::default(), &small_limits()))?
            .expect("a valid archive is read");
        prop_assert_eq!(table.n_rows(), classes * per_class);
        prop_assert_eq!(table.classes.len(), classes);
        prop_assert_eq!(table.image_shape, Some([3, 4, 4]));
        prop_assert_eq!(table.class_counts(), vec![per_class; classes]);
    }

    #[test]
    fn damaged_archives_are_read_or_rejected_by_name(
        format in 0u8..3,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut bytes = archive(format, 2, 2);
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        if truncate {
            let keep = cut.index(bytes.len());
            bytes.truncate(keep);
        }
        let options = ImageOptions { size: Some((3, 5)), channels: None };
        clear(parse_image_archive(&bytes, &options, &small_limits()))?;
    }
}
