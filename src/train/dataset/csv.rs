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
mod tests;
