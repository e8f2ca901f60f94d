use super::*;
use proptest::prelude::*;

/// A valid CSV: header `a,b,label`, then `rows` rows with labels cycling through `labels`.
fn csv_with(rows: usize, labels: &[&str]) -> String {
    let mut s = String::from("a,b,label\n");
    for i in 0..rows {
        s.push_str(&format!("{i},{}.5,{}\n", i * 2, labels[i % labels.len()]));
    }
    s
}

fn parse(text: &str) -> Result<Table> {
    parse_csv("file", text.as_bytes(), "label", &CsvLimits::default())
}

fn parse_split(train: &str, val: Option<&str>, test: Option<&str>) -> Result<Table> {
    let (val, test) = (val.map(str::as_bytes), test.map(str::as_bytes));
    read_split_csvs(train.as_bytes(), val, test, "label", &CsvLimits::default())
}

/// Asserts `result` is `DataError::Invalid` on `field` with a message containing each fragment.
fn rejects(result: Result<Table>, field: &str, fragments: &[&str]) {
    match result {
        Err(DataError::Invalid { input, message }) => {
            let f = input.to_string();
            assert_eq!(f, field, "{message}");
            for fragment in fragments {
                assert!(
                    message.contains(fragment),
                    "{fragment:?} not in {message:?}"
                );
            }
        }
        other => panic!("expected DataError::Invalid, got {other:?}"),
    }
}

#[test]
fn a_valid_file_becomes_a_table_with_features_in_order() {
    let t = parse(&csv_with(10, &["1", "0"])).unwrap();
    assert_eq!(t.feature_names, vec!["a", "b"]);
    assert_eq!((t.n_rows(), t.row(3)), (10, &[3.0, 6.5][..]));
    assert_eq!(t.classes, vec!["0", "1"]);
    assert_eq!(t.labels[..3], [1, 0, 1]);
    assert!(t.splits.is_none() && t.image_shape.is_none());
}

#[test]
fn integer_labels_are_sorted_numerically_and_written_canonically() {
    let t = parse(&csv_with(12, &["10", "07", "-2", "+9"])).unwrap();
    assert_eq!(t.label_kind, LabelKind::Integer);
    assert_eq!(t.classes, vec!["-2", "7", "9", "10"]);
    assert_eq!(t.labels[..4], [3, 1, 0, 2]);
}

#[test]
fn any_non_integer_label_makes_all_labels_strings() {
    let t = parse(&csv_with(12, &["10", "9", "cat"])).unwrap();
    assert_eq!(t.label_kind, LabelKind::String);
    assert_eq!(t.classes, vec!["10", "9", "cat"]);
}

#[test]
fn a_byte_order_mark_and_surrounding_whitespace_are_accepted() {
    let rows = csv_with(10, &[" x ", "y"]);
    let t = parse(&format!("\u{feff} a , b ,label \r\n{}", &rows[10..])).unwrap();
    assert_eq!(t.feature_names, vec!["a", "b"]);
    assert_eq!(t.classes, vec!["x", "y"]);
}

#[test]
fn non_utf8_bytes_are_rejected_with_their_line() {
    let mut bytes = csv_with(10, &["0", "1"]).into_bytes();
    bytes.extend_from_slice(b"1,2,\xff\n");
    let result = parse_csv("file", &bytes, "label", &CsvLimits::default());
    rejects(result, "file", &["line 12", "UTF-8"]);
}

#[test]
fn an_empty_file_is_rejected() {
    for text in ["", "\u{feff}", " \n\n"] {
        rejects(parse(text), "file", &["empty", "header"]);
    }
}

#[test]
fn duplicate_column_names_are_rejected() {
    let expected = ["line 1", "'a' appears twice", "unique"];
    rejects(parse("a,b,a,label\n1,2,3,0\n"), "file", &expected);
}

#[test]
fn an_empty_column_name_is_rejected() {
    let expected = ["line 1", "column 2", "empty name"];
    rejects(parse("a,,label\n1,2,0\n"), "file", &expected);
}

#[test]
fn a_missing_label_column_is_rejected_with_the_columns_listed() {
    let expected = ["no column named 'label'", "'a', 'b', 'y'"];
    rejects(parse("a,b,y\n1,2,0\n"), "label_column", &expected);
}

#[test]
fn a_file_with_only_the_label_column_is_rejected() {
    rejects(
        parse("label\n1\n0\n"),
        "file",
        &["line 1", "feature column"],
    );
}

#[test]
fn a_ragged_row_is_rejected_with_its_line_number() {
    let text = csv_with(5, &["0", "1"]) + "1,2\n" + &csv_with(5, &["0", "1"])[10..];
    rejects(
        parse(&text),
        "file",
        &["line 7 has 2 fields; the header has 3"],
    );
}

#[test]
fn a_non_numeric_feature_is_rejected_with_line_and_column() {
    let text = csv_with(10, &["0", "1"]) + "1,abc,0\n";
    let expected = [
        "line 12, column 'b': 'abc' is not a number",
        "finite number",
    ];
    rejects(parse(&text), "file", &expected);
}

#[test]
fn missing_and_non_finite_features_are_rejected_with_line_and_column() {
    for (value, what) in [
        ("", "the value is missing"),
        ("NA", "'NA' marks a missing value"),
        ("NaN", "'NaN' marks a missing value"),
        ("inf", "'inf' is infinite"),
        ("-Infinity", "'-Infinity' is infinite"),
        ("1e39", "'1e39' is too large"),
    ] {
        let text = format!("a,b,label\n1,2,0\n{value},2,1\n");
        rejects(parse(&text), "file", &["line 3, column 'a': ", what]);
    }
}

#[test]
fn an_empty_label_is_rejected_with_line_and_column() {
    let text = csv_with(10, &["0", "1"]) + "1,2,\n";
    rejects(
        parse(&text),
        "file",
        &["line 12, column 'label': the label is empty"],
    );
}

#[test]
fn too_few_rows_are_rejected() {
    rejects(
        parse(&csv_with(9, &["0", "1"])),
        "file",
        &["9 data rows", "at least 10"],
    );
}

#[test]
fn a_single_class_is_rejected() {
    let expected = ["only one class ('3') in column 'label'; at least two are needed"];
    rejects(parse(&csv_with(10, &["03"])), "file", &expected);
}

#[test]
fn too_many_rows_or_columns_are_rejected() {
    let few_columns = CsvLimits {
        max_rows: 10,
        max_columns: 2,
        min_rows: 1,
        ..CsvLimits::default()
    };
    let text = csv_with(11, &["0", "1"]);
    let result = parse_csv("file", text.as_bytes(), "label", &few_columns);
    rejects(result, "file", &["line 1", "3 columns", "at most 2"]);
    let few_rows = CsvLimits {
        max_columns: 3,
        ..few_columns
    };
    let result = parse_csv("file", text.as_bytes(), "label", &few_rows);
    rejects(result, "file", &["line 12", "more than 10 data rows"]);
}

#[test]
fn split_files_are_concatenated_with_their_splits() {
    let train = csv_with(10, &["0", "1", "2"]);
    let (val, test) = (csv_with(2, &["02", "0"]), csv_with(3, &["1"]));
    let t = parse_split(&train, Some(&val), Some(&test)).unwrap();
    assert_eq!((t.n_rows(), t.features.len()), (15, 30));
    assert_eq!(t.classes, vec!["0", "1", "2"]);
    let splits = t.splits.as_ref().unwrap();
    assert_eq!(splits.iter().filter(|&&s| s == Split::Train).count(), 10);
    assert_eq!(splits[10..12], [Split::Val; 2]);
    assert_eq!(splits[12..], [Split::Test; 3]);
    assert_eq!(
        (&t.labels[10..12], t.row(11)),
        (&[2, 0][..], &[1.0, 2.5][..])
    );
}

#[test]
fn split_files_without_val_or_test_are_all_train() {
    let t = parse_split(&csv_with(10, &["a", "b"]), None, None).unwrap();
    assert_eq!(t.splits, Some(vec![Split::Train; 10]));
}

#[test]
fn a_class_only_in_the_val_file_is_rejected_by_name() {
    let train = csv_with(10, &["cat", "dog"]);
    let val = csv_with(3, &["cat", "dog", "eel"]);
    let expected = ["line 4, column 'label': class 'eel'", "'cat', 'dog'"];
    rejects(parse_split(&train, Some(&val), None), "val", &expected);
}

#[test]
fn a_test_file_with_another_header_is_rejected() {
    let train = csv_with(10, &["0", "1"]);
    let test = csv_with(2, &["0", "1"]).replacen('b', "c", 1);
    let expected = ["line 1: column 2 is 'c' here but 'b'"];
    rejects(parse_split(&train, None, Some(&test)), "test", &expected);
}

#[test]
fn errors_in_a_split_file_name_that_file() {
    let train = csv_with(10, &["0", "1"]);
    let val = "a,b,label\n1,x,0\n";
    rejects(
        parse_split(&train, Some(val), None),
        "val",
        &["line 2, column 'b'"],
    );
    rejects(
        parse_split(&train, Some("a,b,label\n"), None),
        "val",
        &["no data rows"],
    );
    rejects(
        parse_split("a,b,label\n1,2,0\n", None, None),
        "train",
        &["1 data rows"],
    );
}

#[test]
fn a_data_set_past_the_byte_limit_is_refused_naming_the_limit() {
    // 3 columns: 2 features + the label, 12 bytes a row; 10 rows fit in 120 bytes, 11 do not.
    let limits = CsvLimits {
        max_table_bytes: 120,
        ..CsvLimits::default()
    };
    let text = csv_with(10, &["0", "1"]);
    assert_eq!(
        parse_csv("file", text.as_bytes(), "label", &limits)
            .unwrap()
            .n_rows(),
        10
    );
    let text = csv_with(11, &["0", "1"]);
    let result = parse_csv("file", text.as_bytes(), "label", &limits);
    rejects(
        result,
        "file",
        &["line 12", "120 bytes", "12 bytes per row"],
    );
    let val = csv_with(1, &["0"]);
    let result = read_split_csvs(
        csv_with(10, &["0", "1"]).as_bytes(),
        Some(val.as_bytes()),
        None,
        "label",
        &limits,
    );
    rejects(result, "val", &["line 2", "120 bytes"]);
}

/// Hands out its bytes a few at a time, as a slow upload or a small buffer would.
struct Trickle<'a> {
    bytes: &'a [u8],
    step: usize,
}

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.bytes.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

#[test]
fn a_file_read_a_byte_at_a_time_gives_the_same_table() {
    let text = format!("\u{feff}{}", csv_with(12, &["07", "3", "11"]));
    let whole = parse(&text).unwrap();
    let trickled = read_csv(
        "file",
        Trickle {
            bytes: text.as_bytes(),
            step: 1,
        },
        "label",
        &CsvLimits::default(),
    )
    .unwrap();
    assert_eq!(whole.feature_names, trickled.feature_names);
    assert_eq!(whole.features, trickled.features);
    assert_eq!(whole.labels, trickled.labels);
    assert_eq!(whole.classes, vec!["3", "7", "11"]);
    assert_eq!(whole.classes, trickled.classes);
}

/// A table's shape is consistent: every value finite, one row of features per label, labels
/// within the classes, a split per row when there is one.
fn assert_consistent(t: &Table) -> std::result::Result<(), TestCaseError> {
    prop_assert!(t.features.iter().all(|x| x.is_finite()));
    prop_assert_eq!(t.features.len(), t.n_rows() * t.n_features());
    prop_assert!(t.labels.iter().all(|&l| (l as usize) < t.classes.len()));
    prop_assert!(t.classes.len() >= 2);
    if let Some(splits) = &t.splits {
        prop_assert_eq!(splits.len(), t.n_rows());
    }
    Ok(())
}

/// A rejection must be a 422 naming one of `fields`.
fn assert_clear(result: &Result<Table>, fields: &[&str]) -> std::result::Result<(), TestCaseError> {
    match result {
        Ok(table) => assert_consistent(table),
        Err(DataError::Invalid { input, message }) => {
            let field = input.to_string();
            prop_assert!(fields.contains(&field.as_str()), "field {field}: {message}");
            prop_assert!(!message.is_empty());
            Ok(())
        }
        Err(other) => Err(TestCaseError::fail(format!(
            "not a clear rejection: {other:?}"
        ))),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let small = CsvLimits { min_rows: 1, ..CsvLimits::default() };
        assert_clear(&parse_csv("file", &bytes, "label", &small), &["file", "label_column"])?;
        let split = read_split_csvs(&bytes[..], Some(&bytes[..]), Some(&bytes[..]), "label", &small);
        assert_clear(&split, &["train", "val", "test", "label_column"])?;
    }

    #[test]
    fn parsing_csv_like_text_never_panics(body in "[0-9a-cNA.,eE+ \"\u{feff}\r\n-]{0,300}") {
        let small = CsvLimits { min_rows: 1, max_rows: 20, max_columns: 5, ..CsvLimits::default() };
        let text = format!("a,b,label\n{body}");
        let parsed = parse_csv("file", text.as_bytes(), "label", &small);
        assert_clear(&parsed, &["file", "label_column"])?;
        if let Ok(t) = &parsed {
            prop_assert_eq!(t.n_features(), 2);
        }
        assert_clear(&parse_csv("file", body.as_bytes(), "a", &small), &["file", "label_column"])?;
    }

    #[test]
    fn reading_in_any_pieces_gives_what_reading_at_once_gives(
        body in "[0-9a-c.,\"\u{feff}\r\n-]{0,200}",
        step in 1usize..9,
    ) {
        let small = CsvLimits { min_rows: 1, ..CsvLimits::default() };
        let text = format!("a,b,label\n{body}");
        let whole = parse_csv("file", text.as_bytes(), "label", &small);
        let pieces = read_csv("file", Trickle { bytes: text.as_bytes(), step }, "label", &small);
        match (whole, pieces) {
            (Ok(a), Ok(b)) => {
                prop_assert_eq!(a.features, b.features);
                prop_assert_eq!(a.labels, b.labels);
                prop_assert_eq!(a.classes, b.classes);
            }
            (Err(a), Err(b)) => prop_assert_eq!(a.to_string(), b.to_string()),
            (a, b) => prop_assert!(false, "{a:?} vs {b:?}"),
        }
    }
}
