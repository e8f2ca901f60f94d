//! A study report as a document, written out as one self-contained HTML file (plots inline
//! as SVG, styles inline, no external asset) or as Markdown that links its plots as PNG files.
//! Pure: the figures and plots come in drawn.

use std::fmt::Write;

use super::findings::{RunFigures, pct};

/// A whole report.
pub struct Document {
    /// The study's name.
    pub title: String,
    /// (label, value) lines under the title: id, data set, budget, status, ...
    pub meta: Vec<(String, String)>,
    /// One section per question.
    pub sections: Vec<Section>,
}

/// One question's section.
pub struct Section {
    /// Anchor and file-name prefix (the question's kind).
    pub id: String,
    /// The question.
    pub question: String,
    /// The answer in sentences.
    pub answer: String,
    /// How the experiment was run, a sentence each.
    pub experiment: Vec<String>,
    /// The base spec every run started from, as pretty JSON.
    pub base_spec: String,
    /// The runs' figures.
    pub runs: Vec<RunFigures>,
    /// The plots.
    pub figures: Vec<Figure>,
    /// Each run's findings: (run label, summaries).
    pub findings: Vec<(String, Vec<String>)>,
    /// Samples the best run gets right and the worst wrong and the other way round, for data
    /// sets without images: a heading and rows of (sample, true label, best's answer, worst's).
    pub samples: Option<(String, Vec<[String; 4]>)>,
}

/// A drawn plot.
pub struct Figure {
    /// File name without extension, unique in the report.
    pub file: String,
    /// What it shows.
    pub caption: String,
    /// SVG text (HTML) or PNG bytes (Markdown's zip).
    pub bytes: Vec<u8>,
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn opt_pct(x: Option<f64>) -> String {
    x.map_or("–".into(), pct)
}

fn opt_num(x: Option<f64>, digits: usize) -> String {
    x.map_or("–".into(), |v| format!("{v:.digits$}"))
}

/// The run table's header and cells.
const COLUMNS: [&str; 11] = [
    "run",
    "status",
    "epochs",
    "best epoch",
    "train acc",
    "val acc",
    "test acc",
    "train loss",
    "val loss",
    "test loss",
    "s / epoch",
];

fn cells(run: &RunFigures) -> [String; 11] {
    [
        run.label.clone(),
        run.status.clone(),
        run.epochs.to_string(),
        run.best_epoch.map_or("–".into(), |e| e.to_string()),
        opt_pct(run.train_acc),
        opt_pct(run.val_acc),
        opt_pct(run.test_acc),
        opt_num(run.train_loss, 4),
        opt_num(run.val_loss, 4),
        opt_num(run.test_loss, 4),
        opt_num(run.seconds_per_epoch, 3),
    ]
}

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1b1b1b;background:#fff}\
h1{font-size:1.7em}h2{margin-top:2.2em;border-bottom:1px solid #ccc}h3{font-size:1.05em;margin-bottom:.3em}\
table{border-collapse:collapse;font-size:.9em;margin:.5em 0}th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right}\
th:first-child,td:first-child{text-align:left}tr.best{background:#e8f4e8}.answer{font-size:1.05em;background:#f4f6fa;padding:.7em 1em;border-left:4px solid #3b6fb6}\
figure{margin:1em 0}figure svg{max-width:100%;height:auto}figcaption{color:#555;font-size:.9em}pre{background:#f6f6f6;padding:.6em;overflow:auto;font-size:.85em}\
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:.1em 1em}dl.meta dt{color:#555}\
@media (prefers-color-scheme:dark){body{background:#111;color:#e6e6e6}th,td{border-color:#444}tr.best{background:#1f3320}.answer{background:#1a2230}pre{background:#1c1c1c}figure svg{background:#fff}}";

/// The report as one HTML file.
pub fn html(doc: &Document) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<header>\n<h1>{}</h1>\n<dl class=\"meta\">\n",
        escape(&doc.title),
        escape(&doc.title)
    );
    for (label, value) in &doc.meta {
        let _ = writeln!(out, "<dt>{}</dt><dd>{}</dd>", escape(label), escape(value));
    }
    out.push_str("</dl>\n</header>\n<nav aria-label=\"Questions\"><ol>\n");
    for section in &doc.sections {
        let _ = writeln!(
            out,
            "<li><a href=\"#{}\">{}</a></li>",
            section.id,
            escape(&section.question)
        );
    }
    out.push_str("</ol></nav>\n<main>\n");
    for section in &doc.sections {
        section_html(&mut out, section);
    }
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

fn section_html(out: &mut String, section: &Section) {
    let _ = write!(
        out,
        "<section id=\"{}\">\n<h2>{}</h2>\n<h3>Answer</h3>\n<p class=\"answer\">{}</p>\n<h3>Experiment</h3>\n",
        section.id,
        escape(&section.question),
        escape(&section.answer)
    );
    for line in &section.experiment {
        let _ = writeln!(out, "<p>{}</p>", escape(line));
    }
    let _ = write!(
        out,
        "<details><summary>Base spec</summary><pre>{}</pre></details>\n<h3>Runs</h3>\n<table>\n<thead><tr>",
        escape(&section.base_spec)
    );
    for column in COLUMNS {
        let _ = write!(out, "<th scope=\"col\">{column}</th>");
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    let best = best_label(&section.runs);
    for run in &section.runs {
        let class = if Some(&run.label) == best.as_ref() {
            " class=\"best\""
        } else {
            ""
        };
        let _ = write!(out, "<tr{class} data-job=\"{}\">", run.job_id);
        for cell in cells(run) {
            let _ = write!(out, "<td>{}</td>", escape(&cell));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
    if !section.figures.is_empty() {
        out.push_str("<h3>Plots</h3>\n");
    }
    for figure in &section.figures {
        let svg = String::from_utf8_lossy(&figure.bytes);
        let svg = svg.find("<svg").map_or(&svg[..], |at| &svg[at..]);
        let _ = write!(
            out,
            "<figure id=\"{}\">\n{}\n<figcaption>{}</figcaption>\n</figure>\n",
            figure.file,
            svg,
            escape(&figure.caption)
        );
    }
    if let Some((heading, rows)) = &section.samples {
        let _ = write!(
            out,
            "<h3>Samples</h3>\n<p>{}</p>\n<table>\n<thead><tr><th scope=\"col\">sample</th><th scope=\"col\">true label</th><th scope=\"col\">best run</th><th scope=\"col\">worst run</th></tr></thead>\n<tbody>\n",
            escape(heading)
        );
        for row in rows {
            out.push_str("<tr>");
            for cell in row {
                let _ = write!(out, "<td>{}</td>", escape(cell));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</tbody>\n</table>\n");
    }
    let noted: Vec<_> = section
        .findings
        .iter()
        .filter(|(_, f)| !f.is_empty())
        .collect();
    if !noted.is_empty() {
        out.push_str("<h3>Findings per run</h3>\n<ul>\n");
        for (label, findings) in noted {
            let _ = writeln!(
                out,
                "<li><strong>{}</strong>: {}</li>",
                escape(label),
                escape(&findings.join(" "))
            );
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</section>\n");
}

fn best_label(runs: &[RunFigures]) -> Option<String> {
    runs.iter()
        .filter_map(|r| r.val_acc.map(|v| (r, v)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(r, _)| r.label.clone())
}

fn md_cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The report as Markdown; plots are linked as `plots/<file>.png`.
pub fn markdown(doc: &Document) -> String {
    let mut out = format!("# {}\n\n", doc.title);
    for (label, value) in &doc.meta {
        let _ = writeln!(out, "- **{}**: {}", md_cell(label), md_cell(value));
    }
    for section in &doc.sections {
        let _ = write!(
            out,
            "\n## {}\n\n**Answer.** {}\n\n### Experiment\n\n",
            section.question, section.answer
        );
        for line in &section.experiment {
            let _ = writeln!(out, "{line}\n");
        }
        let _ = write!(
            out,
            "<details><summary>Base spec</summary>\n\n```json\n{}\n```\n\n</details>\n\n### Runs\n\n",
            section.base_spec
        );
        let _ = writeln!(out, "| {} |", COLUMNS.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(COLUMNS.len()));
        for run in &section.runs {
            let row: Vec<String> = cells(run).iter().map(|c| md_cell(c)).collect();
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        if !section.figures.is_empty() {
            out.push_str("\n### Plots\n\n");
        }
        for figure in &section.figures {
            let _ = writeln!(
                out,
                "![{}](plots/{}.png)\n",
                md_cell(&figure.caption),
                figure.file
            );
        }
        if let Some((heading, rows)) = &section.samples {
            let _ = write!(
                out,
                "\n### Samples\n\n{heading}\n\n| sample | true label | best run | worst run |\n|---|---|---|---|\n"
            );
            for row in rows {
                let row: Vec<String> = row.iter().map(|c| md_cell(c)).collect();
                let _ = writeln!(out, "| {} |", row.join(" | "));
            }
        }
        let noted: Vec<_> = section
            .findings
            .iter()
            .filter(|(_, f)| !f.is_empty())
            .collect();
        if !noted.is_empty() {
            out.push_str("\n### Findings per run\n\n");
            for (label, findings) in noted {
                let _ = writeln!(out, "- **{}**: {}", md_cell(label), findings.join(" "));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_from_users_is_escaped_in_html() {
        let doc = Document {
            title: "<script>alert(1)</script>".into(),
            meta: vec![("data set".into(), "a&b".into())],
            sections: Vec::new(),
        };
        let html = html(&doc);
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;") && html.contains("a&amp;b"));
        assert!(html.starts_with("<!DOCTYPE html>"));
    }
}
