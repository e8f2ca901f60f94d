//! Parsing uploaded CSV files into a [`Table`].

use std::collections::{BTreeSet, HashMap};

use super::{LabelKind, Split, Table};
use crate::error::{Error, Result};

/// Limits on what an upload may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CsvLimits {
    /// The most data rows (the header not counted) a data set may have.
    pub max_rows: usize,
    /// The most columns (the label included) a file may have.
    pub max_columns: usize,
    /// The fewest data rows a data set (or its train file) must have.
    pub min_rows: usize,
}

impl Default for CsvLimits {
    fn default() -> Self {
        CsvLimits {
            max_rows: 1_000_000,
            max_columns: 4096,
            min_rows: 10,
        }
    }
}

/// Parses a CSV with a header row; `label_column` names the label; every other column must be
/// a finite number. `part` names the upload part in errors.
pub fn parse_csv(
    part: &str,
    bytes: &[u8],
    label_column: &str,
    limits: &CsvLimits,
) -> Result<Table> {
    let raw = read_raw(part, bytes, label_column, limits)?;
    check_min_rows(part, raw.labels.len(), limits)?;
    let kind = label_kind(raw.labels.iter());
    Ok(into_table(part, raw, kind, label_column)?.0)
}

/// Parses separate files per split (train required, val/test optional) with identical headers
/// into one Table with `splits` set (rows in train, val, test order); classes are the union,
/// and the val/test files may not introduce a class the train file lacks (error names it).
pub fn parse_split_csvs(
    train: &[u8],
    val: Option<&[u8]>,
    test: Option<&[u8]>,
    label_column: &str,
    limits: &CsvLimits,
) -> Result<Table> {
    let train_raw = read_raw("train", train, label_column, limits)?;
    check_min_rows("train", train_raw.labels.len(), limits)?;
    let mut others = Vec::new();
    for (part, split, bytes) in [("val", Split::Val, val), ("test", Split::Test, test)] {
        let Some(bytes) = bytes else { continue };
        let raw = read_raw(part, bytes, label_column, limits)?;
        if raw.header != train_raw.header {
            return Err(Error::invalid(
                part,
                header_difference(&raw.header, &train_raw.header),
            ));
        }
        if raw.labels.is_empty() {
            return Err(Error::invalid(
                part,
                format!(
                    "the {part} file has no data rows; give it at least one row or leave it out"
                ),
            ));
        }
        others.push((part, split, raw));
    }
    let total =
        train_raw.labels.len() + others.iter().map(|(_, _, r)| r.labels.len()).sum::<usize>();
    if total > limits.max_rows {
        let part = others.last().map_or("train", |(p, _, _)| *p);
        return Err(Error::invalid(
            part,
            format!(
                "the files together have {total} data rows; at most {} are allowed",
                limits.max_rows
            ),
        ));
    }

    let all_labels = train_raw
        .labels
        .iter()
        .chain(others.iter().flat_map(|(_, _, r)| r.labels.iter()));
    let kind = label_kind(all_labels);
    let (mut table, index) = into_table("train", train_raw, kind, label_column)?;
    let mut splits = vec![Split::Train; table.labels.len()];
    for (part, split, raw) in others {
        for (label, line) in raw.labels.iter().zip(&raw.lines) {
            let Some(&class) = index.get(&canonical(label, kind)) else {
                return Err(Error::invalid(
                    part,
                    format!(
                        "line {line}, column '{label_column}': class '{}' does not occur in the train file; \
                         the train file's classes are {}",
                        shorten(label),
                        quoted_list(&table.classes)
                    ),
                ));
            };
            table.labels.push(class);
            splits.push(split);
        }
        table.features.extend_from_slice(&raw.features);
    }
    table.splits = Some(splits);
    Ok(table)
}

/// Turns a file into a table whose classes are its labels; also returns the class indices.
fn into_table(
    part: &str,
    raw: RawCsv,
    kind: LabelKind,
    label_column: &str,
) -> Result<(Table, HashMap<String, u32>)> {
    let classes = classes_of(raw.labels.iter(), kind);
    check_several_classes(part, &classes, label_column)?;
    let index = class_index(&classes);
    // Every label is a key of `index`, since the classes were built from these very labels.
    let labels = raw
        .labels
        .iter()
        .map(|l| index.get(&canonical(l, kind)).copied().unwrap_or(0))
        .collect();
    let table = Table {
        feature_names: raw.feature_names,
        features: raw.features,
        labels,
        classes,
        label_kind: kind,
        splits: None,
        image_shape: None,
        pixel_max: 1.0,
    };
    Ok((table, index))
}

/// A file read row by row, before labels are turned into classes.
struct RawCsv {
    header: Vec<String>,
    feature_names: Vec<String>,
    features: Vec<f32>,
    labels: Vec<String>,
    /// The 1-based line each data row starts on.
    lines: Vec<u64>,
}

fn read_raw(part: &str, bytes: &[u8], label_column: &str, limits: &CsvLimits) -> Result<RawCsv> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if let Err(e) = std::str::from_utf8(bytes) {
        let line = 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        return Err(Error::invalid(
            part,
            format!("line {line} is not valid UTF-8 text; upload the CSV encoded as UTF-8"),
        ));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::invalid(
            part,
            "the file is empty; expected a header row naming the columns, then one row per example",
        ));
    }

    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(::csv::Trim::All)
        .from_reader(bytes);
    let mut records = reader.records();
    let header: Vec<String> = match records.next() {
        Some(Ok(record)) => record.iter().map(str::to_owned).collect(),
        Some(Err(e)) => return Err(csv_error(part, &e)),
        None => {
            return Err(Error::invalid(
                part,
                "the file is empty; expected a header row naming the columns",
            ));
        }
    };
    let label_idx = check_header(part, &header, label_column, limits)?;
    let feature_names: Vec<String> = header
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != label_idx)
        .map(|(_, n)| n.clone())
        .collect();

    let mut raw = RawCsv {
        header,
        feature_names,
        features: Vec::new(),
        labels: Vec::new(),
        lines: Vec::new(),
    };
    for record in records {
        let record = record.map_err(|e| csv_error(part, &e))?;
        let line = record.position().map_or(0, |p| p.line());
        if raw.labels.len() >= limits.max_rows {
            return Err(Error::invalid(
                part,
                format!(
                    "line {line}: the file has more than {} data rows, the most allowed",
                    limits.max_rows
                ),
            ));
        }
        if record.len() != raw.header.len() {
            return Err(Error::invalid(
                part,
                format!(
                    "line {line} has {} fields; the header has {}; every row needs one value per column",
                    record.len(),
                    raw.header.len()
                ),
            ));
        }
        for (i, field) in record.iter().enumerate() {
            if i == label_idx {
                if field.is_empty() {
                    return Err(Error::invalid(
                        part,
                        format!(
                            "line {line}, column '{label_column}': the label is empty; every row needs a label"
                        ),
                    ));
                }
                raw.labels.push(field.to_owned());
            } else {
                raw.features
                    .push(parse_feature(part, line, &raw.header[i], field)?);
            }
        }
        raw.lines.push(line);
    }
    Ok(raw)
}

/// Checks the header's names and size; returns the label column's index.
fn check_header(
    part: &str,
    header: &[String],
    label_column: &str,
    limits: &CsvLimits,
) -> Result<usize> {
    if header.len() > limits.max_columns {
        return Err(Error::invalid(
            part,
            format!(
                "line 1: the header has {} columns; at most {} are allowed",
                header.len(),
                limits.max_columns
            ),
        ));
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, name) in header.iter().enumerate() {
        if name.is_empty() {
            return Err(Error::invalid(
                part,
                format!(
                    "line 1: column {} of the header has an empty name; every column needs a name",
                    i + 1
                ),
            ));
        }
        if let Some(first) = seen.insert(name, i) {
            return Err(Error::invalid(
                part,
                format!(
                    "line 1: column name '{}' appears twice (columns {} and {}); column names must be unique",
                    shorten(name),
                    first + 1,
                    i + 1
                ),
            ));
        }
    }
    let Some(&label_idx) = seen.get(label_column) else {
        return Err(Error::invalid(
            "label_column",
            format!(
                "no column named '{}' in the {part} file; the columns are {}",
                shorten(label_column),
                quoted_list(header)
            ),
        ));
    };
    if header.len() < 2 {
        return Err(Error::invalid(
            part,
            format!(
                "line 1: the only column is the label '{label_column}'; at least one feature column is needed"
            ),
        ));
    }
    Ok(label_idx)
}

fn parse_feature(part: &str, line: u64, column: &str, field: &str) -> Result<f32> {
    let lower = field.to_ascii_lowercase();
    let problem = match field.parse::<f32>() {
        Ok(x) if x.is_finite() => return Ok(x),
        _ if field.is_empty() => "the value is missing".to_owned(),
        Ok(x) if x.is_nan() => format!("'{}' marks a missing value", shorten(field)),
        Ok(_) if lower.trim_start_matches(['+', '-']).starts_with("inf") => {
            format!("'{}' is infinite", shorten(field))
        }
        Ok(_) => format!("'{}' is too large for a 32-bit number", shorten(field)),
        Err(_) if ["na", "n/a", "null", "none", "?"].contains(&lower.as_str()) => {
            format!("'{}' marks a missing value", shorten(field))
        }
        Err(_) => format!("'{}' is not a number", shorten(field)),
    };
    Err(Error::invalid(
        part,
        format!(
            "line {line}, column '{}': {problem}; every feature must be a finite number such as 0, -1.5 or 2e3",
            shorten(column)
        ),
    ))
}

fn csv_error(part: &str, err: &::csv::Error) -> Error {
    let line = err.position().map_or(0, |p| p.line());
    Error::invalid(
        part,
        format!("line {line}: the file is not valid CSV ({err})"),
    )
}

fn check_min_rows(part: &str, rows: usize, limits: &CsvLimits) -> Result<()> {
    if rows < limits.min_rows {
        return Err(Error::invalid(
            part,
            format!(
                "the file has {rows} data rows; at least {} are needed",
                limits.min_rows
            ),
        ));
    }
    Ok(())
}

fn check_several_classes(part: &str, classes: &[String], label_column: &str) -> Result<()> {
    if let [only] = classes {
        return Err(Error::invalid(
            part,
            format!(
                "only one class ('{}') in column '{}'; at least two are needed",
                shorten(only),
                shorten(label_column)
            ),
        ));
    }
    Ok(())
}

/// Integer when every label parses as an `i64`.
fn label_kind<'a>(mut labels: impl Iterator<Item = &'a String>) -> LabelKind {
    if labels.all(|l| l.parse::<i64>().is_ok()) {
        LabelKind::Integer
    } else {
        LabelKind::String
    }
}

/// The label as a class name: integers written canonically ("07" -> "7").
fn canonical(label: &str, kind: LabelKind) -> String {
    match (kind, label.parse::<i64>()) {
        (LabelKind::Integer, Ok(n)) => n.to_string(),
        _ => label.to_owned(),
    }
}

fn classes_of<'a>(labels: impl Iterator<Item = &'a String>, kind: LabelKind) -> Vec<String> {
    match kind {
        LabelKind::Integer => {
            let set: BTreeSet<i64> = labels.filter_map(|l| l.parse().ok()).collect();
            set.into_iter().map(|n| n.to_string()).collect()
        }
        LabelKind::String => labels
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
    }
}

fn class_index(classes: &[String]) -> HashMap<String, u32> {
    classes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.clone(), i as u32))
        .collect()
}

fn header_difference(got: &[String], train: &[String]) -> String {
    match got.iter().zip(train).enumerate().find(|(_, (g, t))| g != t) {
        Some((i, (g, t))) => format!(
            "line 1: column {} is '{}' here but '{}' in the train file; the headers must be identical",
            i + 1,
            shorten(g),
            shorten(t)
        ),
        None => format!(
            "line 1: the header has {} columns but the train file's has {}; the headers must be identical",
            got.len(),
            train.len()
        ),
    }
}

/// At most 20 names, quoted, for error messages.
fn quoted_list(names: &[String]) -> String {
    const SHOWN: usize = 20;
    let mut list: Vec<String> = names
        .iter()
        .take(SHOWN)
        .map(|n| format!("'{}'", shorten(n)))
        .collect();
    if names.len() > SHOWN {
        list.push(format!("and {} more", names.len() - SHOWN));
    }
    list.join(", ")
}

/// Cuts user text to a length fit for an error message.
fn shorten(s: &str) -> String {
    const MAX: usize = 40;
    match s.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}...", &s[..end]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
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
        parse_split_csvs(train.as_bytes(), val, test, "label", &CsvLimits::default())
    }

    /// Asserts `result` is `Error::Invalid` on `field` with a message containing each fragment.
    fn rejects(result: Result<Table>, field: &str, fragments: &[&str]) {
        match result {
            Err(Error::Invalid { field: f, message }) => {
                assert_eq!(f, field, "{message}");
                for fragment in fragments {
                    assert!(
                        message.contains(fragment),
                        "{fragment:?} not in {message:?}"
                    );
                }
            }
            other => panic!("expected Error::Invalid, got {other:?}"),
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let small = CsvLimits { min_rows: 1, ..CsvLimits::default() };
            let _ = parse_csv("file", &bytes, "label", &small);
            let _ = parse_split_csvs(&bytes, Some(&bytes), Some(&bytes), "label", &small);
        }

        #[test]
        fn parsing_csv_like_text_never_panics(body in "[0-9a-cNA.,eE+ \"\u{feff}\r\n-]{0,300}") {
            let small = CsvLimits { min_rows: 1, max_rows: 20, max_columns: 5 };
            let text = format!("a,b,label\n{body}");
            if let Ok(t) = parse_csv("file", text.as_bytes(), "label", &small) {
                prop_assert!(t.features.iter().all(|x| x.is_finite()));
                prop_assert_eq!(t.features.len(), t.n_rows() * t.n_features());
                prop_assert!(t.labels.iter().all(|&l| (l as usize) < t.classes.len()));
            }
            let _ = parse_csv("file", body.as_bytes(), "a", &small);
        }
    }
}
