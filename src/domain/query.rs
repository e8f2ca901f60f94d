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

/// Parses `best.val_acc > 0.9 and params.training.optimizer.lr = 0.01`.
pub fn parse_where(text: &str) -> Result<Vec<Clause>> {
    let mut clauses = Vec::new();
    for part in split_and(text) {
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
        let unquoted = raw.trim_matches(|c| c == '\'' || c == '"');
        let value = if unquoted.len() != raw.len() {
            Value::String(unquoted.to_string())
        } else if let Ok(n) = raw.parse::<f64>() {
            serde_json::Number::from_f64(n)
                .map(Value::Number)
                .ok_or_else(|| Error::invalid("where", format!("'{raw}' is not a finite number")))?
        } else if raw == "true" || raw == "false" {
            Value::Bool(raw == "true")
        } else {
            Value::String(raw.to_string())
        };
        clauses.push(Clause { field, op, value });
    }
    Ok(clauses)
}

fn split_and(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.to_ascii_lowercase().find(" and ") {
        parts.push(&rest[..at]);
        rest = &rest[at + 5..];
    }
    parts.push(rest);
    parts
}

#[cfg(test)]
mod tests {
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
}
