//! Text tables with aligned columns, and the number formats every command prints.

use serde_json::Value;

/// Rows of text cells under a header, printed with each column as wide as its widest cell.
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub(crate) fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|title| title.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; it should have one cell per column.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as lines of text, two spaces between columns, no trailing spaces.
    pub(crate) fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (column, cell) in row.iter().enumerate() {
                if column < widths.len() {
                    widths[column] = widths[column].max(cell.chars().count());
                }
            }
        }
        let mut text = String::new();
        for row in std::iter::once(&self.header).chain(&self.rows) {
            let mut line = String::new();
            for (column, cell) in row.iter().enumerate() {
                if column > 0 {
                    line.push_str("  ");
                }
                let width = widths.get(column).copied().unwrap_or(0);
                line.push_str(&format!("{cell:<width$}"));
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

/// A metric such as an accuracy or a loss, to 4 decimals; `-` when absent.
pub(crate) fn metric(value: &Value) -> String {
    match value.as_f64() {
        Some(number) => format!("{number:.4}"),
        None => "-".to_string(),
    }
}

/// Seconds, to 2 decimals; `-` when absent.
pub(crate) fn seconds(value: &Value) -> String {
    match value.as_f64() {
        Some(number) => format!("{number:.2}"),
        None => "-".to_string(),
    }
}

/// Any JSON value as a cell: strings without quotes, `-` for null.
pub(crate) fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// `text` cut to `max` characters, the cut marked with `…`.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let kept: String = text.chars().take(max.saturating_sub(1)).collect();
    format!("{kept}…")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{Table, metric, shorten};

    #[test]
    fn columns_are_as_wide_as_their_widest_cell() {
        let mut table = Table::new(&["ID", "STATUS"]);
        table.row(vec!["a-long-id".to_string(), "running".to_string()]);
        table.row(vec!["b".to_string(), "-".to_string()]);
        assert_eq!(
            table.render(),
            "ID         STATUS\na-long-id  running\nb          -\n"
        );
    }

    #[test]
    fn missing_metrics_print_as_a_dash_and_long_names_are_cut() {
        assert_eq!(metric(&json!(0.97412)), "0.9741");
        assert_eq!(metric(&json!(null)), "-");
        assert_eq!(shorten("sweep over model.depth", 10), "sweep ove…");
        assert_eq!(shorten("short", 10), "short");
    }
}
