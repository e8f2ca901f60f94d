//! The run-search language of `GET /v1/jobs?where=…&order_by=…`: clauses joined by `and`,
//! each `<field> <op> <value>`, over a job's best epoch (`best.val_acc`), its spec
//! (`params.training.optimizer.lr`) and a few columns (`status`, `name`, `epochs_done`).

use serde_json::Value;

use crate::error::{Error, Result};

/// A field a clause or an ordering refers to.
#[derive(Clone, Debug, PartialEq)]
pub enum Field {
    /// A metric of the job's best epoch (by validation accuracy).
    Best(&'static str),
    /// A spec field by dotted path.
    Param(Vec<String>),
    /// A job column.
    Column(&'static str),
}

/// A comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `=`
    Eq,
    /// `!=`
    Ne,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
}

impl Op {
    /// The SQL operator.
    pub fn sql(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
        }
    }
}

/// One condition.
#[derive(Clone, Debug, PartialEq)]
pub struct Clause {
    /// What is compared.
    pub field: Field,
    /// How.
    pub op: Op,
    /// With what (a number, a string or a boolean).
    pub value: Value,
}

const BEST: [&str; 10] = [
    "val_acc",
    "val_loss",
    "test_acc",
    "test_loss",
    "train_acc",
    "train_loss",
    "train_eval_acc",
    "train_eval_loss",
    "epoch",
    "epoch_seconds",
];
const COLUMNS: [&str; 6] = [
    "status",
    "name",
    "epochs_done",
    "epochs_total",
    "priority",
    "attempt",
];

/// Parses a field name.
pub fn parse_field(text: &str, parameter: &str) -> Result<Field> {
    let text = text.trim();
    if let Some(metric) = text.strip_prefix("best.") {
        return BEST
            .iter()
            .find(|m| **m == metric)
            .map(|m| Field::Best(m))
            .ok_or_else(|| {
                Error::invalid(
                    parameter,
                    format!("'{text}': valid best.* fields are {}", BEST.join(", ")),
                )
            });
    }
    if let Some(path) = text.strip_prefix("params.") {
        let parts: Vec<String> = path.split('.').map(str::to_string).collect();
        let ok = parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        return if ok {
            Ok(Field::Param(parts))
        } else {
            Err(Error::invalid(
                parameter,
                format!("'{text}' is not a spec path like params.training.optimizer.lr"),
            ))
        };
    }
    COLUMNS
        .iter()
        .find(|c| **c == text)
        .map(|c| Field::Column(c))
        .ok_or_else(|| {
            Error::invalid(
                parameter,
                format!(
                    "'{text}': valid fields are best.<metric>, params.<spec path>, {}",
                    COLUMNS.join(", ")
                ),
            )
        })
}

/// Most conditions one `where=` may join with `and`. SQLite nests each one a level deeper in
/// the query it builds, and refuses expressions nested about 1,000 deep; 100 is far more than a
/// person writes and keeps a generated query well inside that.
pub const MAX_CLAUSES: usize = 100;

/// Parses `best.val_acc > 0.9 and params.training.optimizer.lr = 0.01`. Every character must
/// belong to a condition: anything left over (`best.val_acc > 0.5 garbage`) is a 422 naming
/// it, as are more than [`MAX_CLAUSES`] conditions.
pub fn parse_where(text: &str) -> Result<Vec<Clause>> {
    let parts = split_and(text);
    if parts.len() > MAX_CLAUSES {
        return Err(Error::invalid(
            "where",
            format!(
                "more than {MAX_CLAUSES} conditions; valid: at most {MAX_CLAUSES} joined by 'and'"
            ),
        ));
    }
    parts.into_iter().map(parse_clause).collect()
}

fn parse_clause(part: &str) -> Result<Clause> {
    let part = part.trim();
    if part.is_empty() {
        return Err(Error::invalid(
            "where",
            "an empty condition; write e.g. best.val_acc > 0.9 and status = succeeded",
        ));
    }
    let (at, op, width) = ["!=", ">=", "<=", "=", ">", "<"]
        .iter()
        .filter_map(|o| part.find(o).map(|at| (at, *o, o.len())))
        .min_by_key(|(at, o, _)| (*at, std::cmp::Reverse(o.len())))
        .ok_or_else(|| {
            Error::invalid(
                "where",
                format!("'{part}' has no comparison; use one of = != > >= < <="),
            )
        })?;
    let op = match op {
        "!=" => Op::Ne,
        ">=" => Op::Ge,
        "<=" => Op::Le,
        "=" => Op::Eq,
        ">" => Op::Gt,
        _ => Op::Lt,
    };
    let field = parse_field(&part[..at], "where")?;
    let raw = part[at + width..].trim();
    if raw.is_empty() {
        return Err(Error::invalid("where", format!("'{part}' has no value")));
    }
    let (value, rest) = parse_value(raw, part)?;
    if !rest.is_empty() {
        return Err(Error::invalid(
            "where",
            format!(
                "'{rest}' in '{part}' is not understood; quote a value that has spaces \
                 ('my run') and join conditions with 'and'"
            ),
        ));
    }
    Ok(Clause { field, op, value })
}

/// The value at the start of `raw` and what follows it (trimmed): a quoted string runs to its
/// closing quote, anything else to the first space.
fn parse_value<'a>(raw: &'a str, part: &str) -> Result<(Value, &'a str)> {
    if let Some(quote) = raw.chars().next().filter(|c| *c == '\'' || *c == '"') {
        let body = &raw[1..];
        let Some(end) = body.find(quote) else {
            return Err(Error::invalid(
                "where",
                format!("'{part}' opens a quote ({quote}) that it does not close"),
            ));
        };
        return Ok((
            Value::String(body[..end].to_string()),
            body[end + 1..].trim(),
        ));
    }
    let end = raw.find(char::is_whitespace).unwrap_or(raw.len());
    let (token, rest) = (&raw[..end], raw[end..].trim());
    let value = if let Ok(n) = token.parse::<f64>() {
        serde_json::Number::from_f64(n)
            .map(Value::Number)
            .ok_or_else(|| Error::invalid("where", format!("'{token}' is not a finite number")))?
    } else if token == "true" || token == "false" {
        Value::Bool(token == "true")
    } else {
        Value::String(token.to_string())
    };
    Ok((value, rest))
}

/// Splits at each `and` (any case) that stands between spaces outside quoted values. A quote
/// opens a value only where a value starts (after a space or a comparison), so a bare word
/// such as `it's` stays a word.
fn split_and(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quote: Option<char> = None;
    let mut prev: Option<char> = None;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if (c == '\'' || c == '"')
                && prev.is_none_or(|p| p.is_whitespace() || "=<>!".contains(p)) =>
            {
                quote = Some(c)
            }
            None if c.is_whitespace() => {
                let word = &text[at + c.len_utf8()..];
                if word.len() > 3
                    && word.as_bytes()[..3].eq_ignore_ascii_case(b"and")
                    && word[3..].starts_with(char::is_whitespace)
                {
                    parts.push(&text[start..at]);
                    if parts.len() > MAX_CLAUSES {
                        break;
                    }
                    start = at + c.len_utf8() + 3;
                    // Resume at the space after `and`: it may precede another `and`.
                    while chars.peek().is_some_and(|(i, _)| *i < start) {
                        chars.next();
                    }
                    prev = Some('d');
                    continue;
                }
            }
            None => {}
        }
        prev = Some(c);
    }
    if parts.len() <= MAX_CLAUSES {
        parts.push(&text[start..]);
    }
    parts
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    #[test]
    fn the_issues_example_parses() {
        let clauses =
            parse_where("best.val_acc > 0.9 and params.training.optimizer.lr = 0.01").unwrap();
        assert_eq!(
            clauses[0],
            Clause {
                field: Field::Best("val_acc"),
                op: Op::Gt,
                value: json!(0.9)
            }
        );
        assert_eq!(
            clauses[1].field,
            Field::Param(vec!["training".into(), "optimizer".into(), "lr".into()])
        );
        assert_eq!(clauses[1].op, Op::Eq);
        let clauses = parse_where(
            "status != 'failed' AND params.model.batch_norm = true and best.val_loss <= 0.3",
        )
        .unwrap();
        assert_eq!(clauses[0].value, json!("failed"));
        assert_eq!(clauses[1].value, json!(true));
        assert_eq!(clauses[2].op, Op::Le);
    }

    #[test]
    fn text_after_a_value_is_a_422_naming_it() {
        for (bad, leftover) in [
            ("best.val_acc > 0.5 garbage", "garbage"),
            ("status = 'failed' x", "x"),
            ("name = my run", "run"),
        ] {
            match parse_where(bad) {
                Err(Error::Invalid { field, message }) => {
                    assert_eq!(field, "where");
                    assert!(message.contains(&format!("'{leftover}'")), "{message}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(parse_where("name = 'unclosed").is_err());
    }

    #[test]
    fn quoted_values_keep_their_spaces_and_their_ands() {
        let clauses = parse_where("name = 'a and b' and status = \"queued\"").unwrap();
        assert_eq!(clauses.len(), 2);
        assert_eq!(clauses[0].value, json!("a and b"));
        assert_eq!(clauses[1].value, json!("queued"));
        assert_eq!(parse_where("name = it's").unwrap()[0].value, json!("it's"));
    }

    #[test]
    fn more_than_the_clause_limit_is_a_422_giving_the_limit() {
        let at_limit = vec!["epochs_done >= 0"; MAX_CLAUSES].join(" and ");
        assert_eq!(parse_where(&at_limit).unwrap().len(), MAX_CLAUSES);
        let over = vec!["epochs_done >= 0"; 992].join(" AND ");
        match parse_where(&over) {
            Err(Error::Invalid { field, message }) => {
                assert_eq!(field, "where");
                assert!(message.contains(&MAX_CLAUSES.to_string()), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nonsense_is_a_422_on_where() {
        for bad in [
            "best.colour > 1",
            "val_acc 0.9",
            "params.a;drop = 1",
            "best.val_acc >",
            " and status = x",
        ] {
            assert!(
                matches!(parse_where(bad), Err(Error::Invalid { ref field, .. }) if field == "where"),
                "{bad}"
            );
        }
    }

    /// The text `parse_where` reads back as `clauses`, or `None` when a string value holds both
    /// kinds of quote and a space (no form of it survives parsing).
    fn render_where(clauses: &[Clause]) -> Option<String> {
        let rendered: Option<Vec<String>> = clauses
            .iter()
            .map(|clause| {
                let field = match &clause.field {
                    Field::Best(metric) => format!("best.{metric}"),
                    Field::Param(parts) => format!("params.{}", parts.join(".")),
                    Field::Column(column) => column.to_string(),
                };
                let value = match &clause.value {
                    Value::String(s) => render_string(s)?,
                    other => other.to_string(),
                };
                Some(format!("{field} {} {value}", clause.op.sql()))
            })
            .collect();
        rendered.map(|parts| parts.join(" and "))
    }

    fn render_string(s: &str) -> Option<String> {
        let bare = !s.is_empty()
            && !s.contains(char::is_whitespace)
            && !s.contains(['\'', '"'])
            && s.parse::<f64>().is_err()
            && s != "true"
            && s != "false"
            && !s.eq_ignore_ascii_case("and");
        if bare {
            Some(s.to_string())
        } else if !s.contains('\'') {
            Some(format!("'{s}'"))
        } else if !s.contains('"') {
            Some(format!("\"{s}\""))
        } else {
            None
        }
    }

    fn field() -> impl Strategy<Value = Field> {
        prop_oneof![
            proptest::sample::select(BEST.to_vec()).prop_map(Field::Best),
            proptest::sample::select(COLUMNS.to_vec()).prop_map(Field::Column),
            proptest::collection::vec("[a-z_][a-z0-9_]{0,8}", 1..4).prop_map(Field::Param),
        ]
    }

    fn clause() -> impl Strategy<Value = Clause> {
        let op = proptest::sample::select(vec![Op::Eq, Op::Ne, Op::Gt, Op::Ge, Op::Lt, Op::Le]);
        let value = prop_oneof![
            any::<bool>().prop_map(Value::Bool),
            (-1e12f64..1e12).prop_map(|n| json!(n)),
            any::<i32>().prop_map(|n| json!(f64::from(n))),
            "\\PC{0,12}".prop_map(Value::String),
            "[a-z ]{0,12}( and [a-z]{1,3})?".prop_map(Value::String),
        ];
        (field(), op, value).prop_map(|(field, op, value)| Clause { field, op, value })
    }

    proptest! {
        #[test]
        fn any_text_parses_or_is_a_422_on_where(text in "\\PC{0,200}") {
            match parse_where(&text) {
                Ok(clauses) => prop_assert!(!clauses.is_empty() && clauses.len() <= MAX_CLAUSES),
                Err(Error::Invalid { field, .. }) => prop_assert_eq!(field, "where"),
                Err(other) => prop_assert!(false, "{other:?}"),
            }
        }

        #[test]
        fn text_built_from_words_of_the_language_parses_or_is_a_422(
            words in proptest::collection::vec(
                prop_oneof![
                    Just("and"), Just("AND"), Just(" "), Just("best.val_acc"), Just("status"),
                    Just("params.training.seed"), Just("="), Just("!="), Just(">="), Just("<"),
                    Just("'"), Just("\""), Just("0.5"), Just("true"), Just("x"), Just("-1e400"),
                ],
                0..40,
            )
        ) {
            let text = words.join(" ");
            match parse_where(&text) {
                Ok(clauses) => {
                    prop_assert!(clauses.len() <= MAX_CLAUSES);
                    // What was accepted reads back the same way.
                    if let Some(again) = render_where(&clauses) {
                        prop_assert_eq!(parse_where(&again).unwrap(), clauses);
                    }
                }
                Err(Error::Invalid { field, .. }) => prop_assert_eq!(field, "where"),
                Err(other) => prop_assert!(false, "{other:?}"),
            }
        }

        #[test]
        fn rendered_clauses_parse_back_to_themselves(
            clauses in proptest::collection::vec(clause(), 1..=MAX_CLAUSES)
        ) {
            if let Some(text) = render_where(&clauses) {
                prop_assert_eq!(parse_where(&text).unwrap(), clauses);
            }
        }
    }
}
