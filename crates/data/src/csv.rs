//! Parsing uploaded CSV files into a [`Table`], streaming: a file is read record by record and
//! only what the table keeps (4 bytes per value and per label, plus each distinct label once)
//! is held in memory, whatever the size of the file.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{self, Cursor, Read};

use super::{LabelKind, Split, Table, table_bytes};
use crate::error::{DataError, Input, Result};

/// Limits on what an upload may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CsvLimits {
    /// The most data rows (the header not counted) a data set may have.
    pub max_rows: usize,
    /// The most columns (the label included) a file may have.
    pub max_columns: usize,
    /// The fewest data rows a data set (or its train file) must have.
    pub min_rows: usize,
    /// The most bytes the resulting table may hold (see [`table_bytes`]).
    pub max_table_bytes: u64,
}

impl Default for CsvLimits {
    fn default() -> Self {
        CsvLimits {
            max_rows: 1_000_000,
            max_columns: 4096,
            min_rows: 10,
            max_table_bytes: 1 << 30,
        }
    }
}

/// Parses a CSV with a header row; `label_column` names the label; every other column must be
/// a finite number. `part` names the upload part in errors.
pub(crate) fn parse_csv(
    part: &str,
    bytes: &[u8],
    label_column: &str,
    limits: &CsvLimits,
) -> Result<Table> {
    read_csv(part, bytes, label_column, limits)
}

/// [`parse_csv`] from a reader (an uploaded file), read as a stream.
pub fn read_csv(
    part: &str,
    reader: impl Read,
    label_column: &str,
    limits: &CsvLimits,
) -> Result<Table> {
    let mut rows = Rows::default();
    let file = rows.read(part, reader, label_column, limits, None)?;
    check_min_rows(part, file.rows, limits)?;
    let kind = rows.label_kind();
    rows.into_table(part, kind, label_column)
}

/// Reads separate files per split (train required, val/test optional; each read as a stream)
/// with identical headers into one Table with `splits` set (rows in train, val, test order); classes are the union,
/// and the val/test files may not introduce a class the train file lacks (error names it).
pub fn read_split_csvs<R: Read>(
    train: R,
    val: Option<R>,
    test: Option<R>,
    label_column: &str,
    limits: &CsvLimits,
) -> Result<Table> {
    let mut rows = Rows::default();
    let train_file = rows.read("train", train, label_column, limits, None)?;
    check_min_rows("train", train_file.rows, limits)?;
    let mut others = Vec::new();
    for (part, split, reader) in [("val", Split::Val, val), ("test", Split::Test, test)] {
        let Some(reader) = reader else { continue };
        let file = rows.read(part, reader, label_column, limits, Some(&train_file.header))?;
        if file.rows == 0 {
            return Err(DataError::in_part(
                part,
                format!(
                    "the {part} file has no data rows; give it at least one row or leave it out"
                ),
            ));
        }
        others.push((part, split, file));
    }

    let kind = rows.label_kind();
    // Each distinct label text of a val or test file must name a class of the train file;
    // the first row at fault is the one named.
    let train_classes = classes_of(
        train_file
            .first_lines
            .keys()
            .map(|&id| &rows.texts[id as usize]),
        kind,
    );
    let known: HashSet<&String> = train_classes.iter().collect();
    for (part, _, file) in &others {
        let stranger = file
            .first_lines
            .iter()
            .filter(|&(&id, _)| !known.contains(&canonical(&rows.texts[id as usize], kind)))
            .min_by_key(|&(_, &line)| line);
        if let Some((&id, &line)) = stranger {
            return Err(DataError::in_part(
                part,
                format!(
                    "line {line}, column '{label_column}': class '{}' does not occur in the train file; \
                     the train file's classes are {}",
                    shorten(&rows.texts[id as usize]),
                    quoted_list(&train_classes)
                ),
            ));
        }
    }

    let mut splits = vec![Split::Train; train_file.rows];
    for (_, split, file) in &others {
        splits.extend(std::iter::repeat_n(*split, file.rows));
    }
    let mut table = rows.into_table("train", kind, label_column)?;
    table.splits = Some(splits);
    Ok(table)
}

/// Rows read so far, over one or more files: features in order, and each row's label as an
/// index into the distinct label texts seen.
#[derive(Default)]
struct Rows {
    feature_names: Vec<String>,
    features: Vec<f32>,
    /// Per row, an index into `texts`.
    labels: Vec<u32>,
    /// Each distinct label text, in the order first seen.
    texts: Vec<String>,
    ids: HashMap<String, u32>,
}

/// What reading one file found.
struct FileRead {
    header: Vec<String>,
    rows: usize,
    /// For each distinct label text in this file (an index into `Rows::texts`), the 1-based
    /// line it first occurs on.
    first_lines: HashMap<u32, u64>,
}

impl Rows {
    /// Reads one file's rows onto the end; `expected` is the header the file must have (the
    /// train file's), if any.
    fn read(
        &mut self,
        part: &str,
        reader: impl Read,
        label_column: &str,
        limits: &CsvLimits,
        expected: Option<&[String]>,
    ) -> Result<FileRead> {
        let source = Sniffed::new(reader).map_err(|err| read_error(part, &err))?;
        let mut reader = ::csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(::csv::Trim::All)
            .from_reader(source);
        let mut record = ::csv::StringRecord::new();
        let empty = || {
            DataError::in_part(
                part,
                "the file is empty; expected a header row naming the columns, then one row per example",
            )
        };
        if !reader
            .read_record(&mut record)
            .map_err(|e| csv_error(part, &e))?
        {
            return Err(empty());
        }
        let header: Vec<String> = record.iter().map(str::to_owned).collect();
        if header.len() == 1 && header[0].is_empty() {
            // A first line of blanks: the file is empty if nothing but blanks follows.
            while let Ok(true) = reader.read_record(&mut record) {}
            if !reader.get_ref().text_seen {
                return Err(empty());
            }
        }
        let label_idx = check_header(part, &header, label_column, limits)?;
        match expected {
            Some(expected) if header != expected => {
                return Err(DataError::in_part(
                    part,
                    header_difference(&header, expected),
                ));
            }
            Some(_) => {}
            None => {
                self.feature_names = header
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| i != label_idx)
                    .map(|(_, n)| n.clone())
                    .collect();
            }
        }
        let n_features = (header.len() - 1) as u64;
        let first_file = expected.is_none();

        let mut file = FileRead {
            header,
            rows: 0,
            first_lines: HashMap::new(),
        };
        while reader
            .read_record(&mut record)
            .map_err(|e| csv_error(part, &e))?
        {
            let line = record.position().map_or(0, |p| p.line());
            if self.labels.len() >= limits.max_rows {
                let which = if first_file {
                    "the file has"
                } else {
                    "the files together have"
                };
                return Err(DataError::in_part(
                    part,
                    format!(
                        "line {line}: {which} more than {} data rows, the most allowed",
                        limits.max_rows
                    ),
                ));
            }
            let bytes = table_bytes(self.labels.len() as u64 + 1, n_features);
            if bytes > limits.max_table_bytes {
                return Err(DataError::in_part(
                    part,
                    format!(
                        "line {line}: the data set passes {} bytes, the most a data set may hold \
                         (4 bytes per feature value and per label: {} bytes per row of {n_features} \
                         features); upload fewer rows or columns",
                        limits.max_table_bytes,
                        table_bytes(1, n_features)
                    ),
                ));
            }
            if record.len() != file.header.len() {
                return Err(DataError::in_part(
                    part,
                    format!(
                        "line {line} has {} fields; the header has {}; every row needs one value per column",
                        record.len(),
                        file.header.len()
                    ),
                ));
            }
            let mut label = None;
            for (i, field) in record.iter().enumerate() {
                if i == label_idx {
                    if field.is_empty() {
                        return Err(DataError::in_part(
                            part,
                            format!(
                                "line {line}, column '{label_column}': the label is empty; every row needs a label"
                            ),
                        ));
                    }
                    label = Some(self.intern(field));
                } else {
                    self.features
                        .push(parse_feature(part, line, &file.header[i], field)?);
                }
            }
            // The header has the label column, and the row as many fields as the header.
            let label = label.unwrap_or(0);
            self.labels.push(label);
            file.first_lines.entry(label).or_insert(line);
            file.rows += 1;
        }
        Ok(file)
    }

    /// The index of a label text, added on first sight.
    fn intern(&mut self, text: &str) -> u32 {
        if let Some(&id) = self.ids.get(text) {
            return id;
        }
        let id = self.texts.len() as u32;
        self.texts.push(text.to_owned());
        self.ids.insert(text.to_owned(), id);
        id
    }

    /// Integer when every label parses as an `i64`.
    fn label_kind(&self) -> LabelKind {
        if self.texts.iter().all(|l| l.parse::<i64>().is_ok()) {
            LabelKind::Integer
        } else {
            LabelKind::String
        }
    }

    /// The table whose classes are the labels read.
    fn into_table(self, part: &str, kind: LabelKind, label_column: &str) -> Result<Table> {
        let classes = classes_of(self.texts.iter(), kind);
        check_several_classes(part, &classes, label_column)?;
        let index = class_index(&classes);
        // Every text is a key of `index`, since the classes were built from these very texts.
        let class_of: Vec<u32> = self
            .texts
            .iter()
            .map(|t| index.get(&canonical(t, kind)).copied().unwrap_or(0))
            .collect();
        let mut labels = self.labels;
        for label in &mut labels {
            *label = class_of[*label as usize];
        }
        let table = Table {
            feature_names: self.feature_names,
            features: self.features,
            labels,
            classes,
            label_kind: kind,
            splits: None,
            image_shape: None,
            pixel_max: 1.0,
        };
        Ok(table)
    }
}

/// A file's bytes without a leading UTF-8 byte-order mark, noting whether anything but ASCII
/// whitespace went by (to tell an empty file from a broken header).
struct Sniffed<R> {
    inner: io::Chain<Cursor<Vec<u8>>, R>,
    text_seen: bool,
}

impl<R: Read> Sniffed<R> {
    fn new(mut inner: R) -> io::Result<Self> {
        const BOM: &[u8] = b"\xEF\xBB\xBF";
        let mut start = Vec::with_capacity(BOM.len());
        while start.len() < BOM.len() {
            let mut byte = [0u8; 3];
            let wanted = BOM.len() - start.len();
            match inner.read(&mut byte[..wanted]) {
                Ok(0) => break,
                Ok(n) => start.extend_from_slice(&byte[..n]),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
        }
        if start == BOM {
            start.clear();
        }
        Ok(Sniffed {
            inner: Cursor::new(start).chain(inner),
            text_seen: false,
        })
    }
}

impl<R: Read> Read for Sniffed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if !self.text_seen {
            self.text_seen = buf[..n].iter().any(|b| !b.is_ascii_whitespace());
        }
        Ok(n)
    }
}

/// Checks the header's names and size; returns the label column's index.
fn check_header(
    part: &str,
    header: &[String],
    label_column: &str,
    limits: &CsvLimits,
) -> Result<usize> {
    if header.len() > limits.max_columns {
        return Err(DataError::in_part(
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
            return Err(DataError::in_part(
                part,
                format!(
                    "line 1: column {} of the header has an empty name; every column needs a name",
                    i + 1
                ),
            ));
        }
        if let Some(first) = seen.insert(name, i) {
            return Err(DataError::in_part(
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
        return Err(DataError::invalid(
            Input::Option("label_column"),
            format!(
                "no column named '{}' in the {part} file; the columns are {}",
                shorten(label_column),
                quoted_list(header)
            ),
        ));
    };
    if header.len() < 2 {
        return Err(DataError::in_part(
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
    Err(DataError::in_part(
        part,
        format!(
            "line {line}, column '{}': {problem}; every feature must be a finite number such as 0, -1.5 or 2e3",
            shorten(column)
        ),
    ))
}

fn csv_error(part: &str, err: &::csv::Error) -> DataError {
    let line = err.position().map_or(0, |p| p.line());
    match err.kind() {
        ::csv::ErrorKind::Utf8 { .. } => DataError::in_part(
            part,
            format!("line {line} is not valid UTF-8 text; upload the CSV encoded as UTF-8"),
        ),
        ::csv::ErrorKind::Io(io) => read_error(part, io),
        _ => DataError::in_part(
            part,
            format!("line {line}: the file is not valid CSV ({err})"),
        ),
    }
}

/// The uploaded file could not be read back: the service's fault, not the user's.
fn read_error(part: &str, err: &io::Error) -> DataError {
    DataError::internal(&format!("reading the uploaded '{part}' file"), err)
}

fn check_min_rows(part: &str, rows: usize, limits: &CsvLimits) -> Result<()> {
    if rows < limits.min_rows {
        return Err(DataError::in_part(
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
        return Err(DataError::in_part(
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
